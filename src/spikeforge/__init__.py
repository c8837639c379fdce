"""spikeforge: spiking neural networks on PyTorch, from event files to deployment.

Subpackages are imported on demand (``spikeforge.neurons``, ``spikeforge.surrogate``,
``spikeforge.encode``, ``spikeforge.data`` …) so that ``import spikeforge`` stays cheap. They are layered,
lowest first: ``core`` → ``surrogate`` → ``kernels`` → ``neurons`` → ``encode`` → ``data`` → ``layers`` →
``models`` → ``analysis`` → ``training`` → ``learning`` → ``compress`` → ``export`` → ``app`` → ``cli``;
each imports only from those before it.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = {"core", "surrogate", "kernels", "neurons", "encode", "data", "layers", "models", "analysis",
               "training", "learning", "compress", "export", "search", "app", "cli"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"spikeforge.{name}")
    raise AttributeError(f"module 'spikeforge' has no attribute {name!r}")

"""spikeforge: spiking neural networks on PyTorch, from event files to deployment.

Subpackages are imported on demand (``spikeforge.neurons``, ``spikeforge.surrogate``,
``spikeforge.encode``, ``spikeforge.data`` …) so that ``import spikeforge`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = {"neurons", "surrogate", "encode", "data", "kernels", "layers", "models", "learning",
               "analysis", "compress", "export"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"spikeforge.{name}")
    raise AttributeError(f"module 'spikeforge' has no attribute {name!r}")

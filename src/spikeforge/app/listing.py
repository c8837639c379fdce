"""``spikeforge list KIND``: every registered name of a kind with its one-line summary."""

from __future__ import annotations

import inspect
from typing import Any

from ..compress import COMPRESSORS
from ..core import Registry
from ..data import DATASETS
from ..export import EXPORTERS
from ..models import MODELS
from ..neurons import NEURONS
from ..search import SEARCHES
from ..surrogate import SURROGATES
from ..training import LOSSES, METHODS

__all__ = ["LISTS", "list_names"]

LISTS: dict[str, Registry[Any]] = {"models": MODELS, "datasets": DATASETS, "neurons": NEURONS,
                                   "surrogates": SURROGATES, "losses": LOSSES, "methods": METHODS,
                                   "exporters": EXPORTERS, "compressors": COMPRESSORS, "searches": SEARCHES}
"""What ``spikeforge list KIND`` can list, by kind (models, datasets, neurons, surrogates, losses, methods,
exporters, compressors, searches)."""


def list_names(kind: str) -> list[tuple[str, str]]:
    """``(name, summary)`` of every registered ``kind`` (a key of ``LISTS``), sorted by name. Neurons carry
    their kind in the summary (``[scan]`` or ``[parallel]``)."""
    reg = LISTS[kind]
    tag = (lambda n: f"[{reg.info(n)['kind']}] ") if kind == "neurons" else (lambda n: "")
    tail = _settings if kind == "methods" else _flag if kind == "compressors" else (lambda n: "")
    return [(n, tag(n) + reg.summary(n).replace("``", "") + tail(n)) for n in reg]


def _flag(name: str) -> str:
    """`` [--prune crossbar:R=256, ...]``: the flag that takes a compressor, with its settings' defaults."""
    params = [p for k, p in inspect.signature(COMPRESSORS[name]).parameters.items() if k != "self"]
    shown = ", ".join(f"{p.name}={p.default!r}" for p in params)
    return f" [--{COMPRESSORS.info(name)['flag']} {name}:{shown}]"


def _settings(name: str) -> str:
    """`` [--method-arg: alpha=0.5, ...]``: a method's settings with their defaults."""
    params = [p for k, p in inspect.signature(METHODS[name]).parameters.items() if k != "self"]
    return f" [--method-arg: {', '.join(f'{p.name}={p.default!r}' for p in params)}]" if params else ""

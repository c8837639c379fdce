"""Neurons by name, for the config/CLI edge: ``create_neuron("lif", tau=2.0)``.

Code that builds models takes a neuron *object* (or a factory) and never a string; names are resolved
here only, once. Each entry records its ``kind`` — ``"scan"`` (a step function run by ``scan``, one state
per neuron, any ``T``) or ``"parallel"`` (the PSN family: no reset, the whole sequence at once, ``T`` fixed
at build time) — and ``tau_arg``, the keyword its membrane time constant goes by (``None`` if it has none).
Custom neurons join with ``register_neuron``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from torch import nn

from ..core import Registry
from .alif import ALIF
from .cuba import CUBALIF
from .if_ import IF
from .izhikevich import Izhikevich
from .lif import LIF
from .multispike import MultiSpike
from .plif import PLIF
from .psn import PSN, MaskedPSN, SlidingPSN

__all__ = ["NEURONS", "register_neuron", "create_neuron", "list_neurons"]

NEURONS: Registry[Callable[..., nn.Module]] = Registry("neuron", lambda s: s.lower().replace("-", "_"))
"""Neurons by name (``if``, ``lif``, ``plif``, …) with their kind (``scan`` or ``parallel``)."""
for _name, _cls, _kind, _tau in (
        ("if", IF, "scan", None), ("lif", LIF, "scan", "tau"), ("plif", PLIF, "scan", "init_tau"),
        ("alif", ALIF, "scan", "tau"), ("cubalif", CUBALIF, "scan", "tau"), ("izhikevich", Izhikevich, "scan", None),
        ("multispike", MultiSpike, "scan", "tau"), ("psn", PSN, "parallel", None),
        ("masked_psn", MaskedPSN, "parallel", None), ("sliding_psn", SlidingPSN, "parallel", None)):
    NEURONS.register(_name, _cls, kind=_kind, tau_arg=_tau)


def register_neuron(name: str, *, kind: str = "scan", tau_arg: str | None = "tau",
                    summary: str | None = None) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: make a neuron class (or factory) available to ``create_neuron`` under ``name``."""
    if kind not in ("scan", "parallel"):
        raise ValueError(f"register_neuron: kind must be 'scan' or 'parallel', got {kind!r}")
    return NEURONS.register(name, summary=summary, kind=kind, tau_arg=tau_arg)


def list_neurons(kind: str | None = None) -> list[str]:
    """Registered names, sorted; ``kind="scan"`` or ``"parallel"`` keeps one kind."""
    return NEURONS.names() if kind is None else NEURONS.names(kind=kind)


def create_neuron(spec: str | nn.Module | Callable[[], nn.Module], **kwargs: Any) -> nn.Module:
    """A fresh neuron module from a name, a template module (deep-copied) or a zero-argument factory.

    Models call this once per layer, so a template like ``LIF(tau=2.0)`` yields independent layers.
    """
    if isinstance(spec, nn.Module):
        if kwargs:
            raise TypeError("create_neuron: pass keyword arguments with a name, not with a module template")
        return copy.deepcopy(spec)
    if isinstance(spec, str):
        return NEURONS[spec](**kwargs)
    if callable(spec):
        return spec(**kwargs)
    raise TypeError(f"neuron must be a name, an nn.Module or a factory, got {type(spec).__name__}")

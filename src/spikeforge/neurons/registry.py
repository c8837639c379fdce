"""Neurons by name, for the config/CLI edge: ``create_neuron("lif", tau=2.0)``.

Code that builds models takes a neuron *object* (or a factory) and never a string; names are resolved
here only, once. Custom neurons join with ``register_neuron``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from torch import nn

from .alif import ALIF
from .cuba import CUBALIF
from .if_ import IF
from .izhikevich import Izhikevich
from .lif import LIF
from .multispike import MultiSpike
from .plif import PLIF
from .psn import PSN, MaskedPSN, SlidingPSN

__all__ = ["NEURONS", "register_neuron", "create_neuron", "list_neurons"]

NEURONS: dict[str, Callable[..., nn.Module]] = {
    "if": IF, "lif": LIF, "plif": PLIF, "alif": ALIF, "cubalif": CUBALIF, "izhikevich": Izhikevich,
    "multispike": MultiSpike, "psn": PSN, "masked_psn": MaskedPSN, "sliding_psn": SlidingPSN,
}


def register_neuron(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: make a neuron class (or factory) available to ``create_neuron`` under ``name``."""
    def deco(cls: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name.lower()
        if key in NEURONS and NEURONS[key] is not cls:
            raise ValueError(f"a neuron named {name!r} is already registered ({NEURONS[key]})")
        NEURONS[key] = cls
        return cls
    return deco


def list_neurons() -> list[str]:
    return sorted(NEURONS)


def create_neuron(spec: str | nn.Module | Callable[[], nn.Module], **kwargs: Any) -> nn.Module:
    """A fresh neuron module from a name, a template module (deep-copied) or a zero-argument factory.

    Models call this once per layer, so a template like ``LIF(tau=2.0)`` yields independent layers.
    """
    if isinstance(spec, nn.Module):
        if kwargs:
            raise TypeError("create_neuron: pass keyword arguments with a name, not with a module template")
        return copy.deepcopy(spec)
    if isinstance(spec, str):
        key = spec.lower().replace("-", "_")
        if key not in NEURONS:
            raise ValueError(f"unknown neuron {spec!r}; choose one of {list_neurons()}")
        return NEURONS[key](**kwargs)
    if callable(spec):
        return spec(**kwargs)
    raise TypeError(f"neuron must be a name, an nn.Module or a factory, got {type(spec).__name__}")

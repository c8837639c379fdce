"""How layers and models turn a ``neuron=`` argument into one fresh neuron per layer.

A spec is a module template (deep-copied), a registered name, or a zero-argument factory, exactly as
``spikeforge.neurons.create_neuron`` takes it; ``None`` means the papers' default,
``LIF(tau=2, surrogate=ATan(alpha=2), detach_reset=True)`` (SpikingJelly's ``MultiStepLIFNode`` as the
Spikformer / Spikingformer / SEW ResNet code configures it).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..neurons import LIF, PSN, SlidingPSN, SpikingNeuron, create_neuron
from ..surrogate import ATan

__all__ = ["NeuronSpec", "default_neuron", "make_neuron", "set_threshold", "is_neuron", "NEURON_TYPES"]

NeuronSpec = nn.Module | str | Callable[[], nn.Module] | None
"""What a layer or model accepts as ``neuron``: a module (copied per use), a registered name, a factory,
or ``None`` for the default."""
NEURON_TYPES: tuple[type[nn.Module], ...] = (SpikingNeuron, PSN, SlidingPSN)
"""The module types counted as spiking neurons (recording, BN folding, the audit)."""


def default_neuron() -> LIF:
    """The model zoo's neuron: ``LIF(tau=2.0, surrogate=ATan(alpha=2.0), detach_reset=True)``."""
    return LIF(tau=2.0, surrogate=ATan(alpha=2.0), detach_reset=True)


def is_neuron(module: nn.Module) -> bool:
    """A spiking neuron module (scan neuron or parallel spiking neuron)."""
    return isinstance(module, NEURON_TYPES)


def set_threshold(neuron: nn.Module, v_threshold: float) -> nn.Module:
    """Set the firing threshold of a freshly built neuron in place (and return it).

    Scan neurons get ``v_threshold``; the PSN family folds the threshold into its bias (``b = −V_th``).
    """
    if isinstance(neuron, SpikingNeuron):
        th = neuron.v_threshold
        if isinstance(th, torch.Tensor):
            with torch.no_grad():
                th.fill_(v_threshold)
        else:
            neuron.v_threshold = float(v_threshold)
    elif isinstance(neuron, PSN | SlidingPSN):
        with torch.no_grad():
            neuron.bias.fill_(-float(v_threshold))
    else:
        raise TypeError(f"cannot set the threshold of {type(neuron).__name__}: it is neither a SpikingNeuron "
                        "(v_threshold) nor a PSN (bias = -V_th)")
    return neuron


def make_neuron(spec: NeuronSpec = None, *, T: int | None = None, v_threshold: float | None = None) -> nn.Module:
    """A fresh neuron from ``spec`` (see the module docstring).

    Args:
        spec: template module, registered name, zero-argument factory, or ``None`` for ``default_neuron()``.
        T: the model's number of steps: passed to the name ``"psn"``, checked against a PSN's own ``T``.
        v_threshold: if given, override the threshold of the new neuron (``set_threshold``).
    """
    if spec is None:
        n: nn.Module = default_neuron()
    elif isinstance(spec, str) and spec.lower() == "psn":
        if T is None:
            raise ValueError("neuron 'psn' needs the number of steps T; give the model T=...")
        n = create_neuron(spec, T=T)
    elif isinstance(spec, str) and spec.lower().replace("-", "_") == "masked_psn":
        raise ValueError("neuron 'masked_psn' needs its order k: pass a factory, e.g. "
                         "neuron=lambda: MaskedPSN(k=2, T=T)")
    else:
        n = create_neuron(spec)
    if isinstance(n, PSN) and T is not None and n.T != T:
        raise ValueError(f"the {type(n).__name__} neuron was built for T={n.T}, the model runs T={T}")
    return n if v_threshold is None else set_threshold(n, v_threshold)

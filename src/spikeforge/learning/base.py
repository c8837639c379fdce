"""What the rate-coded methods share: which models they can train, and swapping a model's neurons.

Every method here reads a layer through its spike count or rate, so a model qualifies when each of its
layers maps rates to rates: synaptic layers, BatchNorm, pooling, SEW ADD sums. Rejected at start, with
the reason: attention (Spikformer, Spikingformer: a product of two spike tensors is not a function of
their rates), the PSN family (no membrane to reset), SEW AND/IAND (products of spikes), and, for
conversion, max pooling (the maximum of rates is not the rate of max-pooled spikes).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..layers import SEWResidual
from ..layers.attention import SpikingSelfAttention
from ..neurons import PSN, MaskedPSN, SlidingPSN, SpikingNeuron

__all__ = ["rate_compatible", "replace_neurons", "MAX_POOLS"]

MAX_POOLS: tuple[type[nn.Module], ...] = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d,
                                          nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
"""Max pooling layers (refused by conversion)."""


def rate_compatible(model: nn.Module, max_pool: bool = True) -> str | None:
    """``None`` when every layer of ``model`` maps rates to rates, else the first reason it does not
    (naming the module). ``max_pool=False`` also refuses max pooling."""
    found = False
    for name, m in model.named_modules():
        where = name or type(model).__name__
        if isinstance(m, SpikingSelfAttention):
            return (f"{where} is spiking self-attention (Spikformer/Spikingformer): a product of two spike "
                    "tensors is not a function of their rates")
        if isinstance(m, (PSN, MaskedPSN, SlidingPSN)):
            return f"{where} is a {type(m).__name__} (parallel neuron): it has no membrane to integrate and reset"
        if isinstance(m, SEWResidual) and m.cnf != "ADD":
            return f"{where} is a SEW {m.cnf} residual: it multiplies spikes; only SEW ADD sums rates"
        if not max_pool and isinstance(m, MAX_POOLS):
            return (f"{where} is max pooling: the maximum of rates is not the rate of max-pooled spikes; build "
                    "the model with average pooling (e.g. --model-arg pool=avg for spiking_cnn_tiny)")
        found = found or isinstance(m, SpikingNeuron)
    return None if found else "it has no spiking neuron to train"


def replace_neurons(model: nn.Module, make: Callable[[str, nn.Module], nn.Module]) -> list[str]:
    """Replace, in place, every ``SpikingNeuron`` of ``model`` by ``make(name, old)``; returns the names."""
    done: list[str] = []
    for name, parent in list(model.named_modules()):
        for key, child in list(parent._modules.items()):
            if isinstance(child, SpikingNeuron):
                full = f"{name}.{key}" if name else key
                parent._modules[key] = make(full, child)
                done.append(full)
    return done

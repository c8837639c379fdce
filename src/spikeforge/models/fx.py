"""``torch.fx`` tracing of spiking models, with neurons and temporal layers as leaves.

``trace(model)`` returns a ``GraphModule`` whose ``call_module`` nodes are the plain ``torch.nn`` layers
(``Conv2d``, ``Linear``, ``BatchNorm2d``, pooling, …), every spiking neuron (``SpikingNeuron`` and the
PSN family) and every layer that declares ``fx_leaf = True`` (``ToSequence``, the temporal norms,
``SeqDropout``). ``TimeFold`` and the residual wrappers are traced through, so the fold/unfold reshapes
and the residual sums appear as graph nodes: the graph an exporter walks.
"""

from __future__ import annotations

from typing import Any

from torch import fx, nn

from ..layers import is_neuron

__all__ = ["SpikeTracer", "trace", "is_leaf"]


def is_leaf(module: nn.Module) -> bool:
    """A neuron or a module marked ``fx_leaf = True`` (besides ``torch.nn``'s own leaves)."""
    return is_neuron(module) or bool(getattr(module, "fx_leaf", False))


class SpikeTracer(fx.Tracer):
    """``fx.Tracer`` that keeps neurons and ``fx_leaf`` modules opaque."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return is_leaf(m) or super().is_leaf_module(m, module_qualified_name)


def trace(model: nn.Module, concrete_args: dict[str, Any] | None = None) -> fx.GraphModule:
    """Symbolically trace ``model`` (no data needed; works on the meta device)."""
    tracer = SpikeTracer()
    graph = tracer.trace(model, concrete_args)
    return fx.GraphModule(tracer.root, graph, type(model).__name__)

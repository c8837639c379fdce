"""``LayerOps``: what one layer executed during counting, summed over calls (see ``counting.OpCounter``)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["LayerOps"]


@dataclass
class LayerOps:
    """What one layer (a module, or one op of a module) executed, summed over calls.

    Attributes:
        name: module name (``"model"`` for the root), plus ``:opN`` for the N-th counted op of a module
            with children (``blocks.0.0.branch:bmm1``).
        module_type, op: the module's class and the aten op.
        role: ``"synaptic"``, ``"norm"``, ``"scale"`` (by a constant), ``"elementwise"`` (tensor × tensor)
            or ``"neuron"`` (inside a spiking neuron).
        calls, dense, bias: calls, multiplications executed, bias additions.
        ac, mac: operations charged under the counter's convention (synaptic layers only).
        rate_sum: sum over calls of the spike operand's rate (1 for a MAC call); ``rate = rate_sum / calls``.
        audit: multiplications per audit category (``ac``, ``mac``, ``foldable``, ``neuron``).
        causes: why the ``mac`` multiplications are not spike-driven.
        tags: ``"encoder"`` (multiplies the model input), ``"head"`` (produces the model output).
    """

    name: str
    module_type: str
    op: str
    role: str
    calls: int = 0
    dense: float = 0.0
    bias: float = 0.0
    ac: float = 0.0
    mac: float = 0.0
    rate_sum: float = 0.0
    audit: dict[str, float] = field(default_factory=dict)
    causes: list[str] = field(default_factory=list)
    tags: set[str] = field(default_factory=set)

    @property
    def rate(self) -> float:
        return self.rate_sum / self.calls if self.calls else 0.0

    def add_audit(self, category: str, n: float, cause: str = "") -> None:
        self.audit[category] = self.audit.get(category, 0.0) + n
        if cause and cause not in self.causes:
            self.causes.append(cause)

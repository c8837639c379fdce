"""What a multiplication multiplies: operand values, their provenance, the counting conventions.

Three counting conventions are in use in the SNN literature; they differ in what counts as a spike operand
and in how many operations a spike operand costs:

=================  ===================================  ===========================  =======  ==================
convention         spike operand (an AC)                ops charged                  bias     source
=================  ===================================  ===========================  =======  ==================
``spikingformer``  every value in {0, 1}                ``(dense + bias) · rate``    counted  syops, Nspks_max 1
``spikformer``     non-negative integers {0, 1, 2, …}   ``(dense + bias) · mean``    counted  Nspks_max 30
``neurobench``     every value in {-1, 0, 1}            nonzero × nonzero products   no       NeuroBench SynOps
=================  ===================================  ===========================  =======  ==================

``rate`` is the mean of the spike operand (its firing rate); with two spike operands (an attention
product ``Kᵀ·V``) the smaller rate is used, as Spikingformer's SSA term ``min(fr_k, fr_v)``. Non-spike
products are MACs, charged ``dense + bias`` (syops) or their nonzero products (NeuroBench).
References: Spikingformer ``energy_consumption_calculation/ops.py`` (Zhou et al., arXiv 2304.11954);
syops-counter (G. Chen); NeuroBench ``metrics/workload/synaptic_operations.py`` (Yik et al., 2023).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["Convention", "CONVENTIONS", "get_convention", "Values", "Prov", "inspect_values", "static_values",
           "is_spike", "describe", "cause"]


@dataclass(frozen=True)
class Convention:
    """How operations are counted (see the module table).

    Attributes:
        name: the convention's name.
        counts_are_spikes: integer spike counts ``{0, 1, 2, …}`` are AC operands, charged their mean value.
        ternary: values in ``{-1, 0, 1}`` are AC operands (signed spikes).
        effective: charge only products of a nonzero operand and a nonzero weight (else dense × rate).
        bias: bias additions belong to the layer's count.
        max_count: with ``counts_are_spikes``, the largest count still treated as spikes (``None``: any).
    """

    name: str
    counts_are_spikes: bool = False
    ternary: bool = False
    effective: bool = False
    bias: bool = True
    max_count: int | None = None


CONVENTIONS: dict[str, Convention] = {
    "spikingformer": Convention("spikingformer"),
    "spikformer": Convention("spikformer", counts_are_spikes=True),
    "neurobench": Convention("neurobench", ternary=True, effective=True, bias=False),
}
"""Counting conventions by name (``spikformer``, ``spikingformer``, ``neurobench``): which operands count
as spikes (an accumulate, AC) and which as real values (a multiply-accumulate, MAC)."""


def get_convention(convention: str | Convention) -> Convention:
    """A ``Convention`` from its name (or the object itself)."""
    if isinstance(convention, Convention):
        return convention
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown counting convention {convention!r}; choose one of {sorted(CONVENTIONS)} "
                         "or pass a spikeforge.analysis.Convention")
    return CONVENTIONS[convention]


@dataclass(frozen=True)
class Values:
    """What a tensor holds.

    Attributes:
        kind: ``"binary"`` (every value 0 or 1), ``"counts"`` (non-negative integers, some ≥ 2),
            ``"ternary"`` (values in {-1, 0, 1}, some -1), or ``"real"``.
        rate: mean value for binary and counts, mean ``|x|`` for ternary, 1 for real.
        max: largest value (``nan`` when unknown, on the meta device).
        known: values were inspected (``False`` on the meta device: the kind comes from provenance and
            every rate is forced to 1).
    """

    kind: str
    rate: float
    max: float
    known: bool = True


@dataclass(eq=False)
class Prov:
    """Where a tensor came from: the op and module that produced it.

    ``kind`` is ``"input"`` (the model's input), ``"param"`` (a parameter or buffer), ``"spikes"`` (a
    spiking neuron's output, or a view / max-pool / selection of one), ``"counts"`` (a sum of spikes) or
    ``"real"``. ``event`` is the id of the counted multiplication that produced the tensor (``-1`` if none);
    views share their base's ``Prov`` (and so its cached ``values``).
    """

    kind: str
    module: str
    module_type: str
    op: str
    event: int = -1
    values: Values | None = field(default=None, repr=False)


def inspect_values(t: Tensor, prov: Prov | None = None) -> Values:
    """Classify the values of ``t`` (cached on ``prov``). On the meta device, fall back to ``static_values``."""
    if prov is not None and prov.values is not None:
        return prov.values
    if t.is_meta:
        v = static_values(prov)
    else:
        v = _inspect(t.detach())
    if prov is not None:
        prov.values = v
    return v


def _inspect(x: Tensor) -> Values:
    if x.numel() == 0:
        return Values("binary", 0.0, 0.0)
    if x.dtype == torch.bool:
        return Values("binary", float(x.float().mean()), float(x.any()))
    xf = x if x.is_floating_point() else x.double()
    mx, mn = float(xf.max()), float(xf.min())
    if mn >= 0 and mx <= 1 and bool(((xf == 0) | (xf == 1)).all()):
        return Values("binary", float(xf.mean(dtype=torch.float64)), mx)
    integral = bool((xf == torch.round(xf)).all())
    if integral and mn >= 0:
        return Values("counts", float(xf.mean(dtype=torch.float64)), mx)
    if integral and mn >= -1 and mx <= 1:
        return Values("ternary", float(xf.abs().mean(dtype=torch.float64)), mx)
    return Values("real", 1.0, mx)


def static_values(prov: Prov | None) -> Values:
    """Values implied by provenance alone, every rate forced to 1 (the meta-device dense count)."""
    kind = {"spikes": "binary", "counts": "counts"}.get(prov.kind if prov is not None else "real", "real")
    return Values(kind, 1.0, float("nan"), known=False)


def is_spike(v: Values, convention: Convention) -> bool:
    """Whether an operand with values ``v`` makes the product an AC under ``convention``."""
    if v.kind == "binary":
        return True
    if v.kind == "ternary":
        return convention.ternary
    if v.kind == "counts" and convention.counts_are_spikes:
        return convention.max_count is None or not v.max > convention.max_count
    return False


def describe(v: Values, p: Prov | None) -> str:
    """Words for an operand: its values and where they come from (for the audit's causes)."""
    if v.kind == "counts":
        what = f"integer spike counts (up to {v.max:g})" if v.known else "sums of spikes"
    elif v.kind == "ternary":
        what = "signed spikes {-1, 0, 1}"
    else:
        what = "real values"
    if p is None:
        return f"{what} (softmax probabilities)"
    if p.kind == "input":
        return f"{what} of the model input"
    hint = {"aten.add": " (a residual sum)", "aten.mean": " (an average)", "aten.cat": " (a concatenation)"}
    return f"{what} from {p.op}{hint.get(p.op, '')} in {p.module or 'model'} ({p.module_type})"


def cause(acts: list[tuple[Tensor | None, Prov | None]], vals: list[Values], op: str) -> str:
    """Why a synaptic op ``op`` is a non-spike MAC: its non-weight operands, described."""
    target = {"convolution": "a conv"}.get(op, "a linear/matmul")
    if not acts:
        return f"weights only, feeding {target}"
    return " × ".join(describe(v, p) for v, (_, p) in zip(vals, acts)) + f" feeding {target}"

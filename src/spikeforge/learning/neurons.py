"""The neuron of the rate-coded methods: soft reset, firing at ``α·V_th``, a threshold that may be folded.

DSR, tandem learning, the spike-count rule and ANN→SNN conversion all read a layer through its firing
rate. They share one neuron family: IF (or Euler LIF) with reset by subtraction, whose spike condition is
``V ≥ α·V_th`` while the reset subtracts ``V_th`` (``α = 1``: the usual neuron; ``α = 0.5``: the
rounding neuron of DSR, equal to an IF neuron started at ``V_th/2`` as QCFS conversion does).

The spike stands for the value ``V_th·S``. Where the spikes reach only synaptic layers (``graph.py``),
``fold_thresholds`` moves ``V_th`` into those layers' weights (a ``torch.nn.utils.parametrize``
parametrisation ``W·V_th``), so the neuron emits 0/1 spikes and the spike-driven audit sees
accumulates; elsewhere the neuron emits ``V_th·S`` itself (``emit=True``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ..neurons import SpikingNeuron, fire
from ..neurons.dynamics import SpikeParams
from .graph import FoldPlan, spike_consumers

__all__ = ["RateNeuron", "RateParams", "RateState", "rate_step", "ScaleByThreshold", "fold_thresholds",
           "rate_neurons"]


class RateState(NamedTuple):
    """The membrane potential ``v`` ``[B, ...]``."""
    v: Tensor


@dataclass(frozen=True)
class RateParams(SpikeParams):
    """``SpikeParams`` plus ``alpha`` (fire at ``α·V_th``), ``leak`` (``λ = dt/τ``; ``None``: IF) and
    ``emit`` (output ``V_th·S`` instead of ``S``)."""
    alpha: float = 1.0
    leak: float | None = None
    emit: bool = False


def rate_step(x: Tensor, state: RateState, p: RateParams) -> tuple[Tensor, RateState]:
    """One step on ``[B, ...]``.

    charge ``H = V + X`` (IF) or ``H = V + λ(X − V)`` (Euler LIF, ``β = 1 − λ``); fire
    ``S = Θ(H − α·V_th)``; reset by subtraction ``V = H − V_th·S``; output ``S`` (``V_th·S`` when ``emit``).
    """
    h = state.v + x if p.leak is None else state.v + p.leak * (x - state.v)
    s = fire(h, p.alpha * p.v_threshold, p.surrogate)
    v = h - p.v_threshold * s
    return (s * p.v_threshold if p.emit else s), RateState(v)


class RateNeuron(SpikingNeuron):
    """IF / Euler-LIF neuron with soft reset, spike at ``α·V_th``, and an optional lower bound on a
    learnable threshold (clamped in place before every forward, as DSR's official code does).

    Args:
        v_threshold: ``V_th``.
        alpha: fire at ``α·V_th`` (``0 < α ≤ 1``).
        tau: ``None`` for IF, else the LIF time constant (leak ``λ = dt/τ``).
        dt: the LIF step.
        learn_threshold: make ``V_th`` an ``nn.Parameter``.
        vth_bound: the learnable threshold's lower bound (``V_th ← max(V_th, bound)``).
        grad: a ``GradientRule`` (the method's backward), or ``"surrogate"``.
        emit: output ``V_th·S`` (set by ``fold_thresholds`` where the threshold cannot be folded).
        kwargs: the rest of ``SpikingNeuron``'s arguments (``surrogate``, ``backend``).
    """

    step_fn = staticmethod(rate_step)
    state_type = RateState

    def __init__(self, v_threshold: float = 1.0, alpha: float = 1.0, tau: float | None = None, dt: float = 1.0,
                 learn_threshold: bool = False, vth_bound: float = 0.0, grad: Any = "surrogate",
                 emit: bool = False, **kwargs: Any) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        if not v_threshold > 0:
            raise ValueError(f"v_threshold must be > 0, got {v_threshold}")
        if tau is not None and not tau >= dt > 0:
            raise ValueError(f"tau must be >= dt > 0 for a stable Euler step, got tau={tau}, dt={dt}")
        super().__init__(v_threshold=v_threshold, v_reset=None, learn_threshold=learn_threshold, grad=grad,
                         **kwargs)
        self.alpha, self.tau, self.dt = float(alpha), tau, float(dt)
        self.vth_bound, self.emit = float(vth_bound), bool(emit)

    @property
    def leak(self) -> float | None:
        """``λ = dt/τ`` (``None`` for IF)."""
        return None if self.tau is None else self.dt / self.tau

    def params(self) -> RateParams:
        return RateParams(**self.spike_params(), alpha=self.alpha, leak=self.leak, emit=self.emit)

    def threshold(self) -> Tensor:
        """``V_th`` as a tensor (a detached copy: the in-place clamp of a later forward must not change
        what an earlier one saved for backward)."""
        return torch.as_tensor(self.v_threshold).detach().clone()

    def run(self, x_seq: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        th = self.v_threshold
        if isinstance(th, nn.Parameter) and self.vth_bound > 0 and bool((th < self.vth_bound).any()):
            with torch.no_grad():
                th.clamp_(min=self.vth_bound)
        return super().run(x_seq, state)

    def extra_repr(self) -> str:
        kind = "IF" if self.tau is None else f"LIF(tau={self.tau}, dt={self.dt})"
        return f"{kind}, alpha={self.alpha}, emit={self.emit}, " + super().extra_repr()


class ScaleByThreshold(nn.Module):
    """Parametrisation ``W ↦ W·V_th`` of a synaptic layer fed by a ``RateNeuron`` (the threshold enters
    detached: its gradient is the method's, from the neuron's gradient rule)."""

    def __init__(self, neuron: RateNeuron) -> None:
        super().__init__()
        self._neuron = (neuron,)          # a reference, not a submodule (the neuron lives in the model)

    def forward(self, weight: Tensor) -> Tensor:
        return weight * self._neuron[0].threshold().to(weight.dtype)


def rate_neurons(model: nn.Module) -> dict[str, RateNeuron]:
    """The ``RateNeuron``s of ``model`` by qualified name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, RateNeuron)}


def fold_thresholds(model: nn.Module) -> FoldPlan:
    """Fold every ``RateNeuron``'s threshold into the synaptic layers its spikes reach (in place).

    Neurons whose spikes meet before a synapse (SEW ADD) are tied to one threshold (the first one's
    ``nn.Parameter`` or value); neurons that cannot be folded get ``emit=True``. Returns the plan."""
    neurons = rate_neurons(model)
    plan = spike_consumers(model, dict(neurons))
    for name in plan.emit:
        neurons[name].emit = True
    for members, targets in zip(plan.groups, plan.consumers):
        lead = neurons[members[0]]
        for other in members[1:]:
            neurons[other].v_threshold = lead.v_threshold          # the same Parameter (or value): tied
        for t in targets:
            parametrize.register_parametrization(model.get_submodule(t), "weight", ScaleByThreshold(lead))
    return plan

"""Graded multi-spike LIF: emits an integer spike count per step."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from torch import Tensor

from .base import SpikingNeuron
from .dynamics import Scalar, SpikeParams, euler_leak, fire, quantize, reset
from .lif import check_tau, lif_charge

__all__ = ["MultiSpike", "MultiSpikeParams", "MultiSpikeState", "multispike_step"]


class MultiSpikeState(NamedTuple):
    """Graded-spike LIF state: the membrane potential ``v`` ``[B, ...]``."""
    v: Tensor


@dataclass(frozen=True)
class MultiSpikeParams(SpikeParams):
    """Graded-spike LIF parameters: LIF's ``tau``, ``dt``, ``decay_input`` plus ``max_spikes`` (``K``, the
    largest count one step can emit; static: it shapes the compiled kernel)."""
    tau: Scalar = 2.0
    dt: Scalar = 1.0
    decay_input: bool = True
    max_spikes: int = 4


def multispike_step(x: Tensor, state: MultiSpikeState, p: MultiSpikeParams) -> tuple[Tensor, MultiSpikeState]:
    """One graded-spike LIF step: the output is how many thresholds ``H`` crossed, up to ``K``.

    charge as LIF; count ``N = Σ_{k=1..K} Θ(H − k·V_th)`` (= ``clamp(floor(H/V_th), 0, K)``), whose
    surrogate gradient is ``Σ_k σ'(H − k·V_th)``; reset soft ``V = H − V_th·N`` or hard
    ``V = H(1 − S₁) + V_reset·S₁`` with ``S₁ = Θ(H − V_th)``.
    """
    rest = 0.0 if p.v_reset is None else p.v_reset
    h = lif_charge(x, state.v, euler_leak(p.tau, p.dt), rest, p.decay_input)
    first = fire(h, p.v_threshold, p.surrogate)
    count = first
    for k in range(2, p.max_spikes + 1):
        count = count + fire(h, k * p.v_threshold, p.surrogate)
    if p.v_reset is None:
        v = reset(h, count, p.v_threshold, None, p.detach_reset)
    else:
        v = reset(h, first, p.v_threshold, p.v_reset, p.detach_reset)
    return count, MultiSpikeState(quantize(v, p.quantizer))


class MultiSpike(SpikingNeuron):
    """LIF neuron whose output per step is an integer spike count in ``[0, max_spikes]``.

    Soft reset (``v_reset=None``, the default here) subtracts one threshold per emitted spike, so the
    count carries what a binary neuron would spread over several steps.

    Args:
        tau: as ``LIF``.
        decay_input: as ``LIF``.
        dt: as ``LIF``.
        max_spikes: the largest count per step ``K`` (>= 1).
    """

    step_fn = staticmethod(multispike_step)
    state_type = MultiSpikeState

    def __init__(self, tau: float = 2.0, *, max_spikes: int = 4, decay_input: bool = True, dt: float = 1.0,
                 **kwargs: Any) -> None:
        kwargs.setdefault("v_reset", None)
        super().__init__(**kwargs)
        check_tau("tau", tau, dt)
        if int(max_spikes) < 1:
            raise ValueError(f"max_spikes must be >= 1, got {max_spikes}")
        self.tau, self.dt, self.decay_input, self.max_spikes = float(tau), float(dt), bool(decay_input), int(max_spikes)

    def params(self) -> MultiSpikeParams:
        return MultiSpikeParams(tau=self.tau, dt=self.dt, decay_input=self.decay_input,
                                max_spikes=self.max_spikes, **self.spike_params())

    def extra_repr(self) -> str:
        return f"tau={self.tau}, max_spikes={self.max_spikes}, " + super().extra_repr()

"""Adaptive LIF: a threshold that rises with every spike and relaxes back (Bellec et al. 2018, LSNN)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from torch import Tensor

from .base import SpikingNeuron
from .dynamics import Scalar, SpikeParams, euler_leak, fire, quantize, reset
from .lif import check_tau, lif_charge

__all__ = ["ALIF", "ALIFParams", "ALIFState", "alif_step"]


class ALIFState(NamedTuple):
    """ALIF state: the membrane potential ``v`` and the adaptation variable ``a``, each ``[B, ...]``."""
    v: Tensor
    a: Tensor


@dataclass(frozen=True)
class ALIFParams(SpikeParams):
    """ALIF parameters: ``SpikeParams`` plus ``tau`` (membrane), ``tau_adapt`` (adaptation), ``beta``
    (threshold increase per unit of ``a``), ``dt`` and ``decay_input``."""
    tau: Scalar = 2.0
    tau_adapt: Scalar = 20.0
    beta: Scalar = 0.5
    dt: Scalar = 1.0
    decay_input: bool = True


def alif_step(x: Tensor, state: ALIFState, p: ALIFParams) -> tuple[Tensor, ALIFState]:
    """One ALIF step (Bellec et al., NeurIPS 2018, "Long short-term memory and learning-to-learn in SNNs").

    charge ``H = V + λ·(X − (V − V_reset))`` as LIF, ``λ = dt/τ``;
    threshold ``Θ_t = V_th + β·A``;  fire ``S = Θ(H − Θ_t)``;
    reset hard ``V = H(1 − S) + V_reset·S`` or soft ``V = H − Θ_t·S``;
    adaptation ``A ← A − λ_a·A + S`` with ``λ_a = dt/τ_adapt``.
    """
    rest = 0.0 if p.v_reset is None else p.v_reset
    h = lif_charge(x, state.v, euler_leak(p.tau, p.dt), rest, p.decay_input)
    th = p.v_threshold + p.beta * state.a
    s = fire(h, th, p.surrogate)
    v = quantize(reset(h, s, th, p.v_reset, p.detach_reset), p.quantizer)
    a = state.a - euler_leak(p.tau_adapt, p.dt) * state.a + s
    return s, ALIFState(v, a)


class ALIF(SpikingNeuron):
    """Adaptive-threshold LIF over ``[T, B, ...]``; state ``(v, a)``.

    Args:
        tau: membrane time constant (unit of ``dt``).
        tau_adapt: time constant of the threshold adaptation ``a``.
        beta: threshold increase per unit of ``a`` (``Θ = V_th + β·a``).
        decay_input: as ``LIF``.
        dt: as ``LIF``.
        **kwargs: as ``LIF``.
    """

    step_fn = staticmethod(alif_step)
    state_type = ALIFState

    def __init__(self, tau: float = 2.0, *, tau_adapt: float = 20.0, beta: float = 0.5,
                 decay_input: bool = True, dt: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_tau("tau", tau, dt)
        check_tau("tau_adapt", tau_adapt, dt)
        self.tau, self.tau_adapt, self.beta = float(tau), float(tau_adapt), float(beta)
        self.dt, self.decay_input = float(dt), bool(decay_input)

    def params(self) -> ALIFParams:
        return ALIFParams(tau=self.tau, tau_adapt=self.tau_adapt, beta=self.beta, dt=self.dt,
                          decay_input=self.decay_input, **self.spike_params())

    def extra_repr(self) -> str:
        return (f"tau={self.tau}, tau_adapt={self.tau_adapt}, beta={self.beta}, dt={self.dt}, "
                + super().extra_repr())

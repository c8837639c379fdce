"""Current-based LIF: a synaptic current filters the input before the membrane (NIR's ``CubaLIF``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from torch import Tensor

from .base import SpikingNeuron
from .dynamics import Scalar, SpikeParams, euler_leak, fire, quantize, reset
from .lif import check_tau, lif_charge

__all__ = ["CUBALIF", "CUBALIFParams", "CUBALIFState", "cubalif_step"]


class CUBALIFState(NamedTuple):
    """Current-based LIF state: the membrane potential ``v`` and the synaptic current ``i``, each ``[B, ...]``."""
    v: Tensor
    i: Tensor


@dataclass(frozen=True)
class CUBALIFParams(SpikeParams):
    """Current-based LIF parameters: ``SpikeParams`` plus ``tau`` (membrane), ``tau_syn`` (synapse), ``dt``
    and ``decay_input`` (whether the current's input is scaled by its leak)."""
    tau: Scalar = 2.0
    tau_syn: Scalar = 5.0
    dt: Scalar = 1.0
    decay_input: bool = True


def cubalif_step(x: Tensor, state: CUBALIFState, p: CUBALIFParams) -> tuple[Tensor, CUBALIFState]:
    """One current-based LIF step: forward Euler of ``τ_s dI/dt = −I + X``, ``τ dV/dt = −(V − V_reset) + I``.

    current ``I' = I + λ_s·(X − I)`` (``decay_input=False``: ``I' = I − λ_s·I + X``), ``λ_s = dt/τ_syn``;
    charge ``H = V + λ·(I' − (V − V_reset))``, ``λ = dt/τ``; fire and reset as LIF.
    """
    i = lif_charge(x, state.i, euler_leak(p.tau_syn, p.dt), 0.0, p.decay_input)
    rest = 0.0 if p.v_reset is None else p.v_reset
    h = lif_charge(i, state.v, euler_leak(p.tau, p.dt), rest, True)
    s = fire(h, p.v_threshold, p.surrogate)
    return s, CUBALIFState(quantize(reset(h, s, p.v_threshold, p.v_reset, p.detach_reset), p.quantizer), i)


class CUBALIF(SpikingNeuron):
    """Current-based LIF over ``[T, B, ...]``; state ``(v, i)``.

    Args:
        tau: membrane time constant (unit of ``dt``).
        tau_syn: synaptic current time constant (unit of ``dt``).
        decay_input: whether the input is scaled by the synaptic leak (NIR's continuous model: True).
        dt: as ``LIF``.
        **kwargs: as ``LIF``.
    """

    step_fn = staticmethod(cubalif_step)
    state_type = CUBALIFState

    def __init__(self, tau: float = 2.0, *, tau_syn: float = 5.0, decay_input: bool = True,
                 dt: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_tau("tau", tau, dt)
        check_tau("tau_syn", tau_syn, dt)
        self.tau, self.tau_syn, self.dt, self.decay_input = float(tau), float(tau_syn), float(dt), bool(decay_input)

    def params(self) -> CUBALIFParams:
        return CUBALIFParams(tau=self.tau, tau_syn=self.tau_syn, dt=self.dt, decay_input=self.decay_input,
                             **self.spike_params())

    def extra_repr(self) -> str:
        return f"tau={self.tau}, tau_syn={self.tau_syn}, dt={self.dt}, " + super().extra_repr()

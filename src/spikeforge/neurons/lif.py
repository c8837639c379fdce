"""Leaky integrate-and-fire."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from torch import Tensor

from .base import SpikingNeuron
from .dynamics import Scalar, SpikeParams, euler_leak, fire, quantize, reset

__all__ = ["LIF", "LIFParams", "LIFState", "lif_step", "lif_charge", "check_tau"]


class LIFState(NamedTuple):
    v: Tensor


@dataclass(frozen=True)
class LIFParams(SpikeParams):
    tau: Scalar = 2.0
    dt: Scalar = 1.0
    decay_input: bool = True


def lif_charge(x: Tensor, v: Tensor, leak: Scalar, rest: Scalar, decay_input: bool) -> Tensor:
    """``H = V + λ(X − (V − V_rest))`` (``decay_input``) or ``H = V − λ(V − V_rest) + X``."""
    if decay_input:
        return v + leak * (x - (v - rest))
    return v - leak * (v - rest) + x


def lif_step(x: Tensor, state: LIFState, p: LIFParams) -> tuple[Tensor, LIFState]:
    """One LIF step on ``[B, ...]``, forward Euler of ``τ dV/dt = −(V − V_reset) + X``.

    charge ``H = V + λ·(X − (V − V_reset))`` with ``λ = dt/τ`` (``decay_input=False``:
    ``H = V − λ·(V − V_reset) + X``); fire ``S = Θ(H − V_th)``; reset hard ``V = H(1 − S) + V_reset·S``
    or soft ``V = H − V_th·S``. With ``dt = 1`` this is SpikingJelly's ``LIFNode`` exactly.
    """
    rest = 0.0 if p.v_reset is None else p.v_reset
    h = lif_charge(x, state.v, euler_leak(p.tau, p.dt), rest, p.decay_input)
    s = fire(h, p.v_threshold, p.surrogate)
    return s, LIFState(quantize(reset(h, s, p.v_threshold, p.v_reset, p.detach_reset), p.quantizer))


def check_tau(name: str, tau: float, dt: float) -> None:
    if not dt > 0:
        raise ValueError(f"dt must be > 0, got dt={dt}")
    if not tau >= dt:
        raise ValueError(f"{name} must be >= dt for a stable Euler step (leak dt/{name} <= 1), "
                         f"got {name}={tau}, dt={dt}")


class LIF(SpikingNeuron):
    """Leaky integrate-and-fire neuron over ``[T, B, ...]`` (Euler, ``λ = dt/τ``; see ``lif_step``).

    Args:
        tau: membrane time constant, in the unit of ``dt`` (steps when ``dt=1``); ``tau >= dt``.
        decay_input: whether the input is scaled by the leak (SpikingJelly's default ``True``).
        dt: simulation step.
        **kwargs: ``v_threshold``, ``v_reset``, ``learn_threshold``, ``surrogate``, ``detach_reset``,
            ``backend``, ``grad``, ``quantizer`` (see ``SpikingNeuron``).

    Example:
        >>> import torch
        >>> from spikeforge.neurons import LIF
        >>> LIF(tau=2.0)(torch.full((3, 1), 1.5)).flatten().tolist()   # V: 0.75, 1.125 → fire, 0.75
        [0.0, 1.0, 0.0]
    """

    step_fn = staticmethod(lif_step)
    state_type = LIFState

    def __init__(self, tau: float = 2.0, *, decay_input: bool = True, dt: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_tau("tau", tau, dt)
        self.tau, self.dt, self.decay_input = float(tau), float(dt), bool(decay_input)

    def params(self) -> LIFParams:
        return LIFParams(tau=self.tau, dt=self.dt, decay_input=self.decay_input, **self.spike_params())

    def extra_repr(self) -> str:
        return f"tau={self.tau}, dt={self.dt}, decay_input={self.decay_input}, " + super().extra_repr()

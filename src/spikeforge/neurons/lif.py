"""Leaky integrate-and-fire."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

from torch import Tensor

from ..core import shift_right
from .base import SpikingNeuron
from .dynamics import Scalar, SpikeParams, euler_leak, fire, quantize, reset

__all__ = ["LIF", "LIFParams", "LIFState", "lif_step", "lif_charge", "lif_charge_shift", "check_tau"]


class LIFState(NamedTuple):
    """LIF state: the membrane potential ``v`` ``[B, ...]``."""
    v: Tensor


@dataclass(frozen=True)
class LIFParams(SpikeParams):
    """LIF parameters: ``SpikeParams`` plus ``tau`` and ``dt`` (leak ``λ = dt/τ``), ``decay_input`` and
    ``leak_shift`` (``k``: the leak as a floor shift by ``2^k``, for integer state; ``None``: ``λ = dt/τ``)."""
    tau: Scalar = 2.0
    dt: Scalar = 1.0
    decay_input: bool = True
    leak_shift: int | None = None     # λ = 2^-k applied as a floor shift (integer chips); None: λ = dt/τ


def lif_charge(x: Tensor, v: Tensor, leak: Scalar, rest: Scalar, decay_input: bool) -> Tensor:
    """``H = V + λ(X − (V − V_rest))`` (``decay_input``) or ``H = V − λ(V − V_rest) + X``."""
    if decay_input:
        return v + leak * (x - (v - rest))
    return v - leak * (v - rest) + x


def lif_charge_shift(x: Tensor, v: Tensor, k: int, rest: Scalar, decay_input: bool) -> Tensor:
    """``lif_charge`` with ``λ = 2^-k`` as a floor shift: ``H = V + ⌊(X − (V − V_rest)) / 2^k⌋`` or
    ``H = V − ⌊(V − V_rest) / 2^k⌋ + X``; integer and floating tensors agree on integer values."""
    if decay_input:
        return v + shift_right(x - (v - rest), k)
    return v - shift_right(v - rest, k) + x


def lif_step(x: Tensor, state: LIFState, p: LIFParams) -> tuple[Tensor, LIFState]:
    """One LIF step on ``[B, ...]``, forward Euler of ``τ dV/dt = −(V − V_reset) + X``.

    charge ``H = V + λ·(X − (V − V_reset))`` with ``λ = dt/τ`` (``decay_input=False``:
    ``H = V − λ·(V − V_reset) + X``); fire ``S = Θ(H − V_th)``; reset hard ``V = H(1 − S) + V_reset·S``
    or soft ``V = H − V_th·S``. With ``dt = 1`` this is SpikingJelly's ``LIFNode``: bit for bit when ``τ`` is a
    power of two (SpikingJelly divides by ``τ``, this multiplies by ``dt/τ``; otherwise the last bit may differ). With
    ``p.leak_shift = k`` the leak is ``⌊·/2^k⌋`` (``lif_charge_shift``), the form integer hardware computes.
    """
    rest = 0.0 if p.v_reset is None else p.v_reset
    if p.leak_shift is None:
        h = lif_charge(x, state.v, euler_leak(p.tau, p.dt), rest, p.decay_input)
    else:
        h = lif_charge_shift(x, state.v, p.leak_shift, rest, p.decay_input)
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
        shift_leak: apply ``λ = dt/τ`` as a floor shift by ``k = log2(τ/dt)`` (``τ/dt`` must be a power of
            two): exact in integers, so an integer-state LIF (chip simulation) runs on the fused ``cpu``
            kernel and equals the torch loop; a float state then holds what the integer one would.
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

    def __init__(self, tau: float = 2.0, *, decay_input: bool = True, dt: float = 1.0, shift_leak: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_tau("tau", tau, dt)
        self.tau, self.dt, self.decay_input = float(tau), float(dt), bool(decay_input)
        self.leak_shift: int | None = None
        if shift_leak:
            k = math.log2(self.tau / self.dt)
            if not k.is_integer():
                raise ValueError(f"shift_leak needs tau/dt to be a power of two (the leak 2^-k), got tau/dt = "
                                 f"{self.tau / self.dt}")
            self.leak_shift = int(k)

    def params(self) -> LIFParams:
        return LIFParams(tau=self.tau, dt=self.dt, decay_input=self.decay_input, leak_shift=self.leak_shift,
                         **self.spike_params())

    def extra_repr(self) -> str:
        shift = f", leak_shift={self.leak_shift}" if self.leak_shift is not None else ""
        return f"tau={self.tau}, dt={self.dt}, decay_input={self.decay_input}{shift}, " + super().extra_repr()

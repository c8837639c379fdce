"""Izhikevich's two-variable neuron (IEEE TNN 14(6), 2003)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .base import SpikingNeuron
from .dynamics import Scalar, SpikeParams, fire, quantize, reset
from .scan import State, state_dtype

__all__ = ["Izhikevich", "IzhikevichParams", "IzhikevichState", "izhikevich_step"]


class IzhikevichState(NamedTuple):
    """Izhikevich state: the membrane potential ``v`` (mV) and the recovery variable ``u``, each ``[B, ...]``."""
    v: Tensor
    u: Tensor


@dataclass(frozen=True)
class IzhikevichParams(SpikeParams):
    """Izhikevich parameters: ``SpikeParams`` (``v_threshold`` is the 30 mV peak, ``v_reset`` is ``c``) plus
    ``a``, ``b``, ``d`` of Izhikevich (2003) and ``dt`` in ms."""
    a: Scalar = 0.02
    b: Scalar = 0.2
    d: Scalar = 8.0
    dt: Scalar = 1.0


def izhikevich_step(x: Tensor, state: IzhikevichState, p: IzhikevichParams) -> tuple[Tensor, IzhikevichState]:
    """One forward-Euler step of ``v' = 0.04v² + 5v + 140 − u + I``, ``u' = a(bv − u)`` (v in mV, t in ms).

    charge ``H = V + dt·(0.04V² + 5V + 140 − U + X)``, ``U_h = U + dt·a·(b·V − U)``;
    fire ``S = Θ(H − V_th)`` (``V_th = 30`` mV, the spike peak);
    reset ``V = H(1 − S) + c·S`` (``c`` is ``v_reset``), ``U = U_h + d·S``.
    """
    v, u = state
    h = v + p.dt * (0.04 * v * v + 5.0 * v + 140.0 - u + x)
    u_h = u + p.dt * p.a * (p.b * v - u)
    s = fire(h, p.v_threshold, p.surrogate)
    s_r = s.detach() if p.detach_reset else s
    v_new = quantize(reset(h, s, p.v_threshold, p.v_reset, p.detach_reset), p.quantizer)
    return s, IzhikevichState(v_new, u_h + p.d * s_r)


class Izhikevich(SpikingNeuron):
    """Izhikevich neuron over ``[T, B, ...]``; state ``(v, u)``, at rest ``v = c``, ``u = b·c``.

    Defaults are the "regular spiking" cortical cell (a, b, c, d) = (0.02, 0.2, −65, 8); an input
    current of about 10 makes it fire tonically. ``dt`` is in ms.
    """

    step_fn = staticmethod(izhikevich_step)
    state_type = IzhikevichState

    def __init__(self, a: float = 0.02, b: float = 0.2, c: float = -65.0, d: float = 8.0, *,
                 v_threshold: float = 30.0, dt: float = 1.0, **kwargs: Any) -> None:
        if kwargs.get("v_reset", c) is None:
            raise ValueError("Izhikevich resets v to c; soft reset (v_reset=None) is not defined for it")
        kwargs.pop("v_reset", None)
        super().__init__(v_threshold=v_threshold, v_reset=c, **kwargs)
        if not dt > 0:
            raise ValueError(f"dt must be > 0, got dt={dt}")
        self.a, self.b, self.d, self.dt = float(a), float(b), float(d), float(dt)

    @property
    def c(self) -> float:
        assert self.v_reset is not None
        return self.v_reset

    def init_state(self, x: Tensor) -> State:
        dtype = state_dtype(x.dtype)
        v = torch.tensor(self.c, dtype=dtype, device=x.device)
        return IzhikevichState(v, v * self.b)

    def params(self) -> IzhikevichParams:
        return IzhikevichParams(a=self.a, b=self.b, d=self.d, dt=self.dt, **self.spike_params())

    def extra_repr(self) -> str:
        return f"a={self.a}, b={self.b}, c={self.c}, d={self.d}, dt={self.dt}, " + super().extra_repr()

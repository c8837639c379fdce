"""Leaky integrator: the non-spiking readout whose output is its membrane."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from .dynamics import Scalar, euler_leak
from .lif import check_tau, lif_charge
from .scan import available_backends, scan, state_dtype

__all__ = ["LI", "LIParams", "LIState", "li_step"]


class LIState(NamedTuple):
    """Leaky-integrator state: the membrane potential ``v`` ``[B, ...]``."""
    v: Tensor


@dataclass(frozen=True)
class LIParams:
    """Leaky-integrator parameters: ``tau`` and ``dt`` (leak ``λ = dt/τ``), the rest ``v_rest`` and
    ``decay_input``."""

    tau: Scalar = 2.0
    dt: Scalar = 1.0
    v_rest: Scalar = 0.0
    decay_input: bool = True


def li_step(x: Tensor, state: LIState, p: LIParams) -> tuple[Tensor, LIState]:
    """One step of ``τ dV/dt = −(V − V_rest) + X`` by forward Euler, output ``V``.

    ``V ← V + λ·(X − (V − V_rest))`` (``decay_input=False``: ``V ← V − λ·(V − V_rest) + X``), ``λ = dt/τ``:
    the LIF charge without fire and reset.
    """
    v = lif_charge(x, state.v, euler_leak(p.tau, p.dt), p.v_rest, p.decay_input)
    return v, LIState(v)


class LI(nn.Module):
    """Leaky-integrator readout over ``[T, B, ...]``: the output at every step is the membrane.

    The common last layer of SNNs whose decision is read from a membrane instead of spike counts, and NIR's
    ``LI`` node. Not a spiking neuron: it is not registered as a ``--neuron`` choice and analysis does not
    count it as a spiking layer. Runs on the same scan backends as the neurons.

    Args:
        tau: time constant in the unit of ``dt`` (steps when ``dt=1``); ``tau >= dt``.
        dt: simulation step.
        v_rest: the potential the membrane leaks towards (its initial value too).
        decay_input: whether the input is scaled by the leak, as for ``LIF``.
        backend: ``"auto"`` or a registered scan backend.
    """

    def __init__(self, tau: float = 2.0, *, dt: float = 1.0, v_rest: float = 0.0, decay_input: bool = True,
                 backend: str = "auto") -> None:
        super().__init__()
        check_tau("tau", tau, dt)
        if backend != "auto" and backend not in available_backends():
            raise ValueError(f"LI: unknown backend {backend!r}; choose 'auto' or one of {available_backends()}")
        self.tau, self.dt, self.v_rest = float(tau), float(dt), float(v_rest)
        self.decay_input, self.backend = bool(decay_input), backend

    def params(self) -> LIParams:
        return LIParams(tau=self.tau, dt=self.dt, v_rest=self.v_rest, decay_input=self.decay_input)

    def run(self, x_seq: Tensor, state: LIState | None = None) -> tuple[Tensor, LIState]:
        """``x_seq [T, B, ...] -> (membrane [T, B, ...], final state)``, from ``state`` or from rest."""
        if not isinstance(x_seq, Tensor) or x_seq.dim() < 2 or x_seq.shape[0] == 0:
            raise ValueError(f"LI expects a time-first tensor [T, B, ...] with T >= 1, got "
                             f"{tuple(x_seq.shape) if isinstance(x_seq, Tensor) else type(x_seq).__name__}")
        if state is None:
            state = LIState(torch.tensor(self.v_rest, dtype=state_dtype(x_seq.dtype), device=x_seq.device))
        out, final = scan(li_step, x_seq, LIState(*state), self.params(), self.backend)
        return out, LIState(*final)

    def forward(self, x_seq: Tensor) -> Tensor:
        """``x_seq [T, B, ...] -> membrane [T, B, ...]``, always from rest."""
        return self.run(x_seq)[0]

    def extra_repr(self) -> str:
        return f"tau={self.tau}, dt={self.dt}, v_rest={self.v_rest}, decay_input={self.decay_input}"

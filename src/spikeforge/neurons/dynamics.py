"""The shared pieces of every step function: decay, fire, reset, state quantisation.

Conventions (decided once; pinned by ``tests/neurons/test_conventions.py``, written in docs/guide/conventions.md):

* **Spike condition** ``S = Θ(H − V_th)`` with ``Θ(0) = 1``: a neuron exactly at threshold fires
  (``H >= V_th``), as in SpikingJelly. NIR, Norse and snnTorch use ``>``; the difference only shows on
  the boundary.
* **Decay** is forward Euler of ``τ dV/dt = −(V − V_reset) + X``: the fraction of the gap that leaks
  per step is ``dt/τ`` (``euler_leak``). With ``dt = 1`` this is SpikingJelly's ``1/τ``; it is also
  the discretisation NIR's reference simulators use, so a model maps to NIR's ``tau`` and ``dt`` unchanged.
  ``τ`` and ``dt`` share a unit (``dt = 1`` means τ is counted in steps).
* **Reset** is hard (``V ← V_reset`` after a spike) when ``v_reset`` is a number, soft
  (``V ← H − V_th``) when ``v_reset is None``.
* **Reset gradient**: ``detach_reset=False`` by default (SpikingJelly's default): the reset term passes
  gradient through the spike. ``detach_reset=True`` (the papers' choice) stops it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..core.ste import round_ste
from ..surrogate import Sigmoid, Surrogate

Scalar = float | Tensor

__all__ = ["SpikeParams", "euler_leak", "fire", "reset", "StateQuantizer", "quantize"]


def euler_leak(tau: Scalar, dt: Scalar = 1.0) -> Scalar:
    """The one place the discrete decay is computed: ``λ = dt/τ`` (forward Euler).

    A leaky state ``y`` relaxing to ``y_rest`` with time constant ``τ`` moves ``y ← y − λ·(y − y_rest)``
    per step. Anything that maps the discrete model to a continuous one (an exporter) must use this
    helper, so the two cannot drift apart.
    """
    return dt / tau


def fire(h: Tensor, v_threshold: Scalar, surrogate: Surrogate) -> Tensor:
    """``S = Θ(H − V_th)`` forward, ``∂S/∂H = surrogate'(H − V_th)`` backward."""
    return surrogate(h - v_threshold)


def reset(h: Tensor, spike: Tensor, v_threshold: Scalar, v_reset: Scalar | None, detach: bool) -> Tensor:
    """Hard reset ``V = H·(1 − S) + V_reset·S`` or, when ``v_reset is None``, soft ``V = H − V_th·S``.

    ``detach=True`` stops the gradient through ``S`` in this term only (``detach_reset``).
    """
    s = spike.detach() if detach else spike
    if v_reset is None:
        return h - v_threshold * s
    return h * (1.0 - s) + v_reset * s


@dataclass(frozen=True)
class StateQuantizer:
    """Quantise a state after each step: ``q(v) = clamp(round(v/step)·step, lo, hi)``.

    The rounding passes gradient straight through; the clamp passes none outside ``[lo, hi]``. Used by
    quantisation-aware training (e.g. MINT's integer membrane) and by integer chip simulation, where the
    input and state are integer tensors under ``torch.no_grad()`` and ``step`` is 1.

    Args:
        step: quantisation step (the state's LSB), > 0.
        lo: lower saturation bound, or ``None`` for none.
        hi: upper saturation bound, or ``None`` for none.
    """

    step: float = 1.0
    lo: float | None = None
    hi: float | None = None

    def __post_init__(self) -> None:
        if not self.step > 0:
            raise ValueError(f"StateQuantizer.step must be > 0, got {self.step}")
        if self.lo is not None and self.hi is not None and self.lo > self.hi:
            raise ValueError(f"StateQuantizer needs lo <= hi, got lo={self.lo}, hi={self.hi}")

    def __call__(self, v: Tensor) -> Tensor:
        y = round_ste(v / self.step) * self.step
        if self.lo is not None or self.hi is not None:
            y = torch.clamp(y, min=self.lo, max=self.hi)
        return y


def quantize(v: Tensor, quantizer: StateQuantizer | None) -> Tensor:
    """Apply the optional state quantiser (identity when ``None``)."""
    return v if quantizer is None else quantizer(v)


@dataclass(frozen=True)
class SpikeParams:
    """The fields every family's parameter record starts with (fire, reset, quantise).

    Numbers and tensors are runtime values; ``None``/bool/object fields are static choices (a fused
    kernel is compiled per combination of static choices, never per value).
    """

    v_threshold: Scalar = 1.0
    v_reset: Scalar | None = 0.0
    surrogate: Surrogate = field(default_factory=Sigmoid)
    detach_reset: bool = False
    quantizer: StateQuantizer | None = None

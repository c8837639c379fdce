"""Parametric LIF: the leak is learned (Fang et al. 2021, ICCV, arXiv 2007.05785)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from .base import SpikingNeuron
from .dynamics import SpikeParams, fire, quantize, reset
from .lif import lif_charge

__all__ = ["PLIF", "PLIFParams", "PLIFState", "plif_step"]


class PLIFState(NamedTuple):
    """PLIF state: the membrane potential ``v`` ``[B, ...]``."""
    v: Tensor


@dataclass(frozen=True)
class PLIFParams(SpikeParams):
    """PLIF parameters: ``SpikeParams`` plus the learned leak's logit ``w`` (leak ``k = sigmoid(w)``) and
    ``decay_input``."""
    w: Tensor = dataclasses.field(default_factory=lambda: torch.zeros(()))
    decay_input: bool = True


def plif_step(x: Tensor, state: PLIFState, p: PLIFParams) -> tuple[Tensor, PLIFState]:
    """One PLIF step: LIF with the per-step leak ``k = sigmoid(w)`` learned.

    charge ``H = V + k·(X − (V − V_reset))`` (``decay_input=False``: ``H = V − k·(V − V_reset) + X``);
    fire ``S = Θ(H − V_th)``; hard or soft reset as LIF. ``1/k`` plays the role of ``τ`` (in steps).
    """
    k = torch.sigmoid(p.w)
    rest = 0.0 if p.v_reset is None else p.v_reset
    h = lif_charge(x, state.v, k, rest, p.decay_input)
    s = fire(h, p.v_threshold, p.surrogate)
    return s, PLIFState(quantize(reset(h, s, p.v_threshold, p.v_reset, p.detach_reset), p.quantizer))


class PLIF(SpikingNeuron):
    """Parametric LIF over ``[T, B, ...]``: ``w`` is an ``nn.Parameter``, ``sigmoid(w) = 1/τ``.

    As SpikingJelly's ``ParametricLIFNode``: ``w`` starts at ``−log(init_tau − 1)`` so that
    ``sigmoid(w) = 1/init_tau``.

    Args:
        init_tau: initial time constant in steps, > 1; a float (one shared ``w``) or a tensor
            broadcastable to one step of input (e.g. ``[C, 1, 1]`` for one ``w`` per channel).
        decay_input: as in ``LIF``.
        dt: the step, used only to report ``tau`` in time units (``tau = dt/sigmoid(w)``).
        **kwargs: the shared ``SpikingNeuron`` keywords.
    """

    step_fn = staticmethod(plif_step)
    state_type = PLIFState

    def __init__(self, init_tau: float | Tensor = 2.0, *, decay_input: bool = True, dt: float = 1.0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        tau0 = torch.as_tensor(init_tau, dtype=torch.float32)
        if not bool((tau0 > 1).all()):
            raise ValueError(f"PLIF init_tau must be > 1 (sigmoid(w) = 1/init_tau), got {init_tau}")
        self.w = nn.Parameter(-torch.log(tau0 - 1.0))
        self.decay_input, self.dt = bool(decay_input), float(dt)

    @property
    def tau(self) -> Tensor:
        """The current time constant ``dt / sigmoid(w)``."""
        return self.dt / torch.sigmoid(self.w.detach())

    def params(self) -> PLIFParams:
        return PLIFParams(w=self.w, decay_input=self.decay_input, **self.spike_params())

    def extra_repr(self) -> str:
        return f"w shape={tuple(self.w.shape)}, decay_input={self.decay_input}, " + super().extra_repr()

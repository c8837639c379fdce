"""Integrate-and-fire: the neuron without a leak."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from torch import Tensor

from .base import SpikingNeuron
from .dynamics import SpikeParams, fire, quantize, reset

__all__ = ["IF", "IFParams", "IFState", "if_step"]


class IFState(NamedTuple):
    """IF state: the membrane potential ``v`` ``[B, ...]``."""
    v: Tensor


@dataclass(frozen=True)
class IFParams(SpikeParams):
    """``SpikeParams`` only: IF has no parameter of its own."""


def if_step(x: Tensor, state: IFState, p: IFParams) -> tuple[Tensor, IFState]:
    """One IF step on ``[B, ...]``.

    charge ``H = V + X``;  fire ``S = Θ(H − V_th)``;  reset ``V = H(1 − S) + V_reset·S`` (hard) or
    ``V = H − V_th·S`` (soft, ``v_reset=None``).
    """
    h = state.v + x
    s = fire(h, p.v_threshold, p.surrogate)
    return s, IFState(quantize(reset(h, s, p.v_threshold, p.v_reset, p.detach_reset), p.quantizer))


class IF(SpikingNeuron):
    """Integrate-and-fire neuron, multi-step over ``[T, B, ...]``; equals SpikingJelly's ``IFNode``.

    Example:
        >>> import torch
        >>> from spikeforge.neurons import IF
        >>> IF()(torch.full((4, 1), 0.5)).flatten().tolist()   # V: 0.5, 1.0 → fire, 0.5, 1.0 → fire
        [0.0, 1.0, 0.0, 1.0]
    """

    step_fn = staticmethod(if_step)
    state_type = IFState

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    def params(self) -> IFParams:
        return IFParams(**self.spike_params())

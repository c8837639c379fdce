"""Dropout whose mask is drawn once per sequence and shared by every time step.

An element-wise mask redrawn at every step would let each neuron see its input at a random subset of
steps, which a spiking neuron integrates into noise rather than into "this unit is absent". Sharing one
mask over ``T`` removes the same units for the whole sequence, as SpikingJelly's multi-step
``layer.Dropout`` does (Wu et al. 2019, "Direct training for SNNs: faster, larger, better").
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["SeqDropout", "SeqDropout2d"]


class SeqDropout(nn.Module):
    """Dropout over ``[T, B, ...]`` with one mask ``[1, B, ...]`` for all steps.

    ``y[t] = x[t] ⊙ m / (1 − p)`` with ``m ~ Bernoulli(1 − p)`` drawn once per call (identity in eval).

    Args:
        p: drop probability, ``0 <= p < 1``.
    """

    channelwise = False
    fx_leaf = True  # the mask shape depends on the input rank

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"{type(self).__name__}: p must lie in [0, 1), got {p}")
        self.p = float(p)

    def forward(self, x_seq: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x_seq
        if self.channelwise:  # one draw per (sample, channel): [1, B, C, 1, ...]
            shape = (1, *x_seq.shape[1:3], *(1,) * (x_seq.dim() - 3))
        else:
            shape = (1, *x_seq.shape[1:])
        mask = x_seq.new_empty(shape).bernoulli_(1.0 - self.p)
        return x_seq * mask * (1.0 / (1.0 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class SeqDropout2d(SeqDropout):
    """Channel dropout over ``[T, B, C, H, W]`` (``[T, B, C, ...]``): one draw per sample and channel,
    shared over time and space."""

    channelwise = True

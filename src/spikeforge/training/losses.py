"""Losses over time-first outputs: every loss is ``loss(outputs [T, B, K], targets [B], aux) -> scalar``.

Averaging over time is the loss's job, not the model's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..core import Registry

__all__ = ["mean_ce", "mse_rate", "tet", "LOSSES", "get_loss", "accuracy", "count_correct"]

Loss = Callable[[Tensor, Tensor, dict[str, Any]], Tensor]


def mean_ce(outputs: Tensor, targets: Tensor, aux: dict[str, Any] | None = None) -> Tensor:
    """Cross-entropy of the output averaged over time: ``CE(mean_t O[t], y)``."""
    return F.cross_entropy(outputs.float().mean(0), targets)


def mse_rate(outputs: Tensor, targets: Tensor, aux: dict[str, Any] | None = None) -> Tensor:
    """Mean squared error between the output firing rate and the one-hot target (SpikingJelly's examples)."""
    rate = outputs.float().mean(0)
    return F.mse_loss(rate, F.one_hot(targets, rate.shape[-1]).to(rate.dtype))


def tet(outputs: Tensor, targets: Tensor, aux: dict[str, Any] | None = None) -> Tensor:
    """Temporal efficient training (Deng et al., ICLR 2022): the cross-entropy at every step, averaged,
    ``(1/T)·Σ_t CE(O[t], y)``."""
    T, B, K = outputs.shape
    return F.cross_entropy(outputs.float().reshape(T * B, K), targets.repeat(T))


LOSSES: Registry[Loss] = Registry("loss")
"""Losses by name for ``--loss``; each sees the time-first outputs ``[T, B, K]``, the targets and an
``aux`` dict."""
LOSSES.register("ce", mean_ce, summary="cross-entropy of the output averaged over time (the default)")
LOSSES.register("mse_rate", mse_rate, summary="mean squared error between output firing rate and one-hot target")
LOSSES.register("tet", tet, summary="cross-entropy at every step, averaged (TET, Deng et al. 2022)")


def get_loss(name: str | Loss) -> Loss:
    """A registered loss by name (``UnknownNameError`` lists them), or the callable itself."""
    return name if callable(name) else LOSSES[name]


def count_correct(outputs: Tensor, targets: Tensor) -> int:
    """How many samples the time-averaged output ``[T, B, K]`` classifies right (top-1)."""
    with torch.no_grad():
        return int((outputs.float().mean(0).argmax(-1) == targets).sum())


def accuracy(outputs: Tensor, targets: Tensor) -> float:
    """Top-1 accuracy of the time-averaged output."""
    return count_correct(outputs, targets) / max(len(targets), 1)

"""Losses over time-first outputs: every loss is ``loss(outputs [T, B, K], targets [B], aux) -> scalar``.

Averaging over time is the loss's job, not the model's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["mean_ce", "mse_rate", "tet", "LOSSES", "get_loss"]

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


LOSSES: dict[str, Loss] = {"ce": mean_ce, "mse_rate": mse_rate, "tet": tet}


def get_loss(name: str | Loss) -> Loss:
    if callable(name):
        return name
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    return LOSSES[name]


def accuracy(outputs: Tensor, targets: Tensor) -> float:
    """Top-1 accuracy of the time-averaged output."""
    with torch.no_grad():
        return float((outputs.float().mean(0).argmax(-1) == targets).float().mean())

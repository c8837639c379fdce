"""Losses over time-first outputs: every loss is ``loss(outputs [T, B, K], targets [B], aux) -> scalar``.

Averaging over time is the loss's job, not the model's. A loss that needs more than the outputs (the
features, trainable parts of its own: ``contrastive.py``) also has ``check(model)`` and ``prepare(model)``,
as a ``TrainStep`` does; the engine calls them through ``prepare_loss`` before it collects the parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..core import Registry, UserError

__all__ = ["mean_ce", "mse_rate", "tet", "LOSSES", "get_loss", "accuracy", "count_correct", "prepare_loss",
           "LossError"]

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


class LossError(UserError, ValueError):
    """A loss cannot train a model; the message names the loss, the model and what it lacks."""


def prepare_loss(loss: Loss, model: nn.Module) -> nn.Module:
    """The model ``loss`` trains: ``model`` itself, changed in place by ``loss.prepare`` when the loss has
    one (a plain function leaves it as it is). A loss whose ``check(model)`` gives a reason raises
    ``LossError`` with it."""
    prepare = getattr(loss, "prepare", None)
    if prepare is None:
        return model
    check = getattr(loss, "check", None)
    reason = check(model) if callable(check) else None
    if reason is not None:
        name = getattr(loss, "name", getattr(loss, "__name__", type(loss).__name__))
        raise LossError(f"loss {name!r} cannot train {type(model).__name__}: {reason}")
    return prepare(model)  # type: ignore[no-any-return]


def count_correct(outputs: Tensor, targets: Tensor) -> int:
    """How many samples the time-averaged output ``[T, B, K]`` classifies right (top-1)."""
    with torch.no_grad():
        return int((outputs.float().mean(0).argmax(-1) == targets).sum())


def accuracy(outputs: Tensor, targets: Tensor) -> float:
    """Top-1 accuracy of the time-averaged output."""
    return count_correct(outputs, targets) / max(len(targets), 1)

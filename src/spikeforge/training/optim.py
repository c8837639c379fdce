"""Optimisers and the learning-rate schedule, as factories the engine calls with the parameters.

The schedule is a pure function of the step (cosine with linear warm-up), so resuming needs nothing
but the step number.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["optimizer_factory", "cosine_warmup", "constant"]

OptimizerFactory = Callable[[Iterable[Any]], torch.optim.Optimizer]


def optimizer_factory(name: str, lr: float, momentum: float = 0.9, weight_decay: float = 0.0) -> OptimizerFactory:
    """``"sgd"`` (momentum, Nesterov off) or ``"adamw"``; returns ``params -> optimizer``."""
    if name == "sgd":
        return lambda params: torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return lambda params: torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose 'sgd' or 'adamw'")


def cosine_warmup(base_lr: float, total_steps: int, warmup_steps: int = 0) -> Callable[[int], float]:
    """Linear warm-up to ``base_lr`` over ``warmup_steps``, then cosine decay to 0 at ``total_steps``."""
    def lr(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return base_lr * (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        p = min(1.0, (step - warmup_steps) / span)
        return base_lr * 0.5 * (1.0 + math.cos(math.pi * p))
    return lr


def constant(base_lr: float) -> Callable[[int], float]:
    """The schedule that keeps ``base_lr`` at every step."""
    return lambda step: base_lr

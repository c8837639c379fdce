"""Running a module in evaluation mode for a while, and putting its mode back."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["eval_mode"]


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model.eval()`` inside the ``with`` block; on leaving it — also through an exception — the model is
    back in the mode it had (``train()`` or ``eval()``)."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)

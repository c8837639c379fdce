"""Straight-through rounding and the integer floor shift: value ops a step function may call.

Each takes part in torch's ``__torch_function__`` protocol (``torch.overrides``), so a tensor-like
argument (the kernel generator's traced values) receives the call and records it as one op; on tensors
they compute. Quantisation-aware training (MINT), integer chip simulation and the state quantiser use them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.overrides import handle_torch_function, has_torch_function_unary

__all__ = ["round_ste", "floor_ste", "shift_right"]


class _RoundSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # type: ignore[override]
        return torch.round(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        return grad


class _FloorSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # type: ignore[override]
        return torch.floor(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        return grad


def round_ste(x: Tensor) -> Tensor:
    """``round(x)`` forward (half to even, as ``torch.round``), identity gradient backward; integers pass."""
    if has_torch_function_unary(x):
        return handle_torch_function(round_ste, (x,), x)  # type: ignore[no-any-return]
    if not x.is_floating_point():
        return x
    out: Tensor = _RoundSTE.apply(x)  # type: ignore[no-untyped-call]
    return out


def floor_ste(x: Tensor) -> Tensor:
    """``floor(x)`` forward, identity gradient backward; integers pass."""
    if has_torch_function_unary(x):
        return handle_torch_function(floor_ste, (x,), x)  # type: ignore[no-any-return]
    if not x.is_floating_point():
        return x
    out: Tensor = _FloorSTE.apply(x)  # type: ignore[no-untyped-call]
    return out


def shift_right(x: Tensor, k: int) -> Tensor:
    """``⌊x / 2^k⌋``: an arithmetic right shift of integer tensors, ``floor_ste(x · 2^-k)`` of floating ones.

    The two agree exactly wherever the floating value is an integer (scaling by a power of two is exact),
    so a fake-quantised float model and its integer twin leak alike. Rounds towards −∞ (not to even).

    Args:
        x: any tensor.
        k: shift, an int >= 0 (a static choice: it shapes a compiled kernel, it is not a runtime value).
    """
    if has_torch_function_unary(x):
        return handle_torch_function(shift_right, (x,), x, k)  # type: ignore[no-any-return]
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"shift_right: k must be an int >= 0, got {k!r}")
    if x.is_floating_point():
        return floor_ste(x * (2.0 ** -k))
    return torch.bitwise_right_shift(x, k)

"""Straight-through rounding and the integer floor shift: value ops a step function may call.

Each takes part in torch's ``__torch_function__`` protocol (``torch.overrides``), so a tensor-like
argument (the kernel generator's traced values) receives the call and records it as one op; on tensors
they compute. Quantisation-aware training (MINT), integer chip simulation and the state quantiser use them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.overrides import handle_torch_function, has_torch_function_unary

__all__ = ["round_ste", "floor_ste", "shift_right"]


def _straight_through(name: str, op: Callable[[Tensor], Tensor], doc: str) -> Callable[[Tensor], Tensor]:
    """``op`` forward, the identity gradient backward; integers pass unchanged; a tensor-like argument
    receives the call through ``__torch_function__`` (under the public ``name``)."""

    class _STE(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Tensor) -> Tensor:  # type: ignore[override]
            return op(x)

        @staticmethod
        def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
            return grad

    def ste(x: Tensor) -> Tensor:
        if has_torch_function_unary(x):
            return handle_torch_function(ste, (x,), x)  # type: ignore[no-any-return]
        if not x.is_floating_point():
            return x
        out: Tensor = _STE.apply(x)  # type: ignore[no-untyped-call]
        return out

    ste.__name__ = ste.__qualname__ = name
    ste.__doc__ = doc
    return ste


round_ste = _straight_through("round_ste", torch.round,
                              "``round(x)`` forward (half to even, as ``torch.round``), identity gradient backward; "
                              "integers pass.")
"""``round(x)`` forward (half to even, as ``torch.round``), identity gradient backward; integers pass."""
floor_ste = _straight_through("floor_ste", torch.floor,
                              "``floor(x)`` forward, identity gradient backward; integers pass.")
"""``floor(x)`` forward, identity gradient backward; integers pass."""


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

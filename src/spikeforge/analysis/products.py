"""The multiplications inside aten ops: dense counts and nonzero-product counts of synaptic ops.

A synaptic op is a sum of products ``y = Σ a·b``: a convolution, a matrix product (``mm``, ``addmm``,
``bmm``, ``baddbmm``, ``mv``, ``addmv``, ``dot``; ``nn.Linear`` and ``matmul`` reach aten as these) or a
fused attention kernel (two products, ``Q·Kᵀ`` and ``P·V``). For each, ``products`` gives the two operands,
the dense number of multiplications, the bias additions and a function counting the products whose two
operands are both nonzero (NeuroBench's effective count: a binarised copy of the op, summed).

Dense counts (per call, ``N`` = output elements):

* convolution: ``N · C_in/groups · k₁·k₂…`` (transposed: input elements · ``C_out/groups · k…``); bias ``N``;
* ``[n, k] @ [k, m]``: ``n·k·m`` (batched: ``× b``); bias ``n·m`` when ``β ≠ 0``;
* attention ``softmax(Q Kᵀ) V`` with ``Q [.., L, E]``, ``K [.., S, E]``, ``V [.., S, E_v]``: ``L·S·E`` and ``L·S·E_v``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["Product", "products", "SYNAPTIC_OPS", "TRANSPARENT_OPS", "SELECT_OPS", "NORM_OPS", "PER_SAMPLE_NORM_OPS",
           "MUL_OPS", "AVERAGE_OPS"]

aten = torch.ops.aten


@dataclass
class Product:
    """One sum of products inside an op.

    Attributes:
        a, b: the two multiplied tensors (``None``: an internal real-valued operand, the softmax output).
        dense: multiplications executed.
        bias: bias additions (0 without bias).
        effective: counts products with both operands nonzero (``None`` where it cannot: the meta device).
    """

    a: Tensor | None
    b: Tensor | None
    dense: int
    bias: int
    effective: Callable[[], float] | None


def _nz(t: Tensor) -> Tensor:
    return (t != 0).to(torch.int64)


def _numel(shape: Sequence[int]) -> int:
    return int(math.prod(shape))


def _meta(*ts: Tensor | None) -> bool:
    return any(t is not None and t.is_meta for t in ts)


def _conv(args: Sequence[Any], out: Tensor) -> list[Product]:
    x, w, bias, stride, padding, dilation, transposed, output_padding, groups = args[:9]
    k = _numel(w.shape[2:])
    dense = x.numel() * w.shape[1] * k if transposed else out.numel() * w.shape[1] * k

    def effective() -> float:
        xb, wb = (x != 0).double(), (w != 0).double()
        y = aten.convolution.default(xb, wb, None, stride, padding, dilation, transposed, output_padding, groups)
        return float(y.sum())

    return [Product(x, w, dense, out.numel() if bias is not None else 0, None if _meta(x, w) else effective)]


def _mm(a: Tensor, b: Tensor, out: Tensor, has_bias: bool) -> Product:
    """``[n, k] @ [k, m]`` (``mm``) or ``[B, n, k] @ [B, k, m]`` (``bmm``)."""
    dense = _numel(a.shape) * b.shape[-1]

    def effective() -> float:
        return float((_nz(a).sum(-2) * _nz(b).sum(-1)).sum())

    return Product(a, b, dense, out.numel() if has_bias else 0, None if _meta(a, b) else effective)


def _beta(kwargs: dict[str, Any], args: Sequence[Any]) -> bool:
    beta = kwargs.get("beta", args[3] if len(args) > 3 else 1)
    return bool(beta != 0)


def _mv(a: Tensor, v: Tensor, out: Tensor, has_bias: bool) -> Product:
    def effective() -> float:
        return float((_nz(a).sum(0) * _nz(v)).sum())

    return Product(a, v, a.numel(), out.numel() if has_bias else 0, None if _meta(a, v) else effective)


def _dot(a: Tensor, b: Tensor) -> Product:
    def effective() -> float:
        return float((_nz(a) * _nz(b)).sum())

    return Product(a, b, a.numel(), 0, None if _meta(a, b) else effective)


def _attention(q: Tensor, k: Tensor, v: Tensor) -> list[Product]:
    """Fused attention: ``Q·Kᵀ`` then ``P·V`` with ``P = softmax(·)`` real-valued and dense."""
    L, S = q.shape[-2], k.shape[-2]
    batch = _numel(q.shape[:-2])

    def eff_qk() -> float:
        return float((_nz(q).sum(-2) * _nz(k).sum(-2)).sum())

    def eff_pv() -> float:
        return float(_nz(v).sum() * L * batch / max(_numel(v.shape[:-2]), 1))

    meta = _meta(q, k, v)
    return [Product(q, k, batch * L * S * q.shape[-1], 0, None if meta else eff_qk),
            Product(None, v, batch * L * S * v.shape[-1], 0, None if meta else eff_pv)]


def products(func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> list[Product]:
    """The products computed by synaptic op ``func`` (an ``OpOverload`` in ``SYNAPTIC_OPS``)."""
    p = func.overloadpacket
    if p is aten.convolution:
        return _conv(args, out)
    if p is aten.mm:
        return [_mm(args[0], args[1], out, False)]
    if p is aten.bmm:
        return [_mm(args[0], args[1], out, False)]
    if p in (aten.addmm, aten.baddbmm):
        return [_mm(args[1], args[2], out, _beta(kwargs, args))]
    if p is aten.mv:
        return [_mv(args[0], args[1], out, False)]
    if p is aten.addmv:
        return [_mv(args[1], args[2], out, _beta(kwargs, args))]
    if p is aten.dot:
        return [_dot(args[0], args[1])]
    return _attention(args[0], args[1], args[2])


SYNAPTIC_OPS: frozenset[Any] = frozenset(
    getattr(aten, n) for n in ("convolution", "mm", "addmm", "bmm", "baddbmm", "mv", "addmv", "dot",
                               "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
                               "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention")
    if hasattr(aten, n))


def _packets(*names: str) -> frozenset[Any]:
    return frozenset(getattr(aten, n) for n in names if hasattr(aten, n))


# same values, same Prov (and so the same cached classification)
TRANSPARENT_OPS = _packets("view", "_unsafe_view", "reshape", "_reshape_alias", "expand", "permute", "transpose", "t",
                           "clone", "contiguous", "detach", "alias", "unsqueeze", "squeeze", "as_strided", "lift_fresh",
                           "_to_copy", "flatten", "unflatten", "numpy_T")
# a subset (or max) of the values: the kind is kept, the statistics are not
SELECT_OPS = _packets("select", "slice", "index_select", "max_pool1d", "max_pool2d_with_indices",
                      "max_pool3d_with_indices", "adaptive_max_pool2d", "adaptive_max_pool3d", "cat", "stack",
                      "split", "split_with_sizes", "unbind", "narrow", "constant_pad_nd", "repeat", "gather", "index",
                      "roll", "flip")
NORM_OPS = _packets("native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
                    "native_layer_norm", "native_group_norm")
PER_SAMPLE_NORM_OPS = _packets("native_layer_norm", "native_group_norm")
MUL_OPS = _packets("mul", "div", "addcmul", "addcdiv")
AVERAGE_OPS = _packets("mean", "avg_pool1d", "avg_pool2d", "avg_pool3d", "_adaptive_avg_pool2d", "_adaptive_avg_pool3d")

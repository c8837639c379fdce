"""2×2 max pooling on the CPU as two LLVM kernels: the pooling of the zoo's CNNs.

torch's CPU ``max_pool2d`` in training writes 8-byte indices and its backward zero-fills the whole input
gradient before scattering into it; on a spiking CNN's step the two pools cost about as much as the
convolution after them. Here, per ``[H, W]`` plane:

* forward: each 2×2 window's maximum and a one-byte index of the first maximum in row-major order (a NaN
  counts as the maximum, as in torch), so backward keeps 1 byte per output element instead of 8;
* backward: every input position is written exactly once — the window's gradient at its index, 0 elsewhere
  (a last odd row or column belongs to no window and gets 0).

``max_pool_2x2(x)`` equals ``F.max_pool2d(x, 2)`` (``kernel_size = stride = 2``, no padding, floor mode) in
values and gradients, for a float32 ``[N, C, H, W]`` in either layout (NCHW: planes of ``[H, W]``;
channels-last: samples of ``[H, W, C]`` with the channel loop innermost); ``why_not(module, x)`` says when torch's
pooling runs instead. ``TimeFold`` runs a plain ``nn.MaxPool2d(2)`` this way. Planes are split over torch's
threads like the neuron kernels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from llvmlite import ir
from torch import Tensor, fx, nn

from ..core.hooks import hooks_why_not
from .llvm_backend import _run
from .llvm_kernels import HandBuilt, _abi_function, _c, _lanes_loop, _loop, _vload, _vstore, vector_width
from .pool import POOL, handing_off

__all__ = ["max_pool_2x2", "why_not"]

I64, I8, F32 = ir.IntType(64), ir.IntType(8), ir.FloatType()


def _args(b: ir.IRBuilder, fn: ir.Function) -> tuple[list[ir.Value], list[ir.Value]]:
    ptrs = [b.load(b.gep(fn.args[0], [ir.Constant(I64, k)])) for k in range(3)]
    ints = [b.load(b.gep(fn.args[1], [ir.Constant(I64, k)])) for k in range(8)]
    return ptrs, ints


def _splat(ty: ir.Type, v: float | int, w: int) -> ir.Constant:
    c = ir.Constant(ty, v)
    return c if w == 1 else ir.Constant(ir.VectorType(ty, w), [c] * w)


def _channels(b: ir.IRBuilder, C: ir.Value, nhwc: bool, emit: Callable[[ir.Value, int], None]) -> None:
    """The innermost channel loop of the channels-last kernels, ``emit(ch, w)`` on ``w`` channels at a time:
    the host's float32 vector width, then one at a time for the rest (LLVM's own vectoriser unrolls by four
    vectors and leaves a loop of 16 or 32 channels scalar). The NCHW kernels have none (channel 0 of 1)."""
    if not nhwc:
        emit(_c(0), 1)
        return
    _lanes_loop(b, C, vector_width(32), lambda ch, mode: emit(ch, vector_width(32) if mode else 1))


def _build(mod: ir.Module, nhwc: bool) -> None:
    """The forward and backward kernels of one layout. A plane is ``[H, W, C]``: a sample in channels-last
    order, or (NCHW) one channel with ``C = 1`` as a constant, so LLVM vectorises the window loop there.
    ints: [H, W, block lo, block hi, planes per block, planes, C]."""
    for kind in ("fwd", "bwd"):
        _build_one(mod, nhwc, kind)


def _build_one(mod: ir.Module, nhwc: bool, kind: str) -> None:
    b = _abi_function(mod, f"sf_maxpool2_{'nhwc_' if nhwc else ''}{kind}")
    (p0, p1, p2), (H, W, blo, bhi, per, P, Cin, _) = _args(b, b.function)
    C = Cin if nhwc else _c(1)
    Ho, Wo, WC = b.sdiv(H, _c(2)), b.sdiv(W, _c(2)), b.mul(W, C)
    lo = b.mul(blo, per)
    hi = b.select(b.icmp_signed("<", b.mul(bhi, per), P), b.mul(bhi, per), P)
    # forward: x [P, H, W, C], y and idx [P, H/2, W/2, C]; backward: g and idx, gx [P, H, W, C]
    big = b.bitcast(p0 if kind == "fwd" else p2, F32.as_pointer())
    small = b.bitcast(p1 if kind == "fwd" else p0, F32.as_pointer())
    idx = p2 if kind == "fwd" else p1
    with _loop(b, lo, hi, 1, "p") as p:
        with _loop(b, _c(0), Ho, 1, "i") as i:
            r0 = b.mul(b.add(b.mul(p, H), b.mul(i, _c(2))), WC)
            r1 = b.add(r0, WC)
            orow = b.mul(b.add(b.mul(p, Ho), i), b.mul(Wo, C))
            with _loop(b, _c(0), Wo, 1, "j") as j:
                c0 = b.mul(b.mul(j, _c(2)), C)
                c1 = b.add(c0, C)

                def window(ch: ir.Value, w: int, orow: ir.Value = orow, j: ir.Value = j, c0: ir.Value = c0,
                           c1: ir.Value = c1, r0: ir.Value = r0, r1: ir.Value = r1) -> None:
                    o = b.add(b.add(orow, b.mul(j, C)), ch)
                    where = [b.add(b.add(r, cc), ch) for r in (r0, r1) for cc in (c0, c1)]
                    if kind == "fwd":
                        vals = [_vload(b, big, at, w) for at in where]
                        m, k = vals[0], _splat(I8, 0, w)
                        for q in (1, 2, 3):    # the first maximum wins; a NaN takes over (torch's rule)
                            v = vals[q]
                            take = b.or_(b.fcmp_ordered(">", v, m), b.fcmp_unordered("uno", v, v))
                            m, k = b.select(take, v, m), b.select(take, _splat(I8, q, w), k)
                        _vstore(b, m, small, o, w)
                        _vstore(b, k, idx, o, w)
                    else:
                        gv, k = _vload(b, small, o, w), _vload(b, idx, o, w)
                        for q, at in enumerate(where):
                            hit = b.icmp_signed("==", k, _splat(I8, q, w))
                            _vstore(b, b.select(hit, gv, _splat(F32, 0.0, w)), big, at, w)

                _channels(b, C, nhwc, window)
            if kind == "bwd":
                with b.if_then(b.icmp_signed("!=", b.srem(W, _c(2)), _c(0))):      # the odd last column
                    for r in (r0, r1):
                        last = b.add(r, b.mul(b.sub(W, _c(1)), C))
                        with _loop(b, _c(0), C, 1, "zc") as ch:
                            b.store(ir.Constant(F32, 0.0), b.gep(big, [b.add(last, ch)], inbounds=True))
        if kind == "bwd":
            with b.if_then(b.icmp_signed("!=", b.srem(H, _c(2)), _c(0))):          # the odd last row
                last = b.mul(b.add(b.mul(p, H), b.sub(H, _c(1))), WC)
                with _loop(b, _c(0), WC, 1, "z") as z:
                    b.store(ir.Constant(F32, 0.0), b.gep(big, [b.add(last, z)], inbounds=True))
    b.ret_void()


def _build_all(mod: ir.Module) -> None:
    _build(mod, nhwc=False)
    _build(mod, nhwc=True)


_KERNELS = HandBuilt("maxpool2", ("fwd", "bwd", "nhwc_fwd", "nhwc_bwd"), _build_all)


def _launch(name: str, ptrs: list[int], shape: torch.Size, nhwc: bool) -> None:
    N, C, H, W = shape
    P = N if nhwc else N * C                   # planes: samples [H, W, C], or channels [H, W]
    nt = max(1, torch.get_num_threads())
    per = max(1, -(-P // (4 * nt)))             # four blocks per thread
    fn, addr = _KERNELS.get()[("nhwc_" if nhwc else "") + name]
    _run(fn, -(-P // per), [H, W, 0, 0, per, P, C if nhwc else 1, 0], ptrs, [], addr=addr)


def _nhwc(x: Tensor) -> bool:
    return not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _empty(shape: tuple[int, ...], dtype: torch.dtype, nhwc: bool) -> Tensor:
    """Pooled (already touched) memory in ``[N, C, H, W]`` or channels-last order."""
    if not nhwc:
        return POOL.take(shape, dtype)
    N, C, H, W = shape
    return POOL.take((N, H, W, C), dtype).permute(0, 3, 1, 2)


class _MaxPool2x2(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # type: ignore[override]
        N, C, H, W = x.shape
        nhwc = _nhwc(x)
        out = (N, C, H // 2, W // 2)
        y = _empty(out, x.dtype, nhwc)
        fmt = torch.channels_last if nhwc else torch.contiguous_format
        idx = torch.empty(out, dtype=torch.uint8, memory_format=fmt)
        if y.numel():
            _launch("fwd", [x.data_ptr(), y.data_ptr(), idx.data_ptr()], x.shape, nhwc)
        ctx.save_for_backward(idx)
        ctx.shape, ctx.nhwc, ctx.give = x.shape, nhwc, handing_off()
        return y

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> Tensor:  # type: ignore[override]
        (idx,) = ctx.saved_tensors
        fmt = torch.channels_last if ctx.nhwc else torch.contiguous_format
        g = g.to(torch.float32).contiguous(memory_format=fmt)
        gx = _empty(tuple(ctx.shape), torch.float32, ctx.nhwc)
        if idx.numel():
            _launch("bwd", [g.data_ptr(), idx.data_ptr(), gx.data_ptr()], ctx.shape, ctx.nhwc)
        else:
            gx.zero_()
        if ctx.give and not torch.is_grad_enabled():      # inside pool.handoff(); not a double backward
            POOL.give(gx)
        return gx


def why_not(module: nn.Module, x: Tensor) -> str | None:
    """``None`` when ``module`` on ``x`` runs as ``max_pool_2x2``; else why torch's ``max_pool2d`` runs."""
    if type(module) is not nn.MaxPool2d:
        return f"{type(module).__name__} is not a plain nn.MaxPool2d"
    m: Any = module
    pair = nn.modules.utils._pair
    if (pair(m.kernel_size) != (2, 2) or pair(m.stride or m.kernel_size) != (2, 2) or pair(m.padding) != (0, 0)
            or pair(m.dilation) != (1, 1) or m.ceil_mode or m.return_indices):
        return f"only kernel_size=2, stride=2 without padding, dilation or ceil_mode runs fused (got {m.extra_repr()})"
    hooked = hooks_why_not(m)
    if hooked is not None:
        return hooked
    if isinstance(x, fx.Proxy):
        return "traced with torch.fx"
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return f"runs on float32 CPU tensors, got {x.dtype} on {x.device}"
    if x.dim() != 4 or not (x.is_contiguous() or _nhwc(x)):
        return (f"expects a contiguous or channels-last [N, C, H, W] input, got shape {tuple(x.shape)} with strides "
                f"{x.stride()}")
    if x.shape[2] < 2 or x.shape[3] < 2:
        return f"an input of {x.shape[2]}x{x.shape[3]} is smaller than the window (torch's pooling raises on it)"
    return None


def max_pool_2x2(x: Tensor) -> Tensor:
    """``F.max_pool2d(x, 2)`` for a float32 ``x [N, C, H, W]`` on the CPU (contiguous or channels-last, and the
    output in that layout), with the same gradient."""
    if (x.dim() != 4 or not (x.is_contiguous() or _nhwc(x)) or x.dtype != torch.float32 or x.device.type != "cpu"
            or x.shape[2] < 2 or x.shape[3] < 2):
        raise ValueError(f"max_pool_2x2 expects a contiguous or channels-last float32 [N, C, H >= 2, W >= 2] CPU "
                         f"tensor, got {x.dtype} of shape {tuple(x.shape)} on {x.device}")
    return _MaxPool2x2.apply(x)

"""Per-channel batch statistics on the CPU in one pass: ``Σx`` and ``Σx²`` of each channel, in double.

A batch norm whose normalisation runs inside the next neuron's kernel (``layers.fused_bn``) still needs the
batch mean and variance. torch has no CPU op that returns them alone: ``var_mean`` over ``(0, 2, 3)`` reads
the tensor several times (13 ms on a ``[320, 16, 34, 34]`` frame batch, against 2 ms for a whole channels-last
``native_batch_norm``), and ``native_batch_norm`` writes the normalised output it would then throw away.

A float32 tensor is read as ``[P, C, S]``: ``S = 1`` for channels-last (rows of ``C`` channels, the channel loop
innermost) and ``S = H·W`` (or ``L``) for NCHW (planes). Each block of rows writes its own sums, and the blocks
are summed in order afterwards, so the result is the same for any thread count. The variance is
``Σx²/M − mean²`` in double: exact enough for float32 data unless ``|mean|/std`` exceeds about 10⁶.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from llvmlite import ir
from torch import Tensor

from .llvm_backend import _run
from .llvm_kernels import HandBuilt, _abi_function, _c, _lanes_loop, _loop, _vload, _vstore, vector_width
from .llvm_ops import Lanes, _intrinsic

__all__ = ["channel_sums", "channel_mean_var", "mean_var", "channel_affine_add_", "why_not"]

I64, F32, F64 = ir.IntType(64), ir.FloatType(), ir.DoubleType()
_BLOCK_ELEMS = 1 << 16      # elements per block of rows: the unit of work, independent of the thread count


def _reassoc(inst: Any) -> Any:
    inst.flags.append("reassoc")      # lets LLVM vectorise a reduction over one plane
    return inst


def _add_to(b: ir.IRBuilder, out: ir.Value, at: ir.Value, acc: ir.Value, w: int) -> None:
    """``out[at : at + w] += *acc``."""
    _vstore(b, b.fadd(_vload(b, out, at, w), b.load(acc)), out, at, w)


def _build(mod: ir.Module, planes: bool) -> None:
    """ints: ``[C, S, block lo, block hi, rows per block, P]``; ptrs: ``x`` (float32 ``[P, C, S]``), ``out``
    (float64 ``[blocks, 2, C]``: the block's ``Σx`` then its ``Σx²``)."""
    b = _abi_function(mod, "sf_chstats_" + ("planes" if planes else "rows"))
    fn = b.function
    W = vector_width(32)
    acc1, acc2 = b.alloca(F64), b.alloca(F64)
    widths = _widths(W)
    accs = {w: (b.alloca(ir.VectorType(F64, w)), b.alloca(ir.VectorType(F64, w))) for w in widths if w > 1}
    accs[1] = (acc1, acc2)
    x = b.bitcast(b.load(b.gep(fn.args[0], [_c(0)])), F32.as_pointer())
    out = b.bitcast(b.load(b.gep(fn.args[0], [_c(1)])), F64.as_pointer())
    C, S, blo, bhi, per, P = (b.load(b.gep(fn.args[1], [_c(k)])) for k in range(6))
    zero = ir.Constant(F64, 0.0)
    with _loop(b, blo, bhi, 1, "blk") as blk:
        o1 = b.mul(b.mul(blk, _c(2)), C)
        o2 = b.add(o1, C)
        with _loop(b, _c(0), C, 1, "z") as c:
            b.store(zero, b.gep(out, [b.add(o1, c)], inbounds=True))
            b.store(zero, b.gep(out, [b.add(o2, c)], inbounds=True))
        lo = b.mul(blk, per)
        hi = b.select(b.icmp_signed("<", b.add(lo, per), P), b.add(lo, per), P)
        if planes:
            with _loop(b, lo, hi, 1, "p") as p:
                with _loop(b, _c(0), C, 1, "c") as c:
                    b.store(zero, acc1)
                    b.store(zero, acc2)
                    base = b.mul(b.add(b.mul(p, C), c), S)
                    with _loop(b, _c(0), S, 1, "s") as s:
                        v = b.fpext(b.load(b.gep(x, [b.add(base, s)], inbounds=True)), F64)
                        b.store(_reassoc(b.fadd(b.load(acc1), v)), acc1)
                        b.store(_reassoc(b.fadd(b.load(acc2), _reassoc(b.fmul(v, v)))), acc2)
                    _add_to(b, out, b.add(o1, c), acc1, 1)
                    _add_to(b, out, b.add(o2, c), acc2, 1)
        else:
            # rows of C channels: a vector of channels at a time (W lanes, then W/2, ... 4, then one at a time),
            # summed down the rows in registers, in row order as a per-row update of ``out`` would (the same bits,
            # without a chain of loads and stores through memory)
            def chunk(c: ir.Value, w: int, lo: ir.Value = lo, hi: ir.Value = hi, o1: ir.Value = o1,
                      o2: ir.Value = o2) -> None:
                a1, a2 = accs[w]
                b.store(Lanes(64, w).c(0.0), a1)
                b.store(Lanes(64, w).c(0.0), a2)
                with _loop(b, lo, hi, 1, "p") as p:
                    v = b.fpext(_vload(b, x, b.add(b.mul(p, C), c), w), a1.type.pointee)
                    b.store(b.fadd(b.load(a1), v), a1)
                    b.store(b.fadd(b.load(a2), b.fmul(v, v)), a2)
                _add_to(b, out, b.add(o1, c), a1, w)
                _add_to(b, out, b.add(o2, c), a2, w)

            _cascade(b, C, widths, chunk)
    b.ret_void()


def _widths(W: int) -> list[int]:
    """``W``, ``W/2``, ... down to 4 lanes, then 1."""
    out = []
    while W >= 4:
        out.append(W)
        W //= 2
    return [*out, 1]


def _cascade(b: ir.IRBuilder, n: ir.Value, widths: list[int], emit: Callable[[ir.Value, int], None]) -> None:
    """``emit(i, w)`` over ``0..n``: as many chunks of ``widths[0]`` as fit, then of each narrower width in turn
    (the last width must be 1)."""
    start: ir.Value = _c(0)
    for w in widths:
        stop = n if w == 1 else b.add(start, b.mul(b.sdiv(b.sub(n, start), _c(w)), _c(w)))
        with _loop(b, start, stop, w, f"w{w}") as i:
            emit(i, w)
        start = stop


def _build_affine(mod: ir.Module, planes: bool) -> None:
    """``g += k2[c]·u + k1[c]`` in place (``g + k2·u`` as one fused multiply-add, then ``+ k1``: the bits of torch's
    vector ``addcmul_`` then ``add_`` on the CPU; see ``channel_affine_add_``).
    ints: ``[C, S, block lo, block hi, rows per block, P]``; ptrs: ``g``, ``u`` (float32 ``[P, C, S]``), ``k2``,
    ``k1`` (float32 ``[C]``)."""
    b = _abi_function(mod, "sf_chstats_affine_" + ("planes" if planes else "rows"))
    fn = b.function
    g, u, k2, k1 = (b.bitcast(b.load(b.gep(fn.args[0], [_c(k)])), F32.as_pointer()) for k in range(4))
    C, S, blo, bhi, per, P = (b.load(b.gep(fn.args[1], [_c(k)])) for k in range(6))
    W = vector_width(32)

    def update(at: ir.Value, a2: ir.Value, a1: ir.Value, w: int) -> None:
        fused = _intrinsic(b, "fma", Lanes(32, w), _vload(b, u, at, w), a2, _vload(b, g, at, w))
        _vstore(b, b.fadd(fused, a1), g, at, w)

    lo = b.mul(blo, per)
    hi = b.select(b.icmp_signed("<", b.mul(bhi, per), P), b.mul(bhi, per), P)
    with _loop(b, lo, hi, 1, "p") as p:
        if planes:      # a plane of S values per channel: the channel's two numbers splat over it
            with _loop(b, _c(0), C, 1, "c") as c:
                a2, a1 = b.load(b.gep(k2, [c], inbounds=True)), b.load(b.gep(k1, [c], inbounds=True))
                base = b.mul(b.add(b.mul(p, C), c), S)

                def plane(s: ir.Value, mode: int, base: ir.Value = base, a2: ir.Value = a2,
                          a1: ir.Value = a1) -> None:
                    L = Lanes(32, W if mode else 1)
                    update(b.add(base, s), L.splat(b, a2), L.splat(b, a1), L.width)

                _lanes_loop(b, S, W, plane)
        else:           # a row of C channels: a vector of channels at a time

            def row(c: ir.Value, mode: int, p: ir.Value = p) -> None:
                w = W if mode else 1
                update(b.add(b.mul(p, C), c), _vload(b, k2, c, w), _vload(b, k1, c, w), w)

            _lanes_loop(b, C, W, row)
    b.ret_void()


def _build_all(mod: ir.Module) -> None:
    _build(mod, planes=False)
    _build(mod, planes=True)
    _build_affine(mod, planes=False)
    _build_affine(mod, planes=True)


_KERNELS = HandBuilt("chstats", ("rows", "planes", "affine_rows", "affine_planes"), _build_all)


def _as_pcs(x: Tensor, dim: int) -> tuple[int, int, int] | None:
    """``(P, C, S)`` when ``x``'s memory is ``[P, C, S]`` with ``C = x.shape[dim]`` (dense, in any dim order whose
    dims after the channel in memory are contiguous planes), else ``None``."""
    C, strides = x.shape[dim], x.stride()
    order = sorted(range(x.dim()), key=lambda d: (-strides[d], d))
    k = order.index(dim)
    inner = order[k + 1:]
    S = 1
    for d in inner:
        S *= x.shape[d]
    expected = 1
    for d in reversed(order):          # dense: each dim's stride is the product of the sizes inside it
        if x.shape[d] != 1 and strides[d] != expected:
            return None
        expected *= x.shape[d]
    return x.numel() // max(1, C * S), C, S


def why_not(x: Tensor, dim: int = 1) -> str | None:
    """``None`` when ``channel_sums(x, dim)`` can read ``x``; else why not."""
    if x.dtype != torch.float32 or x.device.type != "cpu":
        return f"reads float32 CPU tensors, got {x.dtype} on {x.device}"
    if _as_pcs(x, dim) is None:
        return f"the channel dim {dim} of strides {x.stride()} does not enclose dense planes"
    return None


def channel_sums(x: Tensor, dim: int = 1) -> tuple[Tensor, Tensor]:
    """``(Σx, Σx²)`` over every dim but ``dim``, float64 ``[C]`` each, for a dense float32 CPU tensor (NCHW,
    channels-last, or time-first ``[T, B, C, ...]`` in either order)."""
    pcs = _as_pcs(x, dim) if why_not(x, dim) is None else None
    if pcs is None:
        raise ValueError(f"channel_sums expects a dense float32 CPU tensor whose channel dim {dim} has dense planes "
                         f"inside it, got {x.dtype} of shape {tuple(x.shape)} with strides {x.stride()} on {x.device}")
    P, C, S = pcs
    per = max(1, _BLOCK_ELEMS // max(1, C * S))
    n_blocks = max(1, -(-P // per))
    out = torch.zeros((n_blocks, 2, C), dtype=torch.float64)
    if x.numel():
        kind = "planes" if S > 1 else "rows"
        fn, addr = _KERNELS.get()[kind]
        _run(fn, n_blocks, [C, S, 0, 0, per, P, 0, 0], [x.data_ptr(), out.data_ptr()], [], addr=addr)
    total = out.sum(dim=0)
    return total[0], total[1]


def channel_mean_var(x: Tensor, dim: int = 1) -> tuple[Tensor, Tensor]:
    """The per-channel mean and biased variance (float64 ``[C]``) of a float32 tensor, in one read (see
    ``channel_sums``)."""
    s1, s2 = channel_sums(x, dim)
    return mean_var(s1, s2, x.numel() // max(1, x.shape[dim]))


def mean_var(s1: Tensor, s2: Tensor, M: int) -> tuple[Tensor, Tensor]:
    """The mean and biased variance from the sums ``Σx``, ``Σx²`` of ``M`` values (float64: ``Σx²/M − mean²``)."""
    M = max(1, M)
    mean = s1 / M
    return mean, (s2 / M - mean * mean).clamp_min_(0.0)


def channel_affine_add_(g: Tensor, u: Tensor, k2: Tensor, k1: Tensor, dim: int = 1) -> Tensor:
    """``g += k2·u + k1`` in place, ``k2`` and ``k1`` per channel along ``dim`` (float32 ``[C]``), in one pass:
    ``g + k2·u`` as one fused multiply-add, then ``+ k1`` — the bits of ``g.addcmul_(u, k2).add_(k1)`` (broadcast
    per channel) where torch's CPU code fuses that multiply-add (its AVX2 and AVX-512 kernels; its non-vector
    DEFAULT build rounds twice, and differs in the last bit). ``g`` and ``u`` are dense float32 CPU
    tensors of one shape and strides that ``channel_sums`` can read."""
    pcs = _as_pcs(g, dim) if why_not(g, dim) is None else None
    C = g.shape[dim] if g.dim() else 0
    if (pcs is None or u.shape != g.shape or u.stride() != g.stride() or u.dtype != g.dtype or u.device != g.device
            or tuple(k2.shape) != (C,) or tuple(k1.shape) != (C,) or k2.dtype != torch.float32
            or k1.dtype != torch.float32):
        raise ValueError(f"channel_affine_add_ expects g and u dense float32 CPU tensors of one shape and strides "
                         f"and float32 [C] k2, k1 for channel dim {dim}, got g {g.dtype} {tuple(g.shape)} strides "
                         f"{g.stride()}, u {u.dtype} {tuple(u.shape)} strides {u.stride()}, k2 {tuple(k2.shape)}, k1 "
                         f"{tuple(k1.shape)}")
    P, C, S = pcs
    gs, us, size = g.data_ptr(), u.data_ptr(), g.numel() * g.element_size()
    if gs != us and gs < us + size and us < gs + size:
        raise ValueError("channel_affine_add_: g and u partly overlap in memory (the same tensor, or apart)")
    if g.numel():
        k2c, k1c = k2.contiguous(), k1.contiguous()
        per = max(1, _BLOCK_ELEMS // max(1, C * S))
        fn, addr = _KERNELS.get()["affine_planes" if S > 1 else "affine_rows"]
        _run(fn, -(-P // per), [C, S, 0, 0, per, P, 0, 0],
             [g.data_ptr(), u.data_ptr(), k2c.data_ptr(), k1c.data_ptr()], [], addr=addr)
    return g

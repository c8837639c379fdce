"""The two loop nests every generated CPU kernel shares, and their compilation.

Forward, per block of ``B`` neurons (blocks are split across threads; time is the outer loop inside a
block, so every step streams a contiguous row slice and the state stays in L1):

    for t in 0..T-1:  [store state to checkpoint ⌊t/K⌋ if t % K == 0]   S[t], state = body(x[t], state)

Backward, per block, segments of ``K`` steps from the last: replay the segment from its checkpoint
into a small work buffer, then walk it backwards through the generated vector–Jacobian product,
carrying the state adjoint and accumulating parameter gradients (per neuron for per-neuron values, per
block for scalars and for arrays that repeat every ``P`` neurons — the caller sums the block partials in a
fixed order). Arrays that repeat (a per-channel value channels-last) are passed as one period and copied per
block into a buffer on the stack (``PERIODIC_FLAG``).

ABI of both functions: ``void f(i8** ptrs, i64* ints, double* scalars)``; the slots are laid out by
``Layout`` and filled by ``cpu.py``. The inner neuron loop runs ``W`` lanes at a time with a scalar tail.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llvmlite.binding as llvm
from llvmlite import ir

from ..core import atomic_write
from .llvm_ops import IntLanes, Lanes, emit_graph, emit_graph_int
from .spec import COMPILE_COUNT, KernelSpec, Layout, cache_dir, layout

__all__ = ["CompiledKernel", "compile_kernel", "vector_width", "ALIGNED_FLAG", "cached_object"]

I64 = ir.IntType(64)
I8P = ir.IntType(8).as_pointer()


# -- small IR helpers -------------------------------------------------------------------------------------
@contextlib.contextmanager
def _loop(b: ir.IRBuilder, start: ir.Value, stop: ir.Value, step: int = 1, name: str = "i") -> Iterator[ir.Value]:
    """``for i in range(start, stop, step)`` (step > 0)."""
    pre = b.block
    head = b.append_basic_block(f"{name}.head")
    body = b.append_basic_block(f"{name}.body")
    end = b.append_basic_block(f"{name}.end")
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(I64, name=name)
    i.add_incoming(start, pre)
    b.cbranch(b.icmp_signed("<", i, stop), body, end)
    b.position_at_end(body)
    yield i
    nxt = b.add(i, ir.Constant(I64, step))
    i.add_incoming(nxt, b.block)
    b.branch(head)
    b.position_at_end(end)


def _gep(b: ir.IRBuilder, base: ir.Value, idx: ir.Value) -> ir.Value:
    return b.gep(base, [idx], inbounds=True)


def _c(v: int) -> ir.Constant:
    """An i64 constant."""
    return ir.Constant(I64, v)


def _abi_function(mod: ir.Module, name: str) -> ir.IRBuilder:
    """A new function ``void name(i8** ptrs, i64* ints, double* scalars)`` (the ABI every CPU kernel has, ``_run``
    calls it) with its arguments ``noalias``; returns a builder at its entry (``b.function`` is the function)."""
    fnty = ir.FunctionType(ir.VoidType(), [I8P.as_pointer(), I64.as_pointer(), ir.DoubleType().as_pointer()])
    fn = ir.Function(mod, fnty, name=name)
    for a in fn.args:
        a.add_attribute("noalias")
    return ir.IRBuilder(fn.append_basic_block("entry"))


class _Fn:
    """Unpacks the ABI arguments of one generated function."""

    def __init__(self, mod: ir.Module, name: str, L: Lanes) -> None:
        self.b = _abi_function(mod, name)
        self.fn = self.b.function
        self.L = L
        self.fp = L.f.as_pointer()

    def ptr(self, k: int, ty: ir.Type | None = None) -> ir.Value:
        raw = self.b.load(self.b.gep(self.fn.args[0], [ir.Constant(I64, k)]))
        return self.b.bitcast(raw, ty or self.fp)

    def i64(self, k: int) -> ir.Value:
        return self.b.load(self.b.gep(self.fn.args[1], [ir.Constant(I64, k)]))

    def scalar(self, k: int) -> ir.Value:
        v = self.b.load(self.b.gep(self.fn.args[2], [ir.Constant(I64, k)]))
        if isinstance(self.L, IntLanes):               # an integral value (checked before compiling)
            return self.b.fptosi(v, self.L.f)
        return v if self.L.bits == 64 else self.b.fptrunc(v, self.L.f)


def _elem_bytes(ty: ir.Type) -> int:
    return 4 if isinstance(ty, ir.FloatType) else 8 if isinstance(ty, ir.DoubleType) else ty.width // 8


def _vload(b: ir.IRBuilder, base: ir.Value, idx: ir.Value, w: int) -> ir.Value:
    """``w`` consecutive elements of ``base`` from ``idx`` as a vector (``w = 1``: the scalar), element-aligned."""
    p = _gep(b, base, idx)
    if w == 1:
        return b.load(p)
    ty = base.type.pointee
    return b.load(b.bitcast(p, ir.VectorType(ty, w).as_pointer()), align=_elem_bytes(ty))


def _vstore(b: ir.IRBuilder, v: ir.Value, base: ir.Value, idx: ir.Value, w: int) -> ir.Instruction:
    """Store ``_vload``'s kind of value."""
    p = _gep(b, base, idx)
    if w == 1:
        return b.store(v, p)
    ty = base.type.pointee
    return b.store(v, b.bitcast(p, ir.VectorType(ty, w).as_pointer()), align=_elem_bytes(ty))


def _prefetch(b: ir.IRBuilder, base: ir.Value, idx: ir.Value) -> None:
    """Ask for the cache line of ``base[idx]`` ahead of its use (``prefetcht0``; never faults, so an index past
    the end is harmless). The kernels' row slices are short (a block of one step) and the next step's slice is
    a row further on: the hardware prefetcher does not cross that jump, so every slice would start with a miss
    to memory."""
    i8p = ir.IntType(8).as_pointer()
    i32 = ir.IntType(32)
    fn = b.module.globals.get("llvm.prefetch.p0")
    if fn is None:
        fn = ir.Function(b.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), name="llvm.prefetch.p0")
    b.call(fn, [b.bitcast(_gep(b, base, idx), i8p), i32(0), i32(3), i32(1)])


def _load(b: ir.IRBuilder, L: Lanes, base: ir.Value, idx: ir.Value) -> ir.Value:
    return _vload(b, base, idx, L.width)


# How the inner loop runs: W lanes at a time (SCALAR for the tail), and how it writes a [T, N] output it
# writes once. Non-temporal stores skip reading the destination line into the cache first; x86 has a
# whole-vector one only for addresses aligned to the vector, otherwise LLVM splits it into 8-byte pieces
# (measured on the benchmark neuron, T=64, B·N=2^16: forward 1.67 → 1.33 ms, forward+backward 8.0 → 7.2 ms
# aligned; plain stores were slower than either, 2.5 / 8.5 ms).
SCALAR, VEC, ALIGNED = 0, 1, 2
ALIGNED_FLAG = 1 << 30      # in the flags slot: every output row slice starts on a vector boundary


def _store(b: ir.IRBuilder, L: Lanes, v: ir.Value, base: ir.Value, idx: ir.Value, stream: int = SCALAR) -> None:
    """Store one lane vector. ``stream`` is the loop's mode for a [T, N] output written once: VEC or ALIGNED
    mark the store non-temporal, ALIGNED also promises a vector-aligned address; the default (SCALAR) is a
    plain store, for state and work buffers that are read again."""
    p = _gep(b, base, idx)
    if L.width == 1:
        b.store(v, p)
        return
    align = L.bits * L.width // 8 if stream == ALIGNED else L.bits // 8
    st = b.store(v, b.bitcast(p, L.ty.as_pointer()), align=align)
    if stream != SCALAR:
        st.set_metadata("nontemporal", b.module.add_metadata([ir.Constant(ir.IntType(32), 1)]))


def _lanes_loop(b: ir.IRBuilder, n: ir.Value, W: int, emit: Callable[[ir.Value, int], None],
                aligned: ir.Value | None = None) -> None:
    """Run ``emit(i, mode)`` over ``0..n`` W lanes at a time (mode ALIGNED where ``aligned`` holds at run
    time, else VEC), then a scalar tail (mode SCALAR)."""
    nvec = b.mul(b.sdiv(n, ir.Constant(I64, W)), ir.Constant(I64, W))
    if aligned is None:
        with _loop(b, ir.Constant(I64, 0), nvec, W, "v") as i:
            emit(i, VEC)
    else:
        with b.if_else(aligned) as (yes, no):
            with yes:
                with _loop(b, ir.Constant(I64, 0), nvec, W, "va") as i:
                    emit(i, ALIGNED)
            with no:
                with _loop(b, ir.Constant(I64, 0), nvec, W, "v") as i:
                    emit(i, VEC)
    with _loop(b, nvec, n, 1, "s") as i:
        emit(i, SCALAR)


def _flag(b: ir.IRBuilder, flags: ir.Value, bit: int) -> ir.Value:
    return b.icmp_signed("!=", b.and_(flags, ir.Constant(I64, bit)), ir.Constant(I64, 0))


# Per-neuron arrays that repeat every ``P`` neurons (ints slot 8; e.g. a per-channel value in channels-last order,
# ``P = C``): with PERIODIC_FLAG the array slots hold ``P`` values, and each block first copies its neurons'
# values ``a[(lo + i) mod P]`` into a block-sized buffer on the stack, read from there at every step. With
# BLOCK_GRADS_FLAG (backward) the gradient of each array is summed per block into row ``blk`` of a
# ``[n_blocks, P]`` output (the caller sums the rows) instead of written per neuron.
PERIODIC_FLAG = 1 << 28
BLOCK_GRADS_FLAG = 1 << 29
MAX_BLOCK = 4096           # the largest block a launcher may pass (the stack buffers' size)


def _block_buffer(b: ir.IRBuilder, ty: ir.Type) -> ir.Value:
    """A block-sized buffer on the stack, aligned to a cache line (block offsets of vector loops are multiples
    of the width, so its vector loads and stores never straddle two lines)."""
    buf = b.alloca(ty, MAX_BLOCK)
    buf.align = 64
    return buf


@contextlib.contextmanager
def _period_loop(b: ir.IRBuilder, n: ir.Value, off: ir.Value | None, P: ir.Value, cnt: ir.Value, name: str,
                 start: ir.Value | None = None, step: int = 1) -> Iterator[tuple[ir.Value, ir.Value]]:
    """``for i in range(start, n, step)`` (``start`` 0 by default) with ``c = (off + i) mod P`` carried in ``cnt``
    (no division): yields ``(i, c)``. ``off = None`` goes on from the ``c`` a loop before left in ``cnt``; a
    ``step`` above 1 needs ``c`` and ``P`` to be multiples of it (``c`` reaches ``P`` exactly)."""
    if off is not None:
        b.store(off, cnt)
    with _loop(b, _c(0) if start is None else start, n, step, name) as i:
        c = b.load(cnt)
        yield i, c
        c1 = b.add(c, _c(step))
        b.store(b.select(b.icmp_signed("==", c1, P), _c(0), c1), cnt)


class _Arrays:
    """Where the per-neuron array values of a block are read, and at which index.

    A periodic array (``PERIODIC_FLAG``: its slot holds one period of ``P`` values) with ``P + W <= MAX_BLOCK``
    is read from a window of ``P + W`` values on the stack (``win[k] = a[k mod P]``), at ``c = (lo + i) mod P``
    carried from lane vector to lane vector (``start`` before a loop over the block, ``index`` in its body,
    ``advance`` at its end): a vector at ``c`` holds the next ``W`` neurons' values with no wrap-around to handle.
    The window stays in L1 whatever the block size (a per-channel array channels-last: ``C + W`` floats), where a
    block-sized copy took 16 KiB of L1 per array and pushed the input's prefetched lines out. A longer period
    (NCHW: a sample's ``C·H·W``) is copied block by block into ``loc``; a per-neuron array is read in place."""

    def __init__(self, b: ir.IRBuilder, arr: dict[int, ir.Value], periodic: ir.Value, P: ir.Value,
                 loc: dict[int, ir.Value], cnt: ir.Value, W: int) -> None:
        self.b, self.arr, self.periodic, self.P, self.loc, self.cnt, self.W = b, arr, periodic, P, loc, cnt, W
        self.win = b.and_(periodic, b.icmp_signed("<=", b.add(P, _c(W)), _c(MAX_BLOCK)))
        self.wc = b.alloca(I64)
        self.steps = (b.urem(_c(1), P), b.urem(_c(W), P))   # scalar, vector
        self.off: ir.Value = _c(0)

    def window(self) -> None:
        """Fill the windows (once per call, before the block loop: they are the same for every block)."""
        b = self.b
        with b.if_then(self.win):
            for r, src in self.arr.items():
                with _period_loop(b, b.add(self.P, _c(self.W)), _c(0), self.P, self.cnt, "pw") as (i, c):
                    b.store(b.load(_gep(b, src, c)), _gep(b, self.loc[r], i))

    def block(self, lo: ir.Value, n: ir.Value, off: ir.Value) -> dict[int, ir.Value]:
        """The read base of each array in block ``[lo, lo + n)`` (``off = lo mod P``), a long period copied."""
        b = self.b
        self.off = off
        if not self.arr:
            return {}
        with b.if_then(b.and_(self.periodic, b.not_(self.win))):
            for r, src in self.arr.items():
                with _period_loop(b, n, off, self.P, self.cnt, "pa") as (i, c):
                    b.store(b.load(_gep(b, src, c)), _gep(b, self.loc[r], i))
        return {r: b.select(self.periodic, self.loc[r], _gep(b, src, lo)) for r, src in self.arr.items()}

    def start(self) -> None:
        self.b.store(self.off, self.wc)

    def index(self, i: ir.Value) -> ir.Value:
        return self.b.select(self.win, self.b.load(self.wc), i)

    def advance(self, mode: int) -> None:
        b = self.b
        c = b.add(b.load(self.wc), self.steps[1 if mode else 0])
        b.store(b.select(b.icmp_signed(">=", c, self.P), b.sub(c, self.P), c), self.wc)


def _fold_block(b: ir.IRBuilder, dst: ir.Value, row: ir.Value, g: ir.Value, n: ir.Value, off: ir.Value,
                P: ir.Value, cnt: ir.Value, W: int) -> None:
    """``dst[row + (off + i) mod P] += g[i]`` for ``i`` in order: ``W`` lanes at a time where vectors do not wrap
    around the period (``P`` and ``off`` multiples of ``W``: a per-channel gradient channels-last with a multiple
    of 16 channels), one at a time otherwise. Each ``dst`` element gets its terms in the same order either way."""
    whole = b.and_(b.icmp_signed("==", b.urem(P, _c(W)), _c(0)), b.icmp_signed("==", b.urem(off, _c(W)), _c(0)))
    nvec = b.select(whole, b.mul(b.sdiv(n, _c(W)), _c(W)), _c(0))
    with _period_loop(b, nvec, off, P, cnt, "fv", step=W) as (i, c):
        at = b.add(row, c)
        _vstore(b, b.fadd(_vload(b, dst, at, W), _vload(b, g, i, W)), dst, at, W)
    with _period_loop(b, n, None, P, cnt, "fs", start=nvec) as (i, c):
        d = _gep(b, dst, b.add(row, c))
        b.store(b.fadd(b.load(d), b.load(_gep(b, g, i))), d)


# -- the forward kernel ------------------------------------------------------------------------------------
def _build_fwd(mod: ir.Module, spec: KernelSpec, lay: Layout, W: int) -> None:
    lanes: type[Lanes] = IntLanes if spec.int_bits else Lanes
    emit_graph_: Any = emit_graph_int if spec.int_bits else emit_graph
    bits = spec.int_bits or spec.bits
    Ls = lanes(bits, 1)
    Lv = lanes(bits, W)
    F = _Fn(mod, f"sf_fwd_{spec.key}", Ls)
    b = F.b
    ns = spec.n_state
    T, N, blo, bhi, B, K, xs, flags = (F.i64(k) for k in range(8))
    x, s = F.ptr(0), F.ptr(1)
    st_in = [F.ptr(2 + k) for k in range(ns)]
    st = [F.ptr(2 + ns + k) for k in range(ns)]
    ck = [F.ptr(2 + 2 * ns + k) for k in range(ns)]
    arr = {r: F.ptr(2 + 3 * ns + j) for j, r in enumerate(lay.arrays)}
    sc = {r: F.scalar(j) for j, r in enumerate(lay.scalars)}
    store_ck = _flag(b, flags, 1)
    aligned = _flag(b, flags, ALIGNED_FLAG)
    P, periodic = F.i64(8), _flag(b, flags, PERIODIC_FLAG)
    loc = {r: _block_buffer(b, Ls.f) for r in arr}
    cnt = b.alloca(I64)
    reads = _Arrays(b, arr, periodic, P, loc, cnt, W)
    outs = ["spike", *(f"state{k}" for k in range(ns))]
    reads.window()
    with _loop(b, blo, bhi, 1, "blk") as blk:
        lo = b.mul(blk, B)
        n = b.sub(b.select(b.icmp_signed("<", b.add(lo, B), N), b.add(lo, B), N), lo)
        abase = reads.block(lo, n, b.urem(lo, P))
        with _loop(b, ir.Constant(I64, 0), n, 1, "cp") as i:
            for k in range(ns):   # flags bit 2+k: state k starts at one value for every neuron (no array)
                one = _flag(b, flags, 4 << k)
                src = b.select(one, ir.Constant(I64, 0), b.add(lo, i))
                b.store(b.load(_gep(b, st_in[k], src)), _gep(b, st[k], b.add(lo, i)))
        with _loop(b, ir.Constant(I64, 0), T, 1, "t") as t:
            at_ck = b.and_(store_ck, b.icmp_signed("==", b.srem(t, K), ir.Constant(I64, 0)))
            with b.if_then(at_ck):
                row = b.mul(b.sdiv(t, K), N)

                def save(i: ir.Value, mode: int, row: ir.Value = row) -> None:
                    L = Lv if mode else Ls
                    for k in range(ns):
                        _store(b, L, _load(b, L, st[k], b.add(lo, i)), ck[k], b.add(row, b.add(lo, i)))

                _lanes_loop(b, n, W, save)
            xrow = b.mul(t, xs)
            srow = b.mul(t, N)

            def body(i: ir.Value, mode: int) -> None:
                L = Lv if mode else Ls
                j = b.add(lo, i)
                env = {"x": _load(b, L, x, b.add(xrow, j))}
                if mode:              # the next step's input, one cache line per vector (float32: W = 16)
                    _prefetch(b, x, b.add(b.add(xrow, xs), j))
                for k in range(ns):
                    env[f"state{k}"] = _load(b, L, st[k], j)
                ai = reads.index(i)
                for r, p in abase.items():
                    env[spec.runtime[r]] = _load(b, L, p, ai)
                for r, v in sc.items():
                    env[spec.runtime[r]] = L.splat(b, v)
                res = emit_graph_(b, spec.fwd, L, env, outs)
                _store(b, L, res["spike"], s, b.add(srow, j), stream=mode)
                for k in range(ns):
                    _store(b, L, res[f"state{k}"], st[k], j)
                reads.advance(mode)

            reads.start()
            _lanes_loop(b, n, W, body, aligned)
    b.ret_void()


# -- the backward kernel -----------------------------------------------------------------------------------
def _build_bwd(mod: ir.Module, spec: KernelSpec, lay: Layout, W: int) -> None:
    Ls = Lanes(spec.bits, 1)
    Lv = Lanes(spec.bits, W)
    F = _Fn(mod, f"sf_bwd_{spec.key}", Ls)
    b = F.b
    ns = spec.n_state
    T, N, blo, bhi, B, K, xs, flags = (F.i64(k) for k in range(8))
    x, gs, gx = F.ptr(0), F.ptr(1), F.ptr(2)
    ck = [F.ptr(3 + k) for k in range(ns)]
    gfin = [F.ptr(3 + ns + k) for k in range(ns)]
    gst = [F.ptr(3 + 2 * ns + k) for k in range(ns)]
    base = 3 + 3 * ns
    arr = {r: F.ptr(base + j) for j, r in enumerate(lay.arrays)}
    base += len(lay.arrays)
    garr = {r: F.ptr(base + j) for j, r in enumerate(lay.grad_arrays)}
    base += len(lay.grad_arrays)
    partials = F.ptr(base, ir.DoubleType().as_pointer())
    work = F.ptr(base + 1)
    sc = {r: F.scalar(j) for j, r in enumerate(lay.scalars)}
    has_gfin, gs_one, aligned = _flag(b, flags, 2), _flag(b, flags, 4), _flag(b, flags, ALIGNED_FLAG)
    one_x = _flag(b, flags, 8)      # the input is one step for all T (stride 0): its gradient is summed over time
    P, periodic, block_grads = F.i64(8), _flag(b, flags, PERIODIC_FLAG), _flag(b, flags, BLOCK_GRADS_FLAG)
    loc = {r: _block_buffer(b, Ls.f) for r in arr}
    gloc = {r: _block_buffer(b, Ls.f) for r in garr}
    cnt = b.alloca(I64)
    reads = _Arrays(b, arr, periodic, P, loc, cnt, W)
    ng = len(lay.grad_scalars)
    dbl = ir.DoubleType()
    acc_v = [b.alloca(ir.VectorType(dbl, W)) for _ in range(ng)]
    acc_s = [b.alloca(dbl) for _ in range(ng)]
    fwd_outs = [f"state{k}" for k in range(ns)]
    bwd_outs = ["g.x", *(f"g.state{k}" for k in range(ns)), *(f"g.{spec.runtime[r]}" for r in lay.grad_arrays),
                *(f"g.{spec.runtime[r]}" for r in lay.grad_scalars)]
    nseg = b.sdiv(b.add(T, b.sub(K, ir.Constant(I64, 1))), K)

    def wslot(kk: ir.Value, k: int) -> ir.Value:    # work[kk][k][:]
        return b.mul(b.add(b.mul(kk, ir.Constant(I64, ns)), ir.Constant(I64, k)), B)

    # flags bit 16 << k: checkpoint k is one value for every neuron (a resting initial state, one segment):
    # each block copies it into its unused work slot 0, and the first step reads it there
    one_ck = [_flag(b, flags, 16 << k) for k in range(ns)]

    def state_rows(seg: ir.Value, lo: ir.Value, kk: ir.Value) -> list[ir.Value]:
        """Where the block's state before step ``t0 + kk`` is: the checkpoint row itself for ``kk = 0``
        (read in place, no copy; work slot 0 for a one-value checkpoint), else the replayed work slot."""
        first = b.icmp_signed("==", kk, ir.Constant(I64, 0))
        return [b.select(b.and_(first, b.not_(one_ck[k])), _gep(b, ck[k], b.add(b.mul(seg, N), lo)),
                         _gep(b, work, wslot(kk, k))) for k in range(ns)]

    abase: dict[int, ir.Value] = {}     # per block: where each array is read (_Arrays)

    def env_for(L: Lanes, j: ir.Value, i: ir.Value, t: ir.Value, rows: list[ir.Value]) -> dict[str, ir.Value]:
        env = {"x": _load(b, L, x, b.add(b.mul(t, xs), j))}
        for k in range(ns):
            env[f"state{k}"] = _load(b, L, rows[k], i)
        ai = reads.index(i)
        for r, p in abase.items():
            env[spec.runtime[r]] = _load(b, L, p, ai)
        for r, v in sc.items():
            env[spec.runtime[r]] = L.splat(b, v)
        return env

    reads.window()
    with _loop(b, blo, bhi, 1, "blk") as blk:
        lo = b.mul(blk, B)
        n = b.sub(b.select(b.icmp_signed("<", b.add(lo, B), N), b.add(lo, B), N), lo)
        off = b.urem(lo, P)
        abase.update(reads.block(lo, n, off))
        # each array's gradient: summed per neuron in the block-sized buffer (BLOCK_GRADS_FLAG) or in place
        gbase = {r: b.select(block_grads, gloc[r], _gep(b, p, lo)) for r, p in garr.items()}
        for a in acc_v:
            b.store(ir.Constant(ir.VectorType(dbl, W), [ir.Constant(dbl, 0.0)] * W), a)
        for a in acc_s:
            b.store(ir.Constant(dbl, 0.0), a)
        with _loop(b, ir.Constant(I64, 0), n, 1, "init") as i:
            j = b.add(lo, i)
            for k in range(ns):
                g0 = b.select(has_gfin, b.load(_gep(b, gfin[k], j)), Ls.c(0.0))
                b.store(g0, _gep(b, gst[k], j))
            for p in gbase.values():
                b.store(Ls.c(0.0), _gep(b, p, i))
            with b.if_then(one_x):
                b.store(Ls.c(0.0), _gep(b, gx, j))
            for k in range(ns):
                with b.if_then(one_ck[k]):
                    b.store(b.load(ck[k]), _gep(b, work, b.add(wslot(ir.Constant(I64, 0), k), i)))
        with _loop(b, ir.Constant(I64, 0), nseg, 1, "seg") as sg:
            seg = b.sub(b.sub(nseg, ir.Constant(I64, 1)), sg)
            t0 = b.mul(seg, K)
            Lseg = b.sub(b.select(b.icmp_signed("<", b.add(t0, K), T), b.add(t0, K), T), t0)
            with _loop(b, ir.Constant(I64, 0), b.sub(Lseg, ir.Constant(I64, 1)), 1, "rp") as kk:  # replay
                t = b.add(t0, kk)
                rows = state_rows(seg, lo, kk)

                def replay(i: ir.Value, mode: int, t: ir.Value = t, kk: ir.Value = kk,
                           rows: list[ir.Value] = rows) -> None:
                    L = Lv if mode else Ls
                    if mode:
                        _prefetch(b, x, b.add(b.mul(b.add(t, ir.Constant(I64, 1)), xs), b.add(lo, i)))
                    res = emit_graph(b, spec.fwd, L, env_for(L, b.add(lo, i), i, t, rows), fwd_outs)
                    for k in range(ns):
                        _store(b, L, res[f"state{k}"], work, b.add(wslot(b.add(kk, ir.Constant(I64, 1)), k), i))
                    reads.advance(mode)

                reads.start()
                _lanes_loop(b, n, W, replay)
            with _loop(b, ir.Constant(I64, 0), Lseg, 1, "rev") as r:     # reverse sweep
                kk = b.sub(b.sub(Lseg, ir.Constant(I64, 1)), r)
                t = b.add(t0, kk)
                rows = state_rows(seg, lo, kk)

                def back(i: ir.Value, mode: int, t: ir.Value = t, rows: list[ir.Value] = rows) -> None:
                    L = Lv if mode else Ls
                    j = b.add(lo, i)
                    env = env_for(L, j, i, t, rows)
                    # flags bit 4: the spike gradient is one value for every element (d sum(y)/dy = 1): the
                    # caller then passes W copies of it and every load reads from index 0
                    gidx = b.select(gs_one, ir.Constant(I64, 0), b.add(b.mul(t, N), j))
                    env["g.spike"] = _load(b, L, gs, gidx)
                    if mode:          # the previous step's spike gradient (its input is still cached from the replay)
                        _prefetch(b, gs, b.select(gs_one, ir.Constant(I64, 0), b.sub(gidx, N)))
                    for k in range(ns):
                        env[f"g.state{k}"] = _load(b, L, gst[k], j)
                    res = emit_graph(b, spec.bwd, L, env, bwd_outs)
                    with b.if_else(one_x) as (summed, per_step):
                        with summed:
                            _store(b, L, b.fadd(_load(b, L, gx, j), res["g.x"]), gx, j)
                        with per_step:
                            _store(b, L, res["g.x"], gx, b.add(b.mul(t, N), j), stream=mode)
                    for k in range(ns):
                        _store(b, L, res[f"g.state{k}"], gst[k], j)
                    for rr, p in gbase.items():
                        _store(b, L, b.fadd(_load(b, L, p, i), res[f"g.{spec.runtime[rr]}"]), p, i)
                    for q, rr in enumerate(lay.grad_scalars):
                        g = res[f"g.{spec.runtime[rr]}"]
                        if mode:
                            gd = g if spec.bits == 64 else b.fpext(g, ir.VectorType(dbl, W))
                            b.store(b.fadd(b.load(acc_v[q]), gd), acc_v[q])
                        else:
                            gd = g if spec.bits == 64 else b.fpext(g, dbl)
                            b.store(b.fadd(b.load(acc_s[q]), gd), acc_s[q])
                    reads.advance(mode)

                reads.start()
                _lanes_loop(b, n, W, back, aligned)
        if garr:                   # the block's row of each array gradient: its neurons summed per period index
            with b.if_then(block_grads):
                row = b.mul(blk, P)
                for r, p in garr.items():
                    _fold_block(b, p, row, gloc[r], n, off, P, cnt, W)
        for q in range(ng):        # block partial: lanes summed in a fixed order
            total = b.load(acc_s[q])
            vec = b.load(acc_v[q])
            for lane in range(W):
                total = b.fadd(total, b.extract_element(vec, ir.Constant(ir.IntType(32), lane)))
            b.store(total, _gep(b, partials, b.add(b.mul(blk, ir.Constant(I64, ng)), ir.Constant(I64, q))))
    b.ret_void()


# -- compilation, the on-disk cache ------------------------------------------------------------------------
_target_machine: llvm.TargetMachine | None = None


def _new_tm() -> llvm.TargetMachine:
    """The large code model with static relocation: constants and callees are reached through 64-bit absolute
    addresses (``R_X86_64_64``). The default small model reaches the constant pools PC-relatively in 32 bits,
    and MCJIT, which allocates code and constants separately, aborts the process when a long-lived one (a Ray
    worker after a few dozen search candidates) places them more than 2 GiB apart."""
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(),
                                        opt=3, reloc="static", codemodel="large")


def _tm() -> llvm.TargetMachine:
    """The target machine that compiles (never handed to an engine: an engine owns and frees its own)."""
    global _target_machine
    if _target_machine is None:
        _target_machine = _new_tm()
    return _target_machine


@functools.lru_cache(maxsize=4)
def vector_width(bits: int) -> int:
    feats = llvm.get_host_cpu_features()
    wide = 512 if feats.get("avx512f") else 256 if feats.get("avx2") or feats.get("avx") else 128
    return wide // bits


@dataclass
class CompiledKernel:
    spec: KernelSpec
    layout: Layout
    fwd: ctypes._CFuncPtr  # type: ignore[name-defined]
    bwd: ctypes._CFuncPtr | None  # type: ignore[name-defined]   # None for an integer (forward-only) kernel
    width: int
    fwd_addr: int
    bwd_addr: int


_PROTO = ctypes.CFUNCTYPE(None, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int64),
                          ctypes.POINTER(ctypes.c_double))


_engines: list[llvm.ExecutionEngine] = []


def _link(obj: bytes, *names: str) -> list[int]:
    """Load object code into an MCJIT engine of its own (kept alive for the process), finalise it, and
    return the addresses of ``names``. One engine per object: in one engine shared by every kernel, the
    sections of an object added late in a long process were placed out of each other's 32-bit reach, and
    MCJIT aborted the process on that relocation (the full test suite hit it at its ~300th kernel)."""
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), _new_tm())
    engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
    engine.finalize_object()
    _engines.append(engine)
    return [engine.get_function_address(n) for n in names]


def compile_kernel(spec: KernelSpec) -> CompiledKernel:
    """Build, optimise and JIT the pair, or load its object code from the disk cache."""
    tm = _tm()
    lay = layout(spec)
    W = vector_width(spec.int_bits or spec.bits)
    key = spec.key
    path = cache_dir() / f"{key}.o"
    obj = _read_checked(path)
    if obj is not None:
        COMPILE_COUNT["loaded"] += 1
    else:
        mod = ir.Module(name=f"sf_{key}")
        mod.triple = tm.triple
        _build_fwd(mod, spec, lay, W)
        if not spec.int_bits:             # integer kernels run forward only (no gradients of integers)
            _build_bwd(mod, spec, lay, W)
        llmod = llvm.parse_assembly(str(mod))
        llmod.verify()
        _optimise(llmod)
        obj = tm.emit_object(llmod)
        COMPILE_COUNT["compiled"] += 1
        _write_atomic(path, obj)
    if spec.int_bits:
        (fa,), ba = _link(obj, f"sf_fwd_{key}"), 0
    else:
        fa, ba = _link(obj, f"sf_fwd_{key}", f"sf_bwd_{key}")
    return CompiledKernel(spec, lay, _PROTO(fa), _PROTO(ba) if ba else None, W, fa, ba)


_trampoline_addr = 0


def omp_trampoline() -> int:
    """Address of ``void sf_omp_trampoline(i8* ctx)``: the body an OpenMP team runs (``GOMP_parallel``).

    ``ctx`` is ``{kernel, n_blocks, n_ptrs, ptrs, ints, scalars, work[], omp_get_thread_num,
    omp_get_num_threads}``; each thread takes blocks ``[n·tid/nt, n·(tid+1)/nt)``, its own work buffer,
    and calls the kernel — so kernels run on torch's own thread team instead of competing with it.
    """
    global _trampoline_addr
    if _trampoline_addr:
        return _trampoline_addr
    i8p, i32 = I8P, ir.IntType(32)
    kfn = ir.FunctionType(ir.VoidType(), [I8P.as_pointer(), I64.as_pointer(), ir.DoubleType().as_pointer()])
    getter = ir.FunctionType(i32, [])
    ctx_t = ir.LiteralStructType([i8p, I64, I64, I8P.as_pointer(), I64.as_pointer(), ir.DoubleType().as_pointer(),
                                  I8P.as_pointer(), getter.as_pointer(), getter.as_pointer()])
    mod = ir.Module(name="sf_omp")
    mod.triple = _tm().triple
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [i8p]), name="sf_omp_trampoline")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    ctx = b.bitcast(fn.args[0], ctx_t.as_pointer())

    def field(k: int) -> ir.Value:
        return b.load(b.gep(ctx, [ir.Constant(i32, 0), ir.Constant(i32, k)]))

    kernel = b.bitcast(field(0), kfn.as_pointer())
    nb, nptrs, ptrs, ints, scal, work = field(1), field(2), field(3), field(4), field(5), field(6)
    tid = b.sext(b.call(field(7), []), I64)
    nt = b.sext(b.call(field(8), []), I64)
    blo = b.sdiv(b.mul(nb, tid), nt)
    bhi = b.sdiv(b.mul(nb, b.add(tid, ir.Constant(I64, 1))), nt)
    lints = b.alloca(I64, Layout.INTS)
    lptrs = b.alloca(i8p, nptrs)
    with _loop(b, ir.Constant(I64, 0), ir.Constant(I64, Layout.INTS), 1, "ci") as i:
        b.store(b.load(_gep(b, ints, i)), _gep(b, lints, i))
    b.store(blo, _gep(b, lints, ir.Constant(I64, 2)))
    b.store(bhi, _gep(b, lints, ir.Constant(I64, 3)))
    with _loop(b, ir.Constant(I64, 0), nptrs, 1, "cpt") as i:
        b.store(b.load(_gep(b, ptrs, i)), _gep(b, lptrs, i))
    has_work = b.icmp_unsigned("!=", b.ptrtoint(work, I64), ir.Constant(I64, 0))
    with b.if_then(has_work):
        b.store(b.load(_gep(b, work, tid)), _gep(b, lptrs, b.sub(nptrs, ir.Constant(I64, 1))))
    with b.if_then(b.icmp_signed("<", blo, bhi)):
        b.call(kernel, [lptrs, lints, scal])
    b.ret_void()
    (_trampoline_addr,) = _link(cached_object("omp", str(mod), optimise=False), "sf_omp_trampoline")
    return _trampoline_addr


def _optimise(llmod: llvm.ModuleRef) -> None:
    """LLVM's -O3 pipeline, in place."""
    pb = llvm.create_pass_builder(_tm(), llvm.create_pipeline_tuning_options(speed_level=3))
    pb.getModulePassManager().run(llmod, pb)


class HandBuilt:
    """Kernels written by hand with llvmlite's IR builder (not generated from a step function): ``build(module)``
    adds functions named ``sf_<prefix>_<name>``; ``get()`` compiles them once per process (object code cached on
    disk, ``cached_object``) and returns ``{name: (callable with the kernels' ABI, address)}``."""

    def __init__(self, prefix: str, names: tuple[str, ...], build: Callable[[ir.Module], None]) -> None:
        self.prefix, self.names, self.build = prefix, names, build
        self._kernels: dict[str, tuple[Any, int]] | None = None
        self._lock = threading.Lock()

    def get(self) -> dict[str, tuple[Any, int]]:
        with self._lock:
            if self._kernels is None:
                mod = ir.Module(name=f"sf_{self.prefix}")
                mod.triple = _tm().triple
                self.build(mod)
                obj = cached_object(self.prefix, str(mod), optimise=True)
                addrs = _link(obj, *(f"sf_{self.prefix}_{n}" for n in self.names))
                self._kernels = {n: (_PROTO(a), a) for n, a in zip(self.names, addrs)}
            return self._kernels


def cached_object(prefix: str, text: str, optimise: bool) -> bytes:
    """Object code of a hand-built module's IR ``text``: read from the disk cache (``<prefix>_<hash of the text
    and the host CPU>.o``), so a warm process never starts LLVM's code generator, or compiled (with the -O3
    pipeline when ``optimise``) and cached."""
    path = cache_dir() / f"{prefix}_{hashlib.sha256((text + llvm.get_host_cpu_name()).encode()).hexdigest()[:24]}.o"
    obj = _read_checked(path)
    if obj is None:
        llmod = llvm.parse_assembly(text)
        llmod.verify()
        if optimise:
            _optimise(llmod)
        obj = _tm().emit_object(llmod)
        _write_atomic(path, obj)
    return obj


def _read_checked(path: Path) -> bytes | None:
    """The cached object code, or ``None`` if absent, truncated or corrupt (its sha256 leads the file)."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    digest, obj = raw[:64], raw[64:]
    if len(raw) <= 64 or hashlib.sha256(obj).hexdigest().encode() != digest:
        return None
    return obj


def _write_atomic(path: Path, data: bytes) -> None:
    """The object code behind its sha256, written atomically (``_read_checked`` verifies both)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, [hashlib.sha256(data).hexdigest().encode(), data])
    except OSError:   # a read-only home is not an error: the kernel just is not cached
        pass

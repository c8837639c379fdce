"""The fused CPU backend: one pass over T per neuron block, generated from the step function.

``scan`` traces the step once per static configuration (``plan``), evaluates the parameter-only
prologue with the reference's arithmetic (so with autograd for learnable parameters), and runs the
compiled forward kernel over blocks of neurons split across ``torch.get_num_threads()`` threads (ctypes
releases the GIL). With gradients on, it keeps for backward only the input and the state every ``K``
steps:

* ``memory="default"``: ``K = 2·(state bytes)/2``, i.e. 2 bytes per neuron-step beyond the input;
* ``memory="lean"``: ``K = ⌈√T⌉``, under 1 bit per neuron-step at T ≥ 1024 for a one-variable neuron.

Backward replays each segment from its checkpoint (the recomputation costs one extra forward pass and
no extra memory traffic beyond re-reading the input).
"""

from __future__ import annotations

import ctypes
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..neurons.scan import State, StepFn
from .autodiff import Split, interpret, lower, split, vjp
from .llvm_kernels import CompiledKernel, KernelSpec, compile_kernel
from .pool import POOL
from .trace import KernelTraceError, flatten_params, trace_step

__all__ = ["CPUBackend", "plan_for", "kernel_for", "MEMORY_MODES"]

MEMORY_MODES = ("default", "lean")


# -- plans: one per step function and static configuration ---------------------------------------------------
@dataclass
class Plan:
    split: Split
    fwd: Any          # lowered body graph
    bwd_raw: Any      # un-lowered body (vjp is derived per gradient pattern)
    kernels: dict[Any, CompiledKernel] = field(default_factory=dict)


_plans: dict[Any, Plan | str] = {}
_kernels: dict[str, CompiledKernel] = {}
_lock = threading.Lock()


def plan_for(step_fn: StepFn, state: State, params: Any) -> Plan:
    """Trace (once per static configuration) and split; raises ``KernelTraceError`` if it cannot."""
    static, _ = flatten_params(params)
    key = (step_fn, type(state), len(state), static)
    got = _plans.get(key)
    if isinstance(got, str):
        raise KernelTraceError(got)
    if got is None:
        try:
            tr = trace_step(step_fn, state, params)
            sp = split(tr)
            got = Plan(sp, lower(sp.body), sp.body)
        except KernelTraceError as e:
            _plans[key] = str(e)
            raise
        _plans[key] = got
    return got


def kernel_for(plan: Plan, is_array: tuple[bool, ...], need_grad: tuple[bool, ...], bits: int) -> CompiledKernel:
    """The compiled pair for one pattern of runtime kinds and wanted gradients (cached on the plan)."""
    got = plan.kernels.get((is_array, need_grad, bits))
    if got is not None:
        return got
    sp = plan.split
    wrt = [r for r, g in zip(sp.runtime, need_grad) if g]
    bwd = lower(vjp(plan.bwd_raw, sp.n_state, sp.runtime, wrt))
    spec = KernelSpec(plan.fwd, bwd, sp.n_state, tuple(sp.runtime), is_array, need_grad, bits)
    key = spec.key()
    with _lock:
        k = _kernels.get(key)
        if k is None:
            k = _kernels[key] = compile_kernel(spec)
    plan.kernels[(is_array, need_grad, bits)] = k
    return k


# -- threads ----------------------------------------------------------------------------------------------
_executor: ThreadPoolExecutor | None = None
_executor_pid = -1


def _reset_after_fork() -> None:
    global _executor, _executor_pid
    _executor, _executor_pid = None, -1


os.register_at_fork(after_in_child=_reset_after_fork)


def _run(fn: Any, n_blocks: int, ints: list[int], ptrs: list[int], scalars: list[float],
         work: list[Tensor] | None = None) -> None:
    """Call ``fn`` over block ranges, one per thread (the caller's thread runs the first range)."""
    global _executor, _executor_pid
    nt = max(1, min(torch.get_num_threads(), n_blocks))
    bounds = [n_blocks * k // nt for k in range(nt + 1)]
    sc = (ctypes.c_double * max(1, len(scalars)))(*scalars)

    def call(k: int) -> None:
        ii = list(ints)
        ii[2], ii[3] = bounds[k], bounds[k + 1]
        pp = list(ptrs)
        if work is not None:
            pp[-1] = work[k].data_ptr()
        fn((ctypes.c_void_p * len(pp))(*pp), (ctypes.c_int64 * len(ii))(*ii), sc)

    if nt == 1:
        call(0)
        return
    if _executor is None or _executor_pid != os.getpid() or _executor._max_workers < nt - 1:
        _executor = ThreadPoolExecutor(max_workers=max(nt - 1, 1), thread_name_prefix="spikeforge")
        _executor_pid = os.getpid()
    futures = [_executor.submit(call, k) for k in range(1, nt)]
    call(0)
    for f in futures:
        f.result()


def _block_size(N: int, W: int, lean: bool) -> int:
    nt = max(1, torch.get_num_threads())
    cap = 1024 if lean else 4096
    per_thread = -(-N // nt)
    return max(W, min(cap, -(-per_thread // W) * W))


# -- the autograd function ---------------------------------------------------------------------------------
@dataclass
class _Call:
    kernel: CompiledKernel
    T: int
    N: int
    B: int
    K: int
    scalars: list[float]          # scalar runtime values (doubles), in layout order
    scalar_tensors: list[Tensor | None]
    dtype: torch.dtype


def _ptr(t: Tensor) -> int:
    return int(t.data_ptr())


def _dense(g: Tensor | None, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """A contiguous gradient in a pooled (already touched) buffer: ``loss.sum()`` sends an expanded one."""
    if g is not None and g.is_contiguous() and g.dtype == dtype:
        return g
    out = POOL.take(shape, dtype)
    if g is None:
        out.zero_()
    else:
        out.copy_(g)
    return out


def _forward(c: _Call, x: Tensor, states: list[Tensor], arrays: list[Tensor], keep: bool
             ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    k = c.kernel
    ns = k.spec.n_state
    s = POOL.take((c.T, c.N), c.dtype)
    out_states = [POOL.take((c.N,), c.dtype) for _ in range(ns)]
    nck = -(-c.T // c.K)
    ck = [POOL.take((nck, c.N), c.dtype) for _ in range(ns)] if keep else [s] * ns
    n_blocks = -(-c.N // c.B)
    ptrs = [_ptr(x), _ptr(s), *map(_ptr, states), *map(_ptr, out_states), *map(_ptr, ck), *map(_ptr, arrays)]
    ints = [c.T, c.N, 0, 0, c.B, c.K, x.stride(0), 1 if keep else 0]
    _run(k.fwd, n_blocks, ints, ptrs, c.scalars)
    return s, out_states, ck if keep else []


class _FusedScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, c: _Call, x: Tensor, n_state: int, *rest: Tensor) -> tuple[Tensor, ...]:  # type: ignore[override]
        states, tail = list(rest[:n_state]), rest[n_state:]
        lay = c.kernel.layout
        arrays = list(tail[:len(lay.arrays)])
        spikes, out_states, ck = _forward(c, x, states, arrays, keep=True)
        ctx.c, ctx.n_state = c, n_state
        ctx.save_for_backward(x, *ck, *arrays)
        return (spikes, *out_states)

    @staticmethod
    def backward(ctx: Any, gs: Tensor | None, *gfin: Tensor | None) -> tuple[Any, ...]:  # type: ignore[override]
        c: _Call = ctx.c
        k, lay, ns = c.kernel, c.kernel.layout, ctx.n_state
        saved = ctx.saved_tensors
        x, ck, arrays = saved[0], list(saved[1:1 + ns]), list(saved[1 + ns:])
        gs = _dense(gs, (c.T, c.N), c.dtype)
        has_fin = any(g is not None for g in gfin)
        fin = [(g.contiguous() if g is not None else torch.zeros(c.N, dtype=c.dtype)) for g in gfin] \
            if has_fin else [gs] * ns
        gx = POOL.take((c.T, c.N), c.dtype)
        g0 = [torch.empty(c.N, dtype=c.dtype) for _ in range(ns)]
        garr = [torch.empty(c.N, dtype=c.dtype) for _ in lay.grad_arrays]
        n_blocks = -(-c.N // c.B)
        partials = torch.zeros((n_blocks, max(1, len(lay.grad_scalars))), dtype=torch.float64)
        nt = max(1, min(torch.get_num_threads(), n_blocks))
        work = [torch.empty(c.K * ns * c.B, dtype=c.dtype) for _ in range(nt)]
        ptrs = [_ptr(x), _ptr(gs), _ptr(gx), *map(_ptr, ck), *map(_ptr, fin), *map(_ptr, g0), *map(_ptr, arrays),
                *map(_ptr, garr), _ptr(partials), 0]
        ints = [c.T, c.N, 0, 0, c.B, c.K, x.stride(0), 2 if has_fin else 0]
        _run(k.bwd, n_blocks, ints, ptrs, c.scalars, work)
        # gradients in the order of the inputs: c, x, n_state, states, arrays, scalar tensors
        arr_grads: list[Tensor | None] = []
        gi = iter(garr)
        for r in lay.arrays:
            arr_grads.append(next(gi) if r in lay.grad_arrays else None)
        sums = partials.sum(dim=0)      # blocks summed in order: deterministic for any thread count
        sc_grads: list[Tensor | None] = []
        for j, r in enumerate(lay.scalars):
            t = c.scalar_tensors[j]
            if t is None:
                continue
            q = lay.grad_scalars.index(r) if r in lay.grad_scalars else None
            sc_grads.append(None if q is None else sums[q].to(t.dtype).reshape(t.shape))
        return (None, gx, None, *g0, *arr_grads, *sc_grads)


# -- the backend ---------------------------------------------------------------------------------------------
class CPUBackend:
    """Fused kernels compiled with LLVM (llvmlite) from the step function's op list."""

    name = "cpu"

    def handles(self, x_seq: Tensor) -> bool:
        return x_seq.device.type == "cpu" and x_seq.dtype.is_floating_point

    def why_not(self, step_fn: StepFn, x_seq: Tensor, state: State, params: Any) -> str | None:
        if x_seq.device.type != "cpu":
            return f"input is on {x_seq.device}"
        if x_seq.dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
            return f"dtype {x_seq.dtype} runs on the torch reference (integer simulation)"
        if any(s.device.type != "cpu" for s in state):
            return "state is not on the CPU"
        if x_seq.numel() == 0:
            return "empty input"
        try:
            plan_for(step_fn, state, params)
        except KernelTraceError as e:
            return str(e)
        return None

    def scan(self, step_fn: StepFn, x_seq: Tensor, state: State, params: Any,
             memory: str = "default") -> tuple[Tensor, State]:
        if memory not in MEMORY_MODES:
            raise ValueError(f"memory must be one of {MEMORY_MODES}, got {memory!r}")
        plan = plan_for(step_fn, state, params)
        sp = plan.split
        in_dtype = x_seq.dtype
        dtype = torch.float64 if in_dtype == torch.float64 else torch.float32
        T = x_seq.shape[0]
        step_shape = x_seq.shape[1:]
        N = math.prod(step_shape)
        x = x_seq.to(dtype).reshape(T, N)
        if x.stride(1) != 1:
            x = x.contiguous()
        states = [s.to(dtype).expand(step_shape).reshape(N) for s in state]
        states = [s if s.is_contiguous() else s.contiguous() for s in states]
        _, values = flatten_params(params)
        rt = interpret(sp.prologue, values) if sp.runtime else {}
        is_array, need_grad, scalars, scalar_tensors, arrays = [], [], [], [], []
        for r in sp.runtime:
            v = rt[r]
            if isinstance(v, Tensor) and v.numel() > 1:
                a = v.to(dtype).expand(step_shape).reshape(N)
                arrays.append(a if a.is_contiguous() else a.contiguous())
                is_array.append(True)
                need_grad.append(bool(v.requires_grad))
            else:
                scalars.append(float(v.detach()) if isinstance(v, Tensor) else float(v))
                scalar_tensors.append(v if isinstance(v, Tensor) and v.requires_grad else None)
                is_array.append(False)
                need_grad.append(isinstance(v, Tensor) and v.requires_grad)
        grad = torch.is_grad_enabled() and (x.requires_grad or any(s.requires_grad for s in states)
                                            or any(need_grad))
        if not grad:
            need_grad = [False] * len(need_grad)
        kern = kernel_for(plan, tuple(is_array), tuple(need_grad), 64 if dtype == torch.float64 else 32)
        ns = sp.n_state
        state_bytes = ns * (8 if dtype == torch.float64 else 4)
        K = max(1, math.ceil(math.sqrt(T))) if memory == "lean" else max(1, -(-state_bytes // 2))
        K = min(K, T)
        B = _block_size(N, kern.width, memory == "lean")
        c = _Call(kern, T, N, B, K, scalars, [t for t in scalar_tensors], dtype)
        if grad:
            sc_inputs = [t for t in scalar_tensors if t is not None]
            outs = _FusedScan.apply(c, x, ns, *states, *arrays, *sc_inputs)
            spikes, finals = outs[0], list(outs[1:])
        else:
            with torch.no_grad():
                spikes, finals, _ = _forward(c, x.detach(), [s.detach() for s in states],
                                             [a.detach() for a in arrays], keep=False)
        spikes = spikes.view(x_seq.shape)
        if spikes.dtype != in_dtype:
            spikes = spikes.to(in_dtype)
        final = [f.view(step_shape) for f in finals]
        return spikes, (type(state)(*final) if hasattr(state, "_fields") else tuple(final))

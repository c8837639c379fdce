"""The fused CPU backend: LLVM kernels (``llvm_kernels``) run over neuron blocks on a thread pool.

Blocks are split evenly across ``torch.get_num_threads()`` threads; ``ctypes`` releases the GIL for the
call, so the threads run in parallel without an OpenMP runtime of their own (and the pool is rebuilt in
a forked child, so DataLoader workers started after a fused forward work). Everything else — planning,
the parameter prologue, the autograd function — is ``driver.py``.
"""

from __future__ import annotations

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch import Tensor

from ..neurons.scan import State, StepFn
from .driver import Call, fused_scan, plan_for
from .llvm_kernels import CompiledKernel, compile_kernel
from .spec import KernelSpec, Layout
from .trace import KernelTraceError

__all__ = ["CPUBackend", "LLVMLauncher"]

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


def _ptr(t: Tensor) -> int:
    return int(t.data_ptr())


class LLVMLauncher:
    """Compiles a spec with llvmlite (cached in-process and on disk) and runs it on the CPU."""

    def __init__(self) -> None:
        self._kernels: dict[str, CompiledKernel] = {}
        self._lock = threading.Lock()

    def compile(self, spec: KernelSpec) -> CompiledKernel:
        key = spec.key()
        with self._lock:
            k = self._kernels.get(key)
            if k is None:
                k = self._kernels[key] = compile_kernel(spec)
        return k

    def layout(self, kernel: CompiledKernel) -> Layout:
        return kernel.layout

    def block_size(self, kernel: CompiledKernel, N: int, lean: bool) -> int:
        """Up to 4,096 neurons (16 KiB of float32 per row slice: the state stays in L1), fewer so every
        thread gets work; 1,024 in lean mode, where the backward replays ⌈√T⌉ steps per block."""
        W = kernel.width
        nt = max(1, torch.get_num_threads())
        cap = 1024 if lean else 4096
        per_thread = -(-N // nt)
        return max(W, min(cap, -(-per_thread // W) * W))

    def forward(self, c: Call, x: Tensor, states: list[Tensor], arrays: list[Tensor], s: Tensor,
                out_states: list[Tensor], ck: list[Tensor], keep: bool) -> None:
        ck_ptrs = [_ptr(t) for t in ck] if keep else [_ptr(s)] * len(states)
        ptrs = [_ptr(x), _ptr(s), *map(_ptr, states), *map(_ptr, out_states), *ck_ptrs, *map(_ptr, arrays)]
        ints = [c.T, c.N, 0, 0, c.B, c.K, x.stride(0), 1 if keep else 0]
        _run(c.kernel.fwd, c.n_blocks, ints, ptrs, c.scalars)

    def backward(self, c: Call, x: Tensor, gs: Tensor, gx: Tensor, ck: list[Tensor], fin: list[Tensor],
                 has_fin: bool, g0: list[Tensor], arrays: list[Tensor], garr: list[Tensor], partials: Tensor) -> None:
        ns = len(ck)
        nt = max(1, min(torch.get_num_threads(), c.n_blocks))
        work = [torch.empty(c.K * ns * c.B, dtype=c.dtype) for _ in range(nt)]
        ptrs = [_ptr(x), _ptr(gs), _ptr(gx), *map(_ptr, ck), *map(_ptr, fin), *map(_ptr, g0), *map(_ptr, arrays),
                *map(_ptr, garr), _ptr(partials), 0]
        ints = [c.T, c.N, 0, 0, c.B, c.K, x.stride(0), 2 if has_fin else 0]
        _run(c.kernel.bwd, c.n_blocks, ints, ptrs, c.scalars, work)


class CPUBackend:
    """Fused kernels compiled with LLVM (llvmlite) from the step function's op list."""

    name = "cpu"

    def __init__(self) -> None:
        self.launcher = LLVMLauncher()

    def handles(self, x_seq: Tensor) -> bool:
        return x_seq.device.type == "cpu" and x_seq.dtype.is_floating_point

    def why_not(self, step_fn: StepFn, x_seq: Tensor, state: State, params: Any) -> str | None:
        if x_seq.device.type != "cpu":
            return f"input is on {x_seq.device}"
        if not x_seq.dtype.is_floating_point:
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
        return fused_scan(self.launcher, step_fn, x_seq, state, params, memory)

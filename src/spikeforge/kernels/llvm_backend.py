"""The fused CPU backend: LLVM kernels (``llvm_kernels``) run over neuron blocks on torch's threads.

Blocks are split evenly across ``torch.get_num_threads()`` threads. The kernels run on **torch's own
OpenMP team** (``GOMP_parallel`` of the runtime torch loaded, through a small LLVM trampoline): after a
conv or a batch norm, torch's OpenMP workers keep spinning for a while, and threads of our own would
compete with them for the cores (measured on 2 cores: 0.94 ms alone, 2.3–3.5 ms right after a torch
op). Where no OpenMP runtime is loaded, a thread pool does the same split (``ctypes`` releases the GIL);
``SPIKEFORGE_CPU_THREADS=pool|omp`` forces one. A forked child rebuilds the pool; DataLoader workers run
with one torch thread and call the kernel directly. Planning, the prologue and autograd are
``driver.py``.
"""

from __future__ import annotations

import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch import Tensor

from ..core import State, StepFn
from .driver import INTEGER_DTYPES, Call, FusedBackend, KernelCache, integer_reason
from .llvm_kernels import (
    ALIGNED_FLAG,
    BLOCK_GRADS_FLAG,
    MAX_BLOCK,
    PERIODIC_FLAG,
    CompiledKernel,
    compile_kernel,
    omp_trampoline,
    vector_width,
)
from .spec import KernelSpec, Layout

__all__ = ["CPUBackend", "LLVMLauncher"]

_executor: ThreadPoolExecutor | None = None
_executor_pid = -1


def _reset_after_fork() -> None:
    global _executor, _executor_pid
    _executor, _executor_pid = None, -1


os.register_at_fork(after_in_child=_reset_after_fork)


class _OmpCtx(ctypes.Structure):
    _fields_ = [("fn", ctypes.c_void_p), ("n_blocks", ctypes.c_int64), ("n_ptrs", ctypes.c_int64),
                ("ptrs", ctypes.c_void_p), ("ints", ctypes.c_void_p), ("scalars", ctypes.c_void_p),
                ("work", ctypes.c_void_p), ("tid", ctypes.c_void_p), ("nt", ctypes.c_void_p)]


_omp: tuple[Any, int, int] | None | bool = False    # False: not looked up yet


def _openmp() -> tuple[Any, int, int] | None:
    """``(GOMP_parallel, &omp_get_thread_num, &omp_get_num_threads)`` of the OpenMP runtime in this process."""
    global _omp
    if _omp is not False:
        return _omp  # type: ignore[return-value]
    _omp = None
    if os.environ.get("SPIKEFORGE_CPU_THREADS", "omp") == "pool":
        return None
    candidates: list[str | None] = [None]
    try:
        with open("/proc/self/maps") as f:
            candidates += sorted({ln.split()[-1] for ln in f if any(k in ln for k in ("libgomp", "libiomp", "libomp"))})
    except OSError:
        pass
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
            par, tid, nt = lib.GOMP_parallel, lib.omp_get_thread_num, lib.omp_get_num_threads
        except (OSError, AttributeError):
            continue
        par.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        par.restype = None
        tid_addr, nt_addr = ctypes.cast(tid, ctypes.c_void_p).value, ctypes.cast(nt, ctypes.c_void_p).value
        _omp = (par, int(tid_addr or 0), int(nt_addr or 0))
        break
    return _omp  # type: ignore[return-value]


def _run(fn: Any, n_blocks: int, ints: list[int], ptrs: list[int], scalars: list[float],
         work: list[Tensor] | None = None, addr: int = 0) -> None:
    """Call the kernel over block ranges, one per thread: on torch's OpenMP team when there is one."""
    global _executor, _executor_pid
    ints = [*ints, *[0] * (Layout.INTS - len(ints))]      # the trampoline copies Layout.INTS of them
    nt = max(1, min(torch.get_num_threads(), n_blocks))
    sc = (ctypes.c_double * max(1, len(scalars)))(*scalars)
    omp = _openmp() if nt > 1 and addr else None
    if omp is not None:
        par, tid, ntf = omp
        pp = (ctypes.c_void_p * len(ptrs))(*ptrs)
        ii = (ctypes.c_int64 * len(ints))(*ints)
        ww = (ctypes.c_void_p * nt)(*(w.data_ptr() for w in work)) if work is not None else None
        ctx = _OmpCtx(addr, n_blocks, len(ptrs), ctypes.addressof(pp), ctypes.addressof(ii), ctypes.addressof(sc),
                      ctypes.addressof(ww) if ww is not None else 0, tid, ntf)
        par(omp_trampoline(), ctypes.addressof(ctx), nt, 0)
        return
    bounds = [n_blocks * k // nt for k in range(nt + 1)]

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


def _aligned(c: Call, out: Tensor) -> int:
    """``ALIGNED_FLAG`` if every row slice a kernel writes of ``out`` ``[T, N]`` starts on a vector boundary:
    the base is aligned, rows are whole vectors, and blocks are (``block_size`` rounds them to ``W``)."""
    vec_bytes = c.kernel.width * out.element_size()
    ok = out.data_ptr() % vec_bytes == 0 and c.N % c.kernel.width == 0 and c.block % c.kernel.width == 0
    return ALIGNED_FLAG if ok else 0


def _periodic(c: Call) -> int:
    """``PERIODIC_FLAG`` when the array slots hold one period of values (``Call.period`` < N)."""
    assert c.block <= MAX_BLOCK, "blocks are copied into buffers of MAX_BLOCK on the kernels' stacks"
    return PERIODIC_FLAG if c.period < c.N else 0


_works: dict[tuple[int, int, torch.dtype], Tensor] = {}


def _work(i: int, n: int, dtype: torch.dtype) -> Tensor:
    """Per-thread replay buffers of the backward, kept between calls (each is used inside one call only,
    by one kernel thread of one Python thread)."""
    key = (threading.get_ident(), i, dtype)
    w = _works.get(key)
    if w is None or w.numel() < n:
        w = _works[key] = torch.empty(n, dtype=dtype)
    return w


class LLVMLauncher:
    """Compiles a spec with llvmlite (cached in-process and on disk) and runs it on the CPU."""

    broadcast_state = True    # a one-element initial state is read as one value for every neuron
    broadcast_checkpoint = True   # ... and a one-element checkpoint in backward (one segment from rest)
    one_step_input = True     # an input of one step for all T (stride 0) gets its gradient summed over time
    periodic_arrays = True    # array values that repeat every P neurons are passed as P values (PERIODIC_FLAG)

    @property
    def broadcast_grad(self) -> int:
        """A fully broadcast spike gradient is passed as this many copies of its value (the vector width)."""
        return vector_width(32)      # float32 lanes are the most; float64 kernels read fewer

    def __init__(self) -> None:
        self._cache = KernelCache()

    def compile(self, spec: KernelSpec) -> CompiledKernel:
        return self._cache.get(spec, compile_kernel)

    def layout(self, kernel: CompiledKernel) -> Layout:
        return kernel.layout

    def segment(self, T: int, state_bytes: int, lean: bool) -> int:
        """The whole sequence: only the initial state is kept, and the backward replays one block of neurons
        at a time into its thread's work buffer (``block_size`` keeps that buffer cache-sized). ``lean``
        changes nothing here: the input is all that is kept either way."""
        return T

    def block_size(self, kernel: CompiledKernel, N: int, replay: int) -> int:
        """Up to 4,096 neurons (16 KiB of float32 per row slice: the state stays in L1), fewer so every
        thread gets work, and so that the backward's replay buffer (``replay`` rows: steps × state
        variables) stays within 256 KiB (L2)."""
        W = kernel.width
        nt = max(1, torch.get_num_threads())
        cap = max(W, min(MAX_BLOCK, (1 << 16) // max(1, replay)) // W * W)
        per_thread = -(-N // nt)
        return max(W, min(cap, -(-per_thread // W) * W))

    def forward(self, c: Call, x: Tensor, states: list[Tensor], arrays: list[Tensor], s: Tensor,
                out_states: list[Tensor], ck: list[Tensor], keep: bool) -> None:
        ck_ptrs = [_ptr(t) for t in ck] if keep else [_ptr(s)] * len(states)
        ptrs = [_ptr(x), _ptr(s), *map(_ptr, states), *map(_ptr, out_states), *ck_ptrs, *map(_ptr, arrays)]
        one_value = sum(4 << k for k, st in enumerate(states) if st.numel() == 1 and c.N > 1)
        ints = [c.T, c.N, 0, 0, c.block, c.K, x.stride(0), (1 if keep else 0) | one_value | _aligned(c, s)
                | _periodic(c), c.period]
        _run(c.kernel.fwd, c.n_blocks, ints, ptrs, c.scalars, addr=c.kernel.fwd_addr)

    def backward(self, c: Call, x: Tensor, gs: Tensor, gx: Tensor, ck: list[Tensor], fin: list[Tensor],
                 has_fin: bool, g0: list[Tensor], arrays: list[Tensor], garr: list[Tensor], partials: Tensor) -> None:
        ns = len(ck)
        nt = max(1, min(torch.get_num_threads(), c.n_blocks))
        work = [_work(nt_i, c.K * ns * c.block, c.dtype) for nt_i in range(nt)]
        ptrs = [_ptr(x), _ptr(gs), _ptr(gx), *map(_ptr, ck), *map(_ptr, fin), *map(_ptr, g0), *map(_ptr, arrays),
                *map(_ptr, garr), _ptr(partials), 0]
        gs_one = 4 if gs.numel() != c.T * c.N else 0
        one_ck = sum(16 << k for k, t in enumerate(ck) if t.numel() == 1 and c.N > 1)
        one_x = 8 if gx.dim() == 1 and c.T > 1 else 0      # one input step for all T: its gradient summed
        ints = [c.T, c.N, 0, 0, c.block, c.K, x.stride(0),
                (2 if has_fin else 0) | gs_one | one_ck | one_x | _aligned(c, gx) | _periodic(c)
                | (BLOCK_GRADS_FLAG if c.block_grads else 0), c.period]
        _run(c.kernel.bwd, c.n_blocks, ints, ptrs, c.scalars, work, addr=c.kernel.bwd_addr)


class CPUBackend(FusedBackend):
    """Fused kernels compiled with LLVM (llvmlite) from the step function's op list."""

    name = "cpu"

    def __init__(self) -> None:
        self.launcher = LLVMLauncher()

    def handles(self, x_seq: Tensor) -> bool:
        return x_seq.device.type == "cpu" and (x_seq.dtype.is_floating_point or x_seq.dtype in INTEGER_DTYPES)

    def why_not(self, step_fn: StepFn, x_seq: Tensor, state: State, params: Any) -> str | None:
        """``None`` if the call can run fused. Integer calls (int32/int64 input and state, chip simulation)
        run when every op the forward uses is exact in integers (``driver.INTEGER_OPS``) and every value it
        reads is an integer; the rest decline here and run on the torch reference."""
        if x_seq.device.type != "cpu":
            return f"input is on {x_seq.device}"
        if not (x_seq.dtype.is_floating_point or x_seq.dtype in INTEGER_DTYPES):
            return f"dtype {x_seq.dtype} runs on the torch reference"
        if any(s.device.type != "cpu" for s in state):
            return "state is not on the CPU"
        reason = self._untraceable(step_fn, state, params)
        if reason is not None or x_seq.dtype not in INTEGER_DTYPES:
            return reason
        if any(s.dtype != x_seq.dtype for s in state):
            return f"integer state: the state's dtypes {[s.dtype for s in state]} differ from the input's"
        return integer_reason(step_fn, state, params)

"""Latency, throughput and peak memory of a forward pass.

Peak memory on CUDA is ``torch.cuda.max_memory_allocated``. On the CPU, where torch keeps no such counter,
a dispatch mode follows every storage the forward allocates (through weak references) and reports the
largest total alive at once: activations and the temporaries of every op, not parameters or the input.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
from torch import Tensor, nn
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

__all__ = ["peak_memory_bytes", "time_forward", "param_bytes"]


class _PeakMode(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.cur = self.peak = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for k in [k for k, (ref, _) in self.live.items() if ref.expired()]:
            self.cur -= self.live.pop(k)[1]
        for t in tree_leaves(out):
            if isinstance(t, Tensor) and not t.is_meta:
                st = t.untyped_storage()
                ptr = st.data_ptr()
                if ptr and ptr not in self.live:
                    self.live[ptr] = (StorageWeakRef(st), st.nbytes())
                    self.cur += st.nbytes()
        self.peak = max(self.peak, self.cur)
        return out


def peak_memory_bytes(model: nn.Module, x: Tensor) -> int:
    """Largest number of bytes alive at once among the tensors a forward pass on ``x`` allocates."""
    with torch.no_grad():
        if x.is_cuda:
            torch.cuda.synchronize(x.device)
            torch.cuda.reset_peak_memory_stats(x.device)
            base = torch.cuda.memory_allocated(x.device)
            model(x)
            torch.cuda.synchronize(x.device)
            return int(torch.cuda.max_memory_allocated(x.device) - base)
        with _PeakMode() as m:
            model(x)
        return int(m.peak)


def time_forward(model: nn.Module, x: Tensor, repeats: int = 5, warmup: int = 1) -> float:
    """Median seconds of ``model(x)`` under ``torch.no_grad`` over ``repeats`` runs (after ``warmup``)."""
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            if x.is_cuda:
                torch.cuda.synchronize(x.device)
            t0 = time.perf_counter()
            model(x)
            if x.is_cuda:
                torch.cuda.synchronize(x.device)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


def param_bytes(model: nn.Module) -> int:
    """Bytes of the parameters and buffers."""
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])

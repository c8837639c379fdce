"""Fast backends generated from the neurons' torch step functions.

``trace`` turns a step function into an op list (``ir``); ``autodiff`` splits off the parameter
prologue, derives the backward step and lowers spikes; ``spec`` is what a backend compiles and
``driver`` the planning and autograd every backend shares; ``llvm_ops`` / ``llvm_kernels`` /
``llvm_backend`` compile and run it on the CPU (llvmlite), ``triton_codegen`` / ``triton_backend`` on the GPU.
Files are named by the technology; the backends by where they run (``"cpu"``, ``"triton"``). Nothing here
knows any neuron. Beside the generated kernels, three written by hand for the layers around the neurons
(loaded on first use, each with its ``why_not``): ``llvm_pool`` (2×2 max pooling), ``llvm_stats`` (per-channel
batch statistics, BN's input-gradient pass) and ``llvm_conv`` (the direct conv of a layer with 1–4 input
channels).
"""

import importlib.util

from ..core import register_backend
from .llvm_backend import CPUBackend
from .pool import POOL
from .spec import COMPILE_COUNT, cache_dir
from .trace import KernelTraceError, trace_step
from .triton_backend import TritonBackend, triton_available

register_backend(CPUBackend(), auto_priority=0)
# the GPU backend, when Triton is installed (the [gpu] extra); Triton itself is imported on first GPU use
if importlib.util.find_spec("triton") is not None:
    register_backend(TritonBackend(), auto_priority=1)

__all__ = ["CPUBackend", "TritonBackend", "triton_available", "KernelTraceError", "trace_step", "COMPILE_COUNT",
           "cache_dir", "POOL"]

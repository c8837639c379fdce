"""Fast backends generated from the neurons' torch step functions.

``trace`` turns a step function into an op list (``ir``); ``autodiff`` splits off the parameter
prologue, derives the backward step and lowers spikes; ``llvm_ops`` / ``llvm_kernels`` compile the
op list for the CPU (llvmlite); ``cpu`` runs it. Nothing here knows any particular neuron.
"""

from ..neurons.scan import register_backend
from .cpu import CPUBackend
from .llvm_kernels import COMPILE_COUNT, cache_dir
from .pool import POOL
from .trace import KernelTraceError, trace_step

register_backend(CPUBackend(), auto_priority=0)

__all__ = ["CPUBackend", "KernelTraceError", "trace_step", "COMPILE_COUNT", "cache_dir", "POOL"]

"""What a backend compiles: the lowered forward and backward op lists of one neuron configuration, and
the slot layout of their arguments. Shared by the LLVM (CPU) and Triton (GPU) backends.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..core import cache_root
from .ir import Graph

__all__ = ["KernelSpec", "Layout", "layout", "cache_dir", "host_key", "COMPILE_COUNT"]

COMPILE_COUNT = {"compiled": 0, "loaded": 0}   # read by the no-recompile test
"""How many kernels this process compiled and how many it loaded from the disk cache."""
_CODEGEN = ("ir.py", "llvm_ops.py", "llvm_kernels.py", "spec.py", "triton_codegen.py")


@functools.lru_cache(maxsize=1)
def host_key() -> str:
    """What compiled code depends on besides the op list: the CPU, its features, the LLVM version and the
    code generator itself (a hash of its source files, so an edited generator never meets stale objects)."""
    import llvmlite.binding as llvm
    h = hashlib.sha256()
    for name in _CODEGEN:
        h.update((Path(__file__).parent / name).read_bytes())
    return (f"{llvm.get_host_cpu_name()}|{llvm.get_host_cpu_features().flatten()}|{llvm.llvm_version_info}|"
            f"{h.hexdigest()[:16]}")


def cache_dir() -> Path:
    """Where compiled kernels are kept: ``$SPIKEFORGE_CACHE/kernels`` or ``~/.cache/spikeforge/kernels``."""
    return cache_root() / "kernels"


@dataclass(frozen=True)
class KernelSpec:
    """What one compiled kernel pair computes: the lowered forward and backward graphs plus, for each
    runtime value, whether it is a per-neuron array (else a scalar) and whether its gradient is needed.

    ``int_bits`` (32 or 64) makes it an integer forward kernel (chip simulation: integer input, state and
    spikes; no backward); 0 is the floating kernel pair of ``bits``."""

    fwd: Graph
    bwd: Graph
    n_state: int
    runtime: tuple[str, ...]
    is_array: tuple[bool, ...]
    need_grad: tuple[bool, ...]
    bits: int = 32
    int_bits: int = 0

    @functools.cached_property
    def key(self) -> str:
        h = hashlib.sha256()
        for part in (self.fwd.digest(), self.bwd.digest(), self.n_state, self.runtime, self.is_array,
                     self.need_grad, self.bits, self.int_bits, host_key()):
            h.update(repr(part).encode())
        return h.hexdigest()[:32]


@dataclass(frozen=True)
class Layout:
    """Slot numbers in ``ptrs`` / ``ints`` / ``scalars``."""

    n_state: int
    arrays: tuple[int, ...]        # runtime indices that are per-neuron arrays
    scalars: tuple[int, ...]       # runtime indices that are scalars
    grad_arrays: tuple[int, ...]   # array runtimes whose gradient is wanted
    grad_scalars: tuple[int, ...]  # scalar runtimes whose gradient is wanted

    # ints: T, N, blk_lo, blk_hi, B, K, x_stride, flags, P (the arrays' period: llvm_kernels.PERIODIC_FLAG)
    INTS = 9

    # pointer slots, forward: x, s, state_in*, state_out*, ckpt*, arrays*
    # backward: x, gs, gx, ckpt*, gstate_final*, gstate0*, arrays*, garrays*, partials, work


def layout(spec: KernelSpec) -> Layout:
    arrays = tuple(i for i, a in enumerate(spec.is_array) if a)
    scalars = tuple(i for i, a in enumerate(spec.is_array) if not a)
    return Layout(spec.n_state, arrays, scalars,
                  tuple(i for i in arrays if spec.need_grad[i]), tuple(i for i in scalars if spec.need_grad[i]))



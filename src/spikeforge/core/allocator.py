"""Keep freed memory for the next training step instead of handing it back to the OS and faulting it in again.

glibc's ``malloc`` serves a large block (above a threshold that starts at 128 KiB and rises to the largest block
freed so far) with ``mmap`` and unmaps it on ``free``; it also returns the top of its heap once more than twice
that threshold is free there. A training step allocates and frees the same activation-sized blocks every time,
so each step touches fresh pages again: on ``sew_resnet_tiny`` (event frames, T = 10, B = 32) about 35,000
page faults per step, 20–30% of the step's time on the two-core machine this was measured on.
``keep_freed_memory()`` fixes the threshold at its maximum (32 MiB, so blocks up to that size come from the heap)
and stops trimming, so the memory of one step is reused by the next; the RSS high-water mark is unchanged, but
the process does not shrink between steps. ``fit`` calls it when a run starts; ``SPIKEFORGE_MALLOC=system``
leaves the allocator as it is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

from .errors import UserError

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20       # glibc's largest accepted value on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = (1 << 31) - 1  # an int: keep up to 2 GiB free at the top of the heap

_done: str | None | bool = False


def keep_freed_memory() -> str | None:
    """Set glibc's thresholds as the module docstring says (once per process). Returns ``None`` when set, else
    why not (not glibc, or ``SPIKEFORGE_MALLOC=system``); another value of ``SPIKEFORGE_MALLOC`` is a
    ``UserError``."""
    global _done
    mode = os.environ.get("SPIKEFORGE_MALLOC", "")
    if mode not in ("", "kept", "system"):
        raise UserError(f"SPIKEFORGE_MALLOC={mode!r}: expected 'system' (glibc's defaults) or 'kept' (the default)")
    if _done is not False:
        return _done  # type: ignore[return-value]
    if mode == "system":
        _done = "SPIKEFORGE_MALLOC=system"
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        if not hasattr(libc, "gnu_get_libc_version"):   # another libc's mallopt takes other parameters
            raise AttributeError("not glibc")
    except (OSError, AttributeError):
        _done = "the C library is not glibc"
        return _done
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    _done = None if ok else "glibc refused the thresholds"
    return _done

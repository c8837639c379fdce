"""Reusable output buffers for the hot path.

Fresh memory is slow to touch (page faults: ~2.5 GB/s on the 2-core machines this was measured on,
slower than the kernels themselves), so outputs, checkpoints and gradients come from a pool. A buffer
is handed out again only when nothing but the pool refers to its storage — checked on every request
with the storage's use count — so a tensor someone still holds (a spike train a later layer saved for
backward, a ``.grad``) is never overwritten. Outputs are fresh tensor objects sharing the pooled storage
(``Tensor.set_``), not views, so callers may modify them in place.

A gradient hand-off saves one more buffer per neuron followed by a pooling layer: inside ``handoff()``, a
pooling kernel marks the input gradient it writes in backward as given (``give``), and a neuron kernel whose
spikes went to that pool alone writes its own input gradient over it (``receive``) instead of into a new
buffer. The kernels read each element of the incoming gradient before writing the same element of theirs, so
the result is unchanged. Only code that keeps the spikes out of everyone else's sight may open the scope
(``layers.fused_bn.bn_neuron`` with a ``pool``, whose ``handoff_why_not`` says when it does not).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import Tensor

__all__ = ["BufferPool", "POOL", "handoff", "handing_off"]


def _uses(t: Tensor) -> int:
    return int(torch._C._storage_Use_Count(t.untyped_storage()._cdata))


class BufferPool:
    """``take(shape, dtype)`` returns a tensor backed by a free pooled storage, or a new one."""

    def __init__(self, per_key: int = 4) -> None:
        self.per_key = per_key
        self._bufs: dict[tuple[int, torch.dtype], list[tuple[Tensor, int]]] = {}
        self._lock = threading.Lock()
        self._given: set[int] = set()     # storages of pooled buffers marked by ``give``
        self.hits = 0
        self.misses = 0
        self.received = 0

    def take(self, shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
        numel = 1
        for s in shape:
            numel *= int(s)
        key = (numel, dtype)
        with self._lock:
            slots = self._bufs.setdefault(key, [])
            for buf, baseline in slots:
                if _uses(buf) == baseline:
                    self.hits += 1
                    self._given.discard(buf.data_ptr())
                    return torch.empty(0, dtype=dtype).set_(buf.untyped_storage(), 0, shape)  # type: ignore[call-overload]
            buf = torch.empty(numel, dtype=dtype)
            if len(slots) < self.per_key:
                slots.append((buf, _uses(buf)))
            self.misses += 1
            return torch.empty(0, dtype=dtype).set_(buf.untyped_storage(), 0, shape)  # type: ignore[call-overload]

    def give(self, t: Tensor) -> None:
        """Mark the pooled buffer under ``t`` as handed to the kernel that receives ``t`` as its gradient (a
        tensor that is not a pooled buffer is left unmarked)."""
        ptr = t.untyped_storage().data_ptr()
        with self._lock:
            if any(buf.data_ptr() == ptr for slots in self._bufs.values() for buf, _ in slots):
                self._given.add(ptr)

    def receive(self, t: Tensor) -> bool:
        """Whether ``t`` is the whole of a buffer marked by ``give``, unmarking it (so once per ``give``): the
        caller may then write over it."""
        st = t.untyped_storage()
        ptr = st.data_ptr()
        with self._lock:
            if ptr not in self._given:
                return False
            self._given.discard(ptr)
            whole = t.data_ptr() == ptr and t.is_contiguous() and t.numel() * t.element_size() == st.nbytes()
            self.received += whole
            return whole

    def clear(self) -> None:
        """Drop every pooled buffer (memory held by callers is unaffected)."""
        with self._lock:
            self._bufs.clear()
            self._given.clear()

    def nbytes(self) -> int:
        with self._lock:
            return sum(b.numel() * b.element_size() for slots in self._bufs.values() for b, _ in slots)


POOL = BufferPool()
"""The process's pool of reusable kernel work buffers."""

_HANDOFF: ContextVar[bool] = ContextVar("spikeforge_gradient_handoff", default=False)


@contextmanager
def handoff() -> Iterator[None]:
    """Within: pooling kernels ``give`` their input gradient, neuron kernels may ``receive`` one (module
    docstring). Read when the kernels run forward; their backward may run anywhere later."""
    token = _HANDOFF.set(True)
    try:
        yield
    finally:
        _HANDOFF.reset(token)


def handing_off() -> bool:
    """Whether the caller runs inside ``handoff()``."""
    return _HANDOFF.get()

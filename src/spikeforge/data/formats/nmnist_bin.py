"""N-MNIST / N-Caltech101 ATIS ``.bin``: headerless 40-bit events (Orchard et al. 2015).

Each event is 5 bytes::

    byte0 = x   byte1 = y   byte2 = p (bit 7, 1 = ON) | t[22:16]   byte3 = t[15:8]   byte4 = t[7:0]

An event with ``y == 240`` is a timestamp-overflow marker, not a pixel: it is dropped and every
later timestamp gains ``overflow_increment``. The 23-bit counter wraps at 2**23 µs, so that is the
default; Orchard's ``eventvision.py`` (and Tonic, which copies it) add 2**13 — pass
``overflow_increment=2**13`` to reproduce them. Real N-MNIST samples (~0.3 s) never contain
the marker.

Orchard, Jayawant, Cohen, Thakor (2015), "Converting static image datasets to spiking neuromorphic
datasets using saccades", Front. Neurosci. 9:437.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from ..events import EVENT_DTYPE, Events
from ._io import finish
from .errors import EventFormatError

__all__ = ["NAME", "EXTENSIONS", "NMNIST_SIZE", "decode", "encode", "sniff"]

NAME = "nmnist"
EXTENSIONS = (".bin",)
NMNIST_SIZE = (34, 34)
ATIS_SIZE = (304, 240)          # the sensor the .bin format comes from (y = 240 is the marker row)
OVERFLOW_Y = 240
T_BITS = 23


def sniff(head: bytes) -> bool:
    """The format has no magic; detection goes by the ``.bin`` extension."""
    return False


@njit(cache=True, nogil=True)
def _unpack(r, out):  # pragma: no cover - jitted
    """Records → events assuming no overflow marker (branch-free, so it vectorises).

    Returns ``(markers seen, max x, max y)``; when markers > 0 the output is discarded and
    :func:`_unpack_markers` runs instead (markers never occur in real N-MNIST samples).
    """
    markers = 0
    mx = np.uint8(0)
    my = np.uint8(0)
    for i in range(r.shape[0]):
        b2 = r[i, 2]
        x = r[i, 0]
        y = r[i, 1]
        e = out[i]
        e.t = (np.int64(b2 & 0x7F) << 16) | (np.int64(r[i, 3]) << 8) | np.int64(r[i, 4])
        e.x = x
        e.y = y
        e.p = b2 >> 7
        mx = max(mx, x)
        my = max(my, y)
        markers += y == OVERFLOW_Y
    return markers, mx, my


@njit(cache=True, nogil=True)
def _unpack_markers(r, inc, out):  # pragma: no cover - jitted
    """Records → events, dropping markers and adding ``inc`` to all later timestamps.

    Returns ``(max x, max y)`` of the events.
    """
    n = 0
    add = np.int64(0)
    mx = 0
    my = 0
    for i in range(r.shape[0]):
        if r[i, 1] == OVERFLOW_Y:
            add += inc
            continue
        b2 = r[i, 2]
        e = out[n]
        e.t = ((np.int64(b2 & 0x7F) << 16) | (np.int64(r[i, 3]) << 8) | np.int64(r[i, 4])) + add
        e.x = r[i, 0]
        e.y = r[i, 1]
        e.p = b2 >> 7
        mx = max(mx, r[i, 0])
        my = max(my, r[i, 1])
        n += 1
    return mx, my


def decode(data: bytes, source: str = "<bytes>", *, sensor_size: tuple[int, ...] | None = None,
           overflow_increment: int = 1 << T_BITS, strict: bool = True) -> Events:
    """Decode ``.bin`` bytes into events (one jitted pass; no Python loop per event).

    The file states no sensor size: it is ``sensor_size`` when given, else ``(34, 34)`` (N-MNIST) when every
    event fits, else the ATIS sensor the format comes from, 304×240 (N-Caltech101 datasets pass their own).
    Events are checked against what the format guarantees: inside that sensor and in time order.

    Args:
        data: the whole file, ``5·N`` bytes.
        sensor_size: ``(W, H[, 2])`` the recording is known to have.
        overflow_increment: µs added to later timestamps at each ``y == 240`` marker.
        strict: raise ``EventFormatError`` at the first event that breaks an invariant, or at a record the file
            ends inside (default); ``False`` drops such events and counts them in ``meta["dropped"]``, and reads a
            cut file up to its last whole record (``"truncated"``: the bytes of the cut record).

    Returns:
        :class:`Events`; ``meta`` has ``overflow_markers`` (count). Shapes: ``events`` is ``[N]``.
    """
    n_bytes = len(data)
    cut = n_bytes % 5                   # bytes of a record the file was cut inside
    if cut and strict:
        raise EventFormatError(source, n_bytes - cut,
                               "a whole number of 5-byte events (file size a multiple of 5)",
                               f"{n_bytes} bytes ({n_bytes // 5} whole events), {cut} left over: the file "
                               "was cut", NAME)
    r = np.frombuffer(data, dtype=np.uint8, count=n_bytes - cut).reshape(-1, 5)
    out = np.empty(r.shape[0], dtype=EVENT_DTYPE)
    markers, mx, my = _unpack(r, out)
    mx, my = int(mx), int(my)
    if markers:
        out = np.empty(r.shape[0] - markers, dtype=EVENT_DTYPE)
        mx, my = (int(v) for v in _unpack_markers(r, overflow_increment, out))
    if sensor_size is None:
        W, H = NMNIST_SIZE if mx < 34 and my < 34 else ATIS_SIZE
    else:
        W, H = int(sensor_size[0]), int(sensor_size[1])
    def offset_of(i: int) -> int:       # event i's record (markers are records without an event); errors only
        return 5 * (int(np.flatnonzero(r[:, 1] != OVERFLOW_Y)[i]) if markers else i)

    out, dropped = finish(out, source, NAME, W=W, H=H, ordered=True, strict=strict, offset_of=offset_of)
    meta: dict[str, Any] = {"format": NAME, "overflow_markers": int(markers)}
    if cut:
        dropped["truncated"] = cut
    if dropped:
        meta["dropped"] = dropped
    return Events(out, (W, H, 2), meta)


def encode(ev: Events) -> list[bytes]:
    """Pack events into ``.bin`` bytes, inserting an overflow marker each time ``t`` crosses 2**23.

    Requires ``x, y <= 255``, ``y != 240`` (the marker row), ``t >= 0``; beyond 2**23 µs the events
    must be in time order (markers only move time forward). Read back with the default increment.
    """
    a = ev.events
    if a.size == 0:
        return [b""]
    x, y, t = a["x"].astype(np.int64), a["y"].astype(np.int64), a["t"].astype(np.int64)
    if x.max() > 255 or y.max() > 255:
        raise ValueError("write nmnist: x and y must be <= 255 (one byte each), "
                         f"got max x={x.max()}, y={y.max()}")
    if np.any(y == OVERFLOW_Y):
        raise ValueError(f"write nmnist: y = {OVERFLOW_Y} is the overflow marker row; "
                         f"event {int(np.flatnonzero(y == OVERFLOW_Y)[0])} has it")
    if t.min() < 0:
        raise ValueError(f"write nmnist: timestamps must be >= 0, got {t.min()}")
    wrap = t >> T_BITS
    if wrap.max() > 0 and np.any(np.diff(wrap) < 0):
        raise ValueError("write nmnist: events past 2**23 µs must be sorted by time "
                         "(overflow markers cannot move time backwards)")
    rec = np.empty((a.size, 5), dtype=np.uint8)
    rec[:, 0], rec[:, 1] = x, y
    low = t & ((1 << T_BITS) - 1)
    rec[:, 2] = ((low >> 16) | (a["p"].astype(np.int64) << 7)).astype(np.uint8)
    rec[:, 3], rec[:, 4] = (low >> 8) & 0xFF, low & 0xFF
    if wrap.max() > 0:
        steps = np.diff(wrap, prepend=0)              # markers needed before each event
        rec = np.insert(rec, np.repeat(np.arange(a.size), steps), [0, OVERFLOW_Y, 0, 0, 0], axis=0)
    return [rec.tobytes()]

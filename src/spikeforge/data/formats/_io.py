"""Plumbing shared by the format modules: reading files, text headers, sensor checks, atomic writes.

Nothing here knows a format; each helper raises :class:`EventFormatError` with the caller's
``source`` and ``fmt`` so the message still names the file, the byte and the expectation.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable

import numpy as np
from numba import njit

from ..events import Events
from .errors import EventFormatError

__all__ = ["Source", "load_bytes", "read_file", "text_header", "header_value", "to_int",
           "smallest_size", "as_events", "finish", "longest_ordered"]

Source = str | os.PathLike | bytes | bytearray | memoryview

# A header line is text: no control characters but tab and CR (bytes >= 0x80 are allowed, UTF-8
# comments exist). Binary event words that happen to start with '%' or '#' fail this test.
_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MAX_LINE = 1 << 16
_O_READ = os.O_RDONLY | getattr(os, "O_BINARY", 0)     # O_BINARY exists on Windows only


def read_file(path: str, limit: int = -1) -> bytes:
    """The whole file (or its first ``limit`` bytes) with the fewest system calls.

    ``os.read`` sized by ``fstat`` saves the buffered-IO setup of ``open()``, a third of the cost
    of reading a 20 kB N-MNIST sample; short reads (pipes, >2 GiB files) loop to the end.
    """
    fd = os.open(path, _O_READ)
    try:
        want = os.fstat(fd).st_size if limit < 0 else limit
        data = os.read(fd, want) if want > 0 else b""
        if limit >= 0 or 0 < len(data) == want:
            return data
        parts = [data]
        while chunk := os.read(fd, 1 << 24):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def load_bytes(src: Source) -> tuple[bytes, str]:
    """Return the file's bytes (or a copy of the given buffer) and the name errors should use."""
    if isinstance(src, (bytes, bytearray, memoryview)):
        return bytes(src), "<bytes>"
    path = os.fspath(src)
    return read_file(path), str(path)


def text_header(data: bytes, prefix: bytes, *, end_markers: tuple[bytes, ...] = (), start: int = 0,
                source: str | None = None, fmt: str | None = None,
                strict: bool = True) -> tuple[list[str], int, int]:
    """Split off the leading ``prefix`` text lines (``%`` or ``#``) of a binary file.

    A line ends at ``\\n``; the header ends at the first line that does not start with ``prefix``,
    is not text (a binary word that happens to begin with the prefix byte), is longer than 64 KiB,
    or right after a line starting with one of ``end_markers`` (e.g. ``% end``).

    A header line that the file ends in before its ``\\n`` (a file cut inside its header): without ``source``
    (sniffing a file's head) it is taken as the last line; with ``source``, ``strict`` raises
    ``EventFormatError`` and otherwise the line is left out.

    Returns:
        (lines without their prefix and line ending, byte offset of the body, bytes of the header line the file
        was cut inside and that was left out: 0, or ``len(data) - body``).
    """
    pos, n = start, len(data)
    lines: list[str] = []
    while pos < n and data.startswith(prefix, pos):
        end = data.find(b"\n", pos, pos + _MAX_LINE)
        if end < 0 and n - pos > _MAX_LINE:
            break
        stop = n if end < 0 else end + 1
        raw = data[pos:stop].rstrip(b"\r\n")
        if _CONTROL.search(raw) is not None:
            break
        if end < 0 and source is not None:
            if not strict:
                return lines, pos, n - pos
            raise EventFormatError(source, n, "the end of the header line that starts at byte "
                                   f"{pos} (a line ending)", "the end of the file: it was cut inside its header",
                                   fmt)
        lines.append(raw[len(prefix):].decode("latin-1"))
        pos = stop
        if end_markers and raw.startswith(end_markers):
            break
    return lines, pos, 0


def to_int(s: str | None) -> int | None:
    """A small non-negative ASCII decimal as int, else None (header text is untrusted)."""
    s = (s or "").strip()
    return int(s) if 0 < len(s) <= 18 and s.isascii() and s.isdecimal() else None


def header_value(lines: Iterable[str], key: str) -> str | None:
    """Value after ``key`` in the first header line starting with it (case-insensitive), or None."""
    k = key.lower()
    for line in lines:
        s = line.strip()
        if s.lower().startswith(k):
            return s[len(key):].strip().lstrip(":=").strip()
    return None


def smallest_size(ev: np.ndarray) -> tuple[int, int]:
    """``(W, H)`` of the smallest sensor holding every event (``(0, 0)`` for none): for files that state no size."""
    return (int(ev["x"].max()) + 1, int(ev["y"].max()) + 1) if ev.size else (0, 0)


@njit(cache=True, nogil=True)
def _first_violation(t, x, y, W, H, ordered):  # pragma: no cover - jitted
    """Index of the first event that breaks ``finish``'s checks, or -1: one pass, stops at the first."""
    for i in range(t.size):
        if t[i] < 0 or x[i] >= W or y[i] >= H or (ordered and i > 0 and t[i] < t[i - 1]):
            return i
    return -1


@njit(cache=True, nogil=True)
def _longest_ordered(t):  # pragma: no cover - jitted
    """Mask of a longest non-decreasing subsequence of ``t``: of those, the one whose events come earliest.

    Patience sorting from the back, O(N log N): ``tails[k]`` is the largest first value of a non-decreasing
    subsequence of length ``k + 1`` seen so far (non-increasing in ``k``), so ``longest[i]``, the length of the
    longest one starting at ``i``, is one more than the count of ``tails`` ``>= t[i]``. A forward pass then keeps,
    for each length still needed, the first event that has it and is not earlier than the last one kept.
    """
    n = t.size
    keep = np.zeros(n, dtype=np.bool_)
    longest = np.empty(n, dtype=np.int64)
    tails = np.empty(n, dtype=t.dtype)
    m = 0
    for i in range(n - 1, -1, -1):
        v = t[i]
        lo, hi = 0, m
        while lo < hi:
            mid = (lo + hi) >> 1
            if tails[mid] >= v:
                lo = mid + 1
            else:
                hi = mid
        tails[lo] = v
        m = max(m, lo + 1)
        longest[i] = lo + 1
    need = m
    last = t[0] if n else 0                    # compared only once an event is kept (need < m)
    for i in range(n):
        if need == 0:
            break
        if longest[i] == need and (need == m or t[i] >= last):
            keep[i] = True
            last = t[i]
            need -= 1
    return keep


def longest_ordered(t: np.ndarray) -> np.ndarray:
    """Boolean mask keeping a longest non-decreasing subsequence of ``t`` (the fewest events dropped to make
    ``t[mask]`` sorted; among equally long ones, the one keeping the earliest events)."""
    return _longest_ordered(np.ascontiguousarray(t))


def finish(ev: np.ndarray, source: str, fmt: str, *, W: int, H: int, ordered: bool, strict: bool,
           offset_of: Callable[[int], int] | None = None) -> tuple[np.ndarray, dict[str, int]]:
    """Check what the format guarantees of decoded events: times ``>= 0``, non-decreasing where the format
    writes them in order (``ordered``), coordinates inside the ``W × H`` sensor.

    ``strict``: raise ``EventFormatError`` at the first violation, naming its byte (``offset_of``: event index →
    byte, where the format has fixed places) or its event index. Otherwise drop every violating event — for
    order, the fewest events that leave the rest in order (a longest non-decreasing subsequence of the times is
    kept, so one timestamp corrupted forward costs that one event, not every event after it) — and return the
    counts by reason (for ``meta``).

    Returns:
        ``(events kept, {"negative_time": n, "outside_sensor": n, "backward_time": n})`` (only non-zero counts).
    """
    if ev.size == 0 or _first_violation(ev["t"], ev["x"], ev["y"], W, H, ordered) < 0:
        return ev, {}                              # the common case: one pass, nothing allocated
    t = ev["t"]
    neg = t < 0
    out = (ev["x"] >= W) | (ev["y"] >= H)
    back = np.zeros(ev.size, dtype=bool)
    if ordered:
        back[1:] = t[1:] < np.maximum.accumulate(t)[:-1]
    bad = neg | out | back
    if not bad.any():
        return ev, {}
    if strict:
        i = int(np.flatnonzero(bad)[0])
        if neg[i]:
            what, got = "a timestamp >= 0", f"t={int(t[i])}"
        elif out[i]:
            what, got = f"coordinates inside the {W}×{H} sensor", f"x={int(ev['x'][i])}, y={int(ev['y'][i])}"
        else:
            what = "timestamps in order (this format writes events in time order)"
            got = f"t={int(t[i])} after t={int(np.max(t[:i]))}"
        where = f"event {i}"
        raise EventFormatError(source, None if offset_of is None else int(offset_of(i)), what, got, fmt, where)
    dropped = {"negative_time": int(neg.sum()), "outside_sensor": int((out & ~neg).sum())}
    keep = ~(neg | out)
    kept = ev[keep]
    if ordered and kept.size > 1:
        kt = kept["t"]
        if bool(np.any(kt[1:] < kt[:-1])):
            ok = longest_ordered(kt)
            dropped["backward_time"] = int(kept.size - np.count_nonzero(ok))
            kept = kept[ok]
    return kept, {k: v for k, v in dropped.items() if v}


def as_events(events: Events | np.ndarray, sensor_size: tuple[int, ...] | None,
              fmt: str) -> Events:
    """Normalise a writer's input to :class:`Events` (a bare array needs ``sensor_size``)."""
    if isinstance(events, Events):
        if sensor_size is not None:
            W, H = int(sensor_size[0]), int(sensor_size[1])
            return Events(events.events, (W, H, 2), events.meta)
        return events
    arr = np.asarray(events)
    if arr.dtype.names is None or not {"t", "x", "y", "p"} <= set(arr.dtype.names):
        raise ValueError(f"write {fmt}: expected Events or a structured array with t, x, y, p, "
                         f"got dtype {arr.dtype}")
    if sensor_size is None:
        raise ValueError(f"write {fmt}: a bare event array needs sensor_size=(W, H, 2)")
    W, H = int(sensor_size[0]), int(sensor_size[1])
    return Events(arr, (W, H, 2))

"""Prophesee RAW EVT 3.0: ``%`` header, then 16-bit little-endian words, ``type = w >> 12``.

The decoder is stateful (y, base x, polarity, time)::

    0x0 EVT_ADDR_Y     y = w & 0x7FF
    0x2 EVT_ADDR_X     emit (x = w & 0x7FF, p = bit 11) at the current y, t
    0x3 VECT_BASE_X    base_x = w & 0x7FF, p = bit 11
    0x4 VECT_12        emit base_x + k for each set bit k of w & 0xFFF; base_x += 12
    0x5 VECT_8         emit base_x + k for each set bit k of w & 0xFF;  base_x += 8
    0x6 EVT_TIME_LOW   tl = w & 0xFFF
    0x8 EVT_TIME_HIGH  th = w & 0xFFF; th < previous th ⇒ loops += 1 (wrap every 2**24 µs)
    0x7 CONTINUED_4, 0xA EXT_TRIGGER, 0xE OTHERS, 0xF CONTINUED_12   skipped
    0x1, 0x9, 0xB, 0xC, 0xD                                          an error (undefined)

    t = (loops << 24) | (th << 12) | tl

A vector word emits up to 12 events, so two numba passes run: a branch-free count, then the
stateful fill into the exactly sized output (no Python loop per word).

What the format guarantees is checked: events inside the declared sensor and in time order, and no
impossible time jump — the camera writes a TIME_HIGH every 4096 µs (real files step by 0 or 1), so one that
moves time by more than ``MAX_STEP`` (256 · 4096 µs ≈ 1 s, across the 24-bit wrap included) is a damaged
word. A header cut before its line end is an error. ``strict=False`` skips damaged words and events and
counts them.

Prophesee, "EVT 3.0 Format": https://docs.prophesee.ai/stable/data/encoding_formats/evt3.html
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..events import EVENT_DTYPE, Events
from ._prophesee import parse_header, raw_result, raw_words, time_high_fillers
from .errors import EventFormatError

__all__ = ["NAME", "EXTENSIONS", "decode", "encode", "sniff"]

NAME = "evt3"
EXTENSIONS = (".raw",)
ERR_TYPE, ERR_OUTSIDE, ERR_OVERRUN, ERR_JUMP = 1, 2, 3, 4
MAX_STEP = 256              # TIME_HIGH units (4096 µs) one TIME_HIGH may advance: ≈ 1.05 s


def sniff(head: bytes) -> bool:
    from ._prophesee import raw_kind
    return raw_kind(head) == "evt3"


_POPCOUNT = np.array([bin(i).count("1") for i in range(1 << 12)], dtype=np.int64)


@njit(cache=True, nogil=True)
def _count(words):  # pragma: no cover - jitted
    """Events the words can emit (branch-free: ADDR_X words + set bits of VECT_12 / VECT_8)."""
    n = 0
    for i in range(words.size):
        w = words[i]
        typ = w >> 12
        n += (typ == 2) + (typ == 4) * _POPCOUNT[w & 0xFFF] + (typ == 5) * _POPCOUNT[w & 0xFF]
    return n


@njit(cache=True, nogil=True)
def _kernel(words, W, H, strict, out, skipped):  # pragma: no cover - jitted
    """Decode into ``out`` (sized by :func:`_count`); returns ``(events, bad word or -1, code)``; with ``strict``
    off, bad words and events are skipped and counted in ``skipped[code]``."""
    n = 0
    y = 0
    base = 0
    pol = 0
    tl = np.int64(0)
    th = np.int64(0)
    last_th = np.int64(-1)
    loops = np.int64(0)
    t = np.int64(0)
    for i in range(words.size):
        w = np.int64(words[i])
        typ = w >> 12
        if typ == 0x0:
            y = w & 0x7FF
        elif typ == 0x2:
            x = w & 0x7FF
            if x >= W or y >= H:
                if strict:
                    return n, i, ERR_OUTSIDE
                skipped[ERR_OUTSIDE] += 1
                continue
            if n >= out.size:
                return n, i, ERR_OVERRUN
            e = out[n]
            e.t = t
            e.x = x
            e.y = y
            e.p = (w >> 11) & 1
            n += 1
        elif typ == 0x3:
            base = w & 0x7FF
            pol = (w >> 11) & 1
        elif typ == 0x4 or typ == 0x5:
            width = 12 if typ == 0x4 else 8
            bits = w & ((1 << width) - 1)
            if bits != 0:
                top = base + width - 1
                while top >= base and not (bits >> (top - base)) & 1:
                    top -= 1
                if strict and (top >= W or y >= H):
                    return n, i, ERR_OUTSIDE
                if n + width > out.size and n + _POPCOUNT[bits] > out.size:
                    return n, i, ERR_OVERRUN
                for k in range(width):
                    if (bits >> k) & 1:
                        if base + k >= W or y >= H:
                            skipped[ERR_OUTSIDE] += 1
                            continue
                        e = out[n]
                        e.t = t
                        e.x = base + k
                        e.y = y
                        e.p = pol
                        n += 1
            base += width
        elif typ == 0x6:
            tl = w & 0xFFF
            t = (loops << 24) | (th << 12) | tl
        elif typ == 0x8:
            v = w & 0xFFF
            if last_th >= 0 and ((v - last_th) & 0xFFF) > MAX_STEP:
                if strict:
                    return n, i, ERR_JUMP
                skipped[ERR_JUMP] += 1
                continue
            if v < last_th:
                loops += 1
            last_th = v
            th = v
            t = (loops << 24) | (th << 12) | tl
        elif typ != 0x7 and typ != 0xA and typ != 0xE and typ != 0xF:
            if strict:
                return n, i, ERR_TYPE
            skipped[ERR_TYPE] += 1
    return n, -1, 0


def decode(data: bytes, source: str = "<bytes>", *, sensor_size: tuple[int, ...] | None = None,
           strict: bool = True) -> Events:
    """Decode EVT 3.0 bytes.

    Args:
        strict: raise ``EventFormatError`` at the first damaged word or event, or where the file ends inside
            its header or a word (default); ``False`` skips them and counts them in ``meta["dropped"]``, and reads
            a cut file up to its last whole word (``"truncated"``: the bytes after it; ``"header_cut"``: the
            file ends inside a header line).

    Returns:
        :class:`Events` ``[N]``; ``meta`` has the ``header`` lines. Sensor size: ``sensor_size=``,
        else ``% geometry`` / ``% format``, else the smallest sensor holding the events.
    """
    h = parse_header(data, source, NAME, strict)
    if h.evt not in (None, "3.0"):
        raise EventFormatError(source, 0, "an EVT 3.0 header ('% evt 3.0')", f"evt {h.evt}", NAME)
    body = h.body
    words, cut = raw_words(data, h, source, NAME, strict, "<u2")
    size = (int(sensor_size[0]), int(sensor_size[1])) if sensor_size is not None else h.size
    W, H = size if size is not None else (1 << 16, 1 << 16)
    out = np.empty(_count(words), dtype=EVENT_DTYPE)
    skipped = np.zeros(5, dtype=np.int64)
    n, bad, code = _kernel(words, W, H, strict, out, skipped)
    if code == ERR_OVERRUN:  # pragma: no cover - _count and _kernel disagree: a bug, not bad input
        raise AssertionError(f"{source}: evt3 decoder overran its output at word {bad}")
    if bad >= 0:
        w = int(words[bad])
        if code == ERR_TYPE:
            raise EventFormatError(source, body + 2 * bad, "an EVT 3.0 word type in "
                                   "{0x0, 0x2..0x8, 0xA, 0xE, 0xF}", hex(w >> 12), NAME)
        if code == ERR_JUMP:
            raise EventFormatError(source, body + 2 * bad, f"a TIME_HIGH within {MAX_STEP} steps of 4096 µs of "
                                   "the previous one (the camera writes one every 4096 µs)",
                                   f"time_high {w & 0xFFF}", NAME)
        raise EventFormatError(source, body + 2 * bad, f"coordinates inside the {W}×{H} sensor",
                               f"word {w:#06x} (type {w >> 12:#x})", NAME)
    return raw_result(out[:n], size, h, source, NAME, strict, {"outside_sensor": int(skipped[ERR_OUTSIDE]),
                                                               "time_jump": int(skipped[ERR_JUMP]),
                                                               "unknown_word": int(skipped[ERR_TYPE]),
                                                               "header_cut": int(h.cut > 0),
                                                               "truncated": h.cut or cut})


def encode(ev: Events) -> list[bytes]:
    """Write EVT 3.0 with single-event words (ADDR_Y, ADDR_X) and TIME_HIGH / TIME_LOW on change.

    No vector words are produced (the reader's vector path is tested on hand-made bytes). Events
    must be time-sorted; each wrap of the 24-bit clock is written as a smaller TIME_HIGH, as a camera
    does, and gaps (a start at ``t >= 2**24`` included) are crossed with extra TIME_HIGH words, at most
    ``MAX_STEP`` apart, so that the reader sees no impossible jump.
    """
    a = ev.events
    W, H = int(ev.sensor_size[0]), int(ev.sensor_size[1])
    head = f"% evt 3.0\n% format EVT3;height={H};width={W}\n% geometry {W}x{H}\n% end\n"
    if a.size == 0:
        return [head.encode("ascii")]
    t = a["t"].astype(np.int64)
    if t.min() < 0 or np.any(np.diff(t) < 0) or t[0] >> 24 > 1 << 20:
        raise ValueError("write evt3: timestamps must be sorted, >= 0 and start below 2**44 µs")
    if a["x"].max() >= 2048 or a["y"].max() >= 2048:
        raise ValueError("write evt3: x and y must be < 2048 (11 bits)")
    hi, tl, y = t >> 12, t & 0xFFF, a["y"].astype(np.int64)
    keep = np.stack([np.r_[True, hi[1:] != hi[:-1]], np.r_[True, tl[1:] != tl[:-1]],
                     np.r_[True, y[1:] != y[:-1]], np.ones(a.size, bool)], axis=1)
    # up to four words per event, in this order: TIME_HIGH, TIME_LOW, ADDR_Y, ADDR_X
    cols = np.empty((a.size, 4), dtype="<u2")
    cols[:, 0] = (0x8 << 12) | (hi & 0xFFF)
    cols[:, 1] = (0x6 << 12) | tl
    cols[:, 2] = y
    cols[:, 3] = (0x2 << 12) | (a["p"].astype(np.int64) << 11) | a["x"].astype(np.int64)
    words = cols[keep]
    starts = np.cumsum(keep.sum(axis=1)) - keep.sum(axis=1)      # each event's first word
    th_at, hv = starts[keep[:, 0]], hi[keep[:, 0]]
    if hv[0] >= 1 << 12:         # the reader counts wraps from 0: start there and step up to the first time
        hv, th_at = np.r_[0, hv], np.r_[0, th_at]
        words = np.insert(words, 0, 0x8 << 12)
        th_at[1:] += 1
    fill, before = time_high_fillers(hv, MAX_STEP)
    words = np.insert(words, th_at[before], ((0x8 << 12) | (fill & 0xFFF)).astype("<u2"))
    return [head.encode("ascii"), words.astype("<u2").tobytes()]

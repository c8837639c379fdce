"""Prophesee RAW EVT 2.0: ``%`` header, then 32-bit little-endian words, ``type = w >> 28``.

::

    0x0 CD_OFF / 0x1 CD_ON   bits 27..22 t[5:0], bits 21..11 x, bits 10..0 y
    0x8 EVT_TIME_HIGH        bits 27..0 t[33:6]          t = (time_high << 6) | t_lsb
    0xA EXT_TRIGGER, 0xE OTHERS, 0xF CONTINUED           skipped
    anything else                                        an error (unknown word type)

CD words before the first TIME_HIGH use time_high = 0 (as faery does). The 34-bit clock wraps every
4.77 h: a TIME_HIGH smaller than the previous one adds 2**34 µs, so timestamps stay monotonic.
The decoder keeps state (time_high), so it is one numba pass into an array sized by the word count.

What the format guarantees is checked: the sensor writes a TIME_HIGH every 64 µs (real files step by 0 or
1), so one that moves time by more than ``MAX_STEP`` (2**14 · 64 µs ≈ 1 s) — forwards, or backwards other
than across the wrap — is a damaged word, not a pause; coordinates lie inside the declared sensor; events
come in time order. ``strict=False`` skips damaged words and such events and counts them.

Prophesee, "EVT 2.0 Format": https://docs.prophesee.ai/stable/data/encoding_formats/evt2.html
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..events import EVENT_DTYPE, Events
from ._prophesee import parse_header, raw_result, raw_words, time_high_fillers
from .errors import EventFormatError

__all__ = ["NAME", "EXTENSIONS", "decode", "encode", "sniff"]

NAME = "evt2"
EXTENSIONS = (".raw",)
_UNBOUNDED = 1 << 11        # x, y are 11-bit: no sensor limit when the header declares none
ERR_TYPE, ERR_OUTSIDE, ERR_JUMP = 1, 2, 3
MAX_STEP = 1 << 14          # TIME_HIGH units (64 µs) one TIME_HIGH may advance: ≈ 1.05 s


def sniff(head: bytes) -> bool:
    from ._prophesee import raw_kind
    return raw_kind(head) == "evt2"


@njit(cache=True, nogil=True)
def _kernel(words, W, H, strict, out, skipped):  # pragma: no cover - jitted
    """One pass (at most one event per word). Returns (events, bad word or -1, error code); with ``strict``
    off, bad words are skipped and counted in ``skipped[code]`` instead."""
    n = 0
    th = np.int64(0)
    last = np.int64(-1)
    loops = np.int64(0)
    for i in range(words.size):
        w = np.int64(words[i])
        typ = w >> 28
        if typ <= 1:
            x = (w >> 11) & 0x7FF
            y = w & 0x7FF
            if x >= W or y >= H:
                if strict:
                    return n, i, ERR_OUTSIDE
                skipped[ERR_OUTSIDE] += 1
                continue
            e = out[n]
            e.t = th | ((w >> 22) & 0x3F)
            e.x = x
            e.y = y
            e.p = typ
            n += 1
        elif typ == 8:
            v = w & 0x0FFFFFFF
            if last >= 0 and ((v - last) & 0x0FFFFFFF) > MAX_STEP:
                if strict:
                    return n, i, ERR_JUMP
                skipped[ERR_JUMP] += 1
                continue
            if v < last:
                loops += 1
            last = v
            th = ((loops << 28) + v) << 6
        elif typ != 0xA and typ != 0xE and typ != 0xF:
            if strict:
                return n, i, ERR_TYPE
            skipped[ERR_TYPE] += 1
    return n, -1, 0


def decode(data: bytes, source: str = "<bytes>", *, sensor_size: tuple[int, ...] | None = None,
           strict: bool = True) -> Events:
    """Decode EVT 2.0 bytes (one jitted pass; the output is at most one event per word).

    Args:
        strict: raise ``EventFormatError`` at the first damaged word or event, or where the file ends inside
            its header or a word (default); ``False`` skips them and counts them in ``meta["dropped"]``, and reads
            a cut file up to its last whole word (``"truncated"``: the bytes after it; ``"header_cut"``: the
            file ends inside a header line).

    Returns:
        :class:`Events` ``[N]``; ``meta`` has the ``header`` lines. Sensor size: ``sensor_size=``,
        else ``% geometry`` / ``% format`` / the camera plugin, else the smallest that holds the
        events.
    """
    h = parse_header(data, source, NAME, strict)
    if h.evt not in (None, "2.0"):
        raise EventFormatError(source, 0, "an EVT 2.0 header ('% evt 2.0')", f"evt {h.evt}", NAME)
    body = h.body
    words, cut = raw_words(data, h, source, NAME, strict, "<u4")
    size = (int(sensor_size[0]), int(sensor_size[1])) if sensor_size is not None else h.size
    W, H = size if size is not None else (_UNBOUNDED, _UNBOUNDED)
    out = np.empty(words.size, dtype=EVENT_DTYPE)
    skipped = np.zeros(4, dtype=np.int64)
    n, bad, code = _kernel(words, W, H, strict, out, skipped)
    if bad >= 0:
        w = int(words[bad])
        if code == ERR_TYPE:
            raise EventFormatError(source, body + 4 * bad, "an EVT 2.0 word type in "
                                   "{0x0, 0x1, 0x8, 0xA, 0xE, 0xF}", hex(w >> 28), NAME)
        if code == ERR_JUMP:
            raise EventFormatError(source, body + 4 * bad, f"a TIME_HIGH within {MAX_STEP} steps of 64 µs of "
                                   "the previous one (the sensor writes one every 64 µs)",
                                   f"time_high {w & 0x0FFFFFFF}", NAME)
        raise EventFormatError(source, body + 4 * bad, f"coordinates inside the {W}×{H} sensor",
                               f"x={(w >> 11) & 0x7FF}, y={w & 0x7FF}", NAME)
    out = out[:n] if 2 * n >= words.size else out[:n].copy()
    return raw_result(out, size, h, source, NAME, strict, {"outside_sensor": int(skipped[ERR_OUTSIDE]),
                                                           "time_jump": int(skipped[ERR_JUMP]),
                                                           "unknown_word": int(skipped[ERR_TYPE]),
                                                           "header_cut": int(h.cut > 0),
                                                           "truncated": h.cut or cut})


def encode(ev: Events) -> list[bytes]:
    """Write EVT 2.0 words: a TIME_HIGH whenever ``t >> 6`` changes (events must be time-sorted)."""
    a = ev.events
    W, H = int(ev.sensor_size[0]), int(ev.sensor_size[1])
    t = a["t"].astype(np.int64)
    if a.size and (t.min() < 0 or np.any(np.diff(t) < 0) or t.max() >= 1 << 34):
        raise ValueError("write evt2: timestamps must be sorted and in [0, 2**34) µs")
    if a.size and (a["x"].max() >= 2048 or a["y"].max() >= 2048):
        raise ValueError("write evt2: x and y must be < 2048 (11 bits)")
    head = f"% evt 2.0\n% format EVT2;height={H};width={W}\n% geometry {W}x{H}\n% end\n"
    hi = t >> 6
    new = np.r_[True, hi[1:] != hi[:-1]] if a.size else np.zeros(0, bool)
    cd = ((a["p"].astype(np.uint32) << 28) | ((t & 0x3F).astype(np.uint32) << 22)
          | (a["x"].astype(np.uint32) << 11) | a["y"].astype(np.uint32))
    th = (np.uint32(8) << 28) | (hi[new] & 0x0FFFFFFF).astype(np.uint32)
    words = np.empty(a.size + th.size, dtype="<u4")
    slots = np.arange(a.size) + np.cumsum(new)          # each CD after its TIME_HIGH
    words[slots] = cd
    th_at = np.flatnonzero(new) + np.arange(th.size)
    words[th_at] = th
    fill, before = time_high_fillers(hi[new], MAX_STEP)  # a gap is crossed in steps the reader accepts
    words = np.insert(words, th_at[before], (np.uint32(8) << 28) | (fill & 0x0FFFFFFF).astype(np.uint32))
    return [head.encode("ascii"), words.astype("<u4").tobytes()]

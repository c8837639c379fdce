"""Prophesee DAT (N-CARS, Gen1/Gen4 automotive): ``%`` header, type/size bytes, 8-byte events.

After the header come two bytes, ``event_type`` (0 = Event2D, 12 = EventCD; both are CD events) and
``event_size`` (8), then little-endian events::

    u32 t (µs) | u32 w:  x = w & 0x3FFF  y = (w >> 14) & 0x3FFF  p = (w >> 28) & 0xF  (Version 2)

Files before Version 2 (no ``% Version`` line, as Prophesee's toolbox assumes) pack
``x = w & 0x1FF, y = (w >> 9) & 0xFF, p = (w >> 17) & 1``: at most 512×256 addresses, so a header that
declares a larger sensor without ``% Version 2`` is inconsistent (a damaged header) and refused.
Polarity must be 0 or 1. The sensor size is ``sensor_size=`` when given, else ``% Width`` / ``% Height``;
N-CARS files state none: their ``Event2D`` type (0) comes from the ATIS sensor, 304×240; an ``EventCD`` file
without a size is bounded only by its addresses. Events must lie inside the sensor and be in time order.

Prophesee automotive dataset toolbox, ``src/io/dat_events_tools.py``.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import numpy as np
from numba import njit

from ..events import EVENT_DTYPE, Events
from ._io import finish
from ._prophesee import ProphHeader, parse_header
from .errors import EventFormatError

__all__ = ["NAME", "EXTENSIONS", "decode", "encode", "sniff"]

NAME = "dat"
EXTENSIONS = (".dat",)
CD_TYPES = (0x00, 0x0C)
ATIS_SIZE = (304, 240)
_RAW = np.dtype([("t", "<u4"), ("w", "<u4")])


def sniff(head: bytes) -> bool:
    from ._prophesee import raw_kind
    return raw_kind(head) == "dat"


@njit(cache=True, nogil=True)
def _kernel(raw, v2, out):  # pragma: no cover - jitted
    """One pass over ``[N, 2]`` u32 (t, w); returns (index of a polarity > 1 or -1, max x, y)."""
    mx = 0
    my = 0
    for i in range(raw.shape[0]):
        w = raw[i, 1]
        if v2:
            x = w & 0x3FFF
            y = (w >> 14) & 0x3FFF
            p = w >> 28
        else:
            x = w & 0x1FF
            y = (w >> 9) & 0xFF
            p = (w >> 17) & 1
        if p > 1:
            return i, mx, my
        e = out[i]
        e.t = raw[i, 0]
        e.x = x
        e.y = y
        e.p = p
        mx = max(mx, x)
        my = max(my, y)
    return -1, mx, my


def decode(data: bytes, source: str = "<bytes>", *, sensor_size: tuple[int, ...] | None = None,
           strict: bool = True) -> Events:
    """Decode DAT bytes (one jitted pass over the events).

    Args:
        strict: raise ``EventFormatError`` at the first event outside the sensor or out of time order, or where
            the file ends inside its header or an event (default); ``False`` drops such events and counts them
            in ``meta["dropped"]``, and reads a cut file up to its last whole event (``"truncated"``: the bytes
            after it; ``"header_cut"``: the file ends before its first event could start).

    Returns:
        :class:`Events` ``[N]``; ``meta`` has ``version``, ``event_type`` and the ``header`` lines.
    """
    h = parse_header(data, source, NAME, strict)
    pos = h.body
    if h.cut or len(data) - pos < 2:             # the file ends inside its header
        if strict:
            raise EventFormatError(source, pos, f"the event type and size bytes after the {pos}-byte text header",
                                   f"{len(data) - pos} bytes after it: the file was cut", NAME)
        return _empty(h, sensor_size, {"header_cut": 1, "truncated": len(data) - pos})
    if h.version is not None and h.version > 2 or "version" in h.fields and h.version is None:
        raise EventFormatError(source, 0, "'% Version' 1 or 2", repr(h.fields["version"]), NAME, "header")
    v2 = (h.version or 0) >= 2
    if not v2 and h.size is not None and (h.size[0] > 512 or h.size[1] > 256):
        raise EventFormatError(source, 0, f"'% Version 2': the declared {h.size[0]}×{h.size[1]} sensor needs its "
                               "14-bit addresses (the layout before Version 2 reaches 512×256)",
                               "no '% Version 2' line", NAME, "header")
    etype, esize = data[pos], data[pos + 1]
    if etype not in CD_TYPES:
        raise EventFormatError(source, pos, f"a CD event type {CD_TYPES}", etype, NAME)
    if esize != 8:
        raise EventFormatError(source, pos + 1, "event size 8", esize, NAME)
    body = pos + 2
    n_bytes = len(data) - body
    cut = n_bytes % 8                            # bytes of an event the file was cut inside
    if cut and strict:
        raise EventFormatError(source, len(data) - cut, f"a whole number of 8-byte events after the {body}-byte "
                               "header (text, event type and size)", f"{n_bytes} bytes after it "
                               f"({n_bytes // 8} whole events), {cut} left over: the file was cut", NAME)
    raw = np.frombuffer(data, dtype="<u4", offset=body, count=(n_bytes - cut) // 4).reshape(-1, 2)
    out = np.empty(raw.shape[0], dtype=EVENT_DTYPE)
    bad, mx, my = _kernel(raw, v2, out)
    if bad >= 0:
        raise EventFormatError(source, body + 8 * bad + 4, "polarity 0 or 1",
                               int(raw[bad, 1]) >> 28, NAME)
    W, H = _sensor(h, etype, sensor_size, (int(mx) + 1, int(my) + 1) if out.size else (0, 0))
    out, dropped = finish(out, source, NAME, W=W, H=H, ordered=True, strict=strict,
                          offset_of=lambda i: body + 8 * i)
    if cut:
        dropped["truncated"] = cut
    return Events(out, (W, H, 2), _meta(h, etype, dropped))


def _sensor(h: ProphHeader, etype: int | None, sensor_size: tuple[int, ...] | None,
            extent: tuple[int, int]) -> tuple[int, int]:
    """``sensor_size``, else the header's, else the ATIS sensor for ``Event2D``, else the events' ``extent``."""
    if sensor_size is not None:
        return int(sensor_size[0]), int(sensor_size[1])
    if h.size is not None:
        return h.size
    if etype == 0x00:                            # Event2D: the ATIS sensor (N-CARS, Gen1)
        return ATIS_SIZE
    return extent


def _meta(h: ProphHeader, etype: int | None, dropped: dict[str, int]) -> dict[str, Any]:
    meta: dict[str, Any] = {"format": NAME, "version": h.version, "event_type": etype, "header": h.lines}
    if dropped:
        meta["dropped"] = {k: v for k, v in dropped.items() if v}
    return meta


def _empty(h: ProphHeader, sensor_size: tuple[int, ...] | None, dropped: dict[str, int]) -> Events:
    """No events: the file (read with ``strict=False``) ends before its first event."""
    W, H = _sensor(h, None, sensor_size, (0, 0))
    return Events(np.empty(0, EVENT_DTYPE), (W, H, 2), _meta(h, None, dropped))


def encode(ev: Events, *, event_type: int = 0x0C) -> list[bytes]:
    """Write a Version 2 DAT file (``t`` in ``[0, 2**32)``, ``x, y < 2**14``)."""
    a = ev.events
    W, H = int(ev.sensor_size[0]), int(ev.sensor_size[1])
    if a.size and (a["t"].min() < 0 or a["t"].max() >= 1 << 32):
        raise ValueError("write dat: timestamps must be in [0, 2**32) µs (u32)")
    if a.size and (a["x"].max() >= 1 << 14 or a["y"].max() >= 1 << 14):
        raise ValueError("write dat: x and y must be < 16384 (14 bits)")
    date = _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    head = f"% Height {H}\n% Version 2\n% Width {W}\n% date {date}\n"
    raw = np.empty(a.size, dtype=_RAW)
    raw["t"] = a["t"]
    raw["w"] = (a["x"].astype(np.uint32) | (a["y"].astype(np.uint32) << 14)
                | (a["p"].astype(np.uint32) << 28))
    return [head.encode("ascii"), bytes([event_type, 8]), raw.tobytes()]

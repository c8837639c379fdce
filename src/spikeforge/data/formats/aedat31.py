"""AEDAT 3.1 (cAER / DV; DVS128 Gesture): ``#`` header, then packets with a 28-byte header.

Packet header, little-endian::

    int16 eventType  int16 eventSource  int32 eventSize  int32 eventTSOffset
    int32 eventTSOverflow  int32 eventCapacity  int32 eventNumber  int32 eventValid

followed by ``eventCapacity · eventSize`` bytes. Polarity events (type 1, size 8)::

    uint32 data: bit 0 valid, bit 1 polarity (1 = ON), bits 2..16 y, bits 17..31 x
    int32  timestamp (µs);   t = (eventTSOverflow << 31) | timestamp

Only the first ``eventNumber`` events of a packet exist, and only those with the valid bit are kept
(SpikingJelly and Tonic ignore both). Other known packet types (0–12: special, frame, IMU, …) are
skipped by their size; any other type is an error. Coordinates are cAER's (x right, y down).

Sensor size: ``sensor_size=``, else a ``#Sensor-Size: WxH`` line (written by :func:`encode`), else
the ``#Source N: <chip>`` name, else the smallest sensor holding the events.
"""

from __future__ import annotations

import struct

import numpy as np

from ..events import EVENT_DTYPE, Events
from ._io import finish, header_value, smallest_size, text_header, to_int
from .errors import EventFormatError

__all__ = ["NAME", "EXTENSIONS", "decode", "encode", "sniff", "packet_header"]

NAME = "aedat3"
EXTENSIONS = (".aedat",)
MAGIC = b"#!AER-DAT3.1"
END = b"#!END-HEADER"
HEADER = struct.Struct("<hhiiiiii")
POLARITY = 1
KNOWN_TYPES = frozenset(range(13))   # caer event types SPECIAL .. SPIKE
SOURCES = {"dvs128": (128, 128), "davis240": (240, 180), "davis346": (346, 260),
           "davis640": (640, 480), "dvxplorer": (640, 480)}


def sniff(head: bytes) -> bool:
    return head.startswith(MAGIC)


def packet_header(etype: int, n: int, ts_overflow: int = 0, size: int = 8, source: int = 1,
                  capacity: int | None = None, valid: int | None = None,
                  ts_offset: int = 4) -> bytes:
    """The 28-byte packet header (for writers and hand-built test files)."""
    cap = n if capacity is None else capacity
    ok = n if valid is None else valid
    return HEADER.pack(etype, source, size, ts_offset, ts_overflow, cap, n, ok)


def _declared_size(lines: list[str]) -> tuple[int, int] | None:
    val = header_value(lines, "Sensor-Size")
    if val:
        wh = [to_int(v) for v in val.lower().split("x")]
        if len(wh) == 2 and wh[0] is not None and wh[1] is not None:
            return wh[0], wh[1]
    for line in lines:
        s = line.strip().lower()
        if s.startswith("source ") and ":" in s:
            chip = s.split(":", 1)[1].strip()
            for key, size in SOURCES.items():
                if chip.startswith(key):
                    return size
    return None


def decode(data: bytes, source: str = "<bytes>", *, sensor_size: tuple[int, ...] | None = None,
           strict: bool = True) -> Events:
    """Decode AEDAT 3.1 bytes (polarity events of every packet, in file order).

    Events must lie inside the declared (or given) sensor and come in time order, as cAER writes them;
    ``strict=False`` drops those that do not and counts them in ``meta["dropped"]``, and reads a file cut inside
    its header or a packet up to its last whole event (``"truncated"``: the bytes after it; ``"header_cut"``:
    the file ends before ``#!END-HEADER``).

    Returns:
        :class:`Events` ``[N]``; ``meta`` has ``header`` lines, ``packets`` (count per event type)
        and ``invalid`` (events dropped for a cleared valid bit).
    """
    if not data.startswith(MAGIC):
        raise EventFormatError(source, 0, "the AEDAT 3.1 magic '#!AER-DAT3.1'",
                               repr(bytes(data[:12])), NAME)
    lines, pos, line_cut = text_header(data, b"#", end_markers=(END,), source=source, fmt=NAME, strict=strict)
    n = len(data)
    cut: dict[str, int] = {}                   # not strict: what a file cut short lost
    if not lines or not lines[-1].startswith(END[1:].decode()):
        if strict or pos + line_cut < n:       # not a cut: something else follows the header lines
            raise EventFormatError(source, pos, "a '#!END-HEADER' line closing the text header",
                                   repr(bytes(data[pos:pos + 16])), NAME)
        cut, pos = {"header_cut": 1, "truncated": line_cut}, n
    starts, counts, ovfs = [], [], []
    packets: dict[int, int] = {}
    while pos < n:
        if n - pos < HEADER.size:
            if not strict:
                cut = {"truncated": n - pos}
                break
            raise EventFormatError(source, pos, "a 28-byte packet header",
                                   f"{n - pos} bytes before the end of the file: the file was cut", NAME)
        etype, _src, esize, tsoff, ovf, cap, num, valid = HEADER.unpack_from(data, pos)
        if etype not in KNOWN_TYPES:
            raise EventFormatError(source, pos, "a known packet eventType 0..12", etype, NAME)
        if esize <= 0 or cap < 0 or not 0 <= num <= cap or not 0 <= valid <= num:
            raise EventFormatError(source, pos, "eventSize > 0 and 0 <= eventValid <= eventNumber "
                                   "<= eventCapacity",
                                   f"size {esize}, valid {valid}, number {num}, capacity {cap}",
                                   NAME)
        if ovf < 0:
            raise EventFormatError(source, pos + 12, "eventTSOverflow >= 0", ovf, NAME)
        nbytes = cap * esize
        left = n - pos - HEADER.size
        if nbytes > left and strict:
            raise EventFormatError(source, pos + HEADER.size,
                                   f"{nbytes} bytes of events (capacity {cap} × size {esize})",
                                   f"{left} bytes left in the file: the file was cut inside the packet", NAME)
        if etype == POLARITY:
            if esize != 8 or tsoff != 4:
                raise EventFormatError(source, pos, "polarity events of size 8 with the timestamp "
                                       "at offset 4", f"size {esize}, offset {tsoff}", NAME)
            num = min(num, left // 8)          # a cut packet: its whole events
            if num:
                starts.append(pos + HEADER.size)
                counts.append(num)
                ovfs.append(ovf)
        if nbytes > left:                      # not strict: the file was cut inside this packet
            kept = HEADER.size + 8 * num if etype == POLARITY and num else 0
            cut = {"truncated": n - pos - kept}
            if kept:
                packets[etype] = packets.get(etype, 0) + 1
            break
        packets[etype] = packets.get(etype, 0) + 1
        pos += HEADER.size + nbytes
    words = (np.concatenate([np.frombuffer(data, "<u4", 2 * c, s) for s, c in zip(starts, counts)])
             if starts else np.zeros(0, np.uint32)).reshape(-1, 2)
    d = words[:, 0]
    is_valid = (d & 1).astype(bool)
    idx = np.flatnonzero(is_valid)
    all_valid = idx.size == d.size
    dv = d if all_valid else d[idx]
    ts = words[:, 1].view(np.int32)
    ts = ts if all_valid else ts[idx]

    def offset_of(i: int) -> int:  # byte offset of (kept) event i
        j = i if all_valid else int(idx[i])
        c = np.cumsum(counts)
        k = int(np.searchsorted(c, j, side="right"))
        return starts[k] + 8 * (j - (int(c[k - 1]) if k else 0))

    if ts.size and ts.min() < 0:
        i = int(np.flatnonzero(ts < 0)[0])
        raise EventFormatError(source, offset_of(i) + 4, "a timestamp >= 0 (31 bits)",
                               int(ts[i]), NAME)
    out = np.empty(dv.size, dtype=EVENT_DTYPE)
    ovf_col = np.repeat(np.asarray(ovfs, np.int64), counts)
    out["t"] = ts.astype(np.int64) | ((ovf_col if all_valid else ovf_col[idx]) << 31)
    out["x"] = dv >> 17
    out["y"] = (dv >> 2) & 0x7FFF
    out["p"] = (dv >> 1) & 1
    declared = _declared_size(lines)
    if sensor_size is not None:
        W, H = int(sensor_size[0]), int(sensor_size[1])
    elif declared is not None:
        W, H = declared
    else:
        W, H = smallest_size(out)
    out, dropped = finish(out, source, NAME, W=W, H=H, ordered=True, strict=strict, offset_of=offset_of)
    dropped.update(cut)
    dropped = {k: v for k, v in dropped.items() if v}
    meta = {"format": NAME, "header": lines, "packets": packets, "invalid": int(d.size - idx.size),
            **({"dropped": dropped} if dropped else {})}
    return Events(out, (W, H, 2), meta)


def encode(ev: Events, *, packet_events: int = 4096) -> list[bytes]:
    """Polarity packets of at most ``packet_events`` events, split where ``t >> 31`` changes."""
    a = ev.events
    W, H = int(ev.sensor_size[0]), int(ev.sensor_size[1])
    x, y, p, t = (a[k].astype(np.int64) for k in ("x", "y", "p", "t"))
    if a.size and (t.min() < 0 or x.max() >= 1 << 15 or y.max() >= 1 << 15):
        raise ValueError("write aedat3: need t >= 0 and x, y < 32768")
    name = next((k.upper() for k, v in SOURCES.items() if v == (W, H)), "spikeforge")
    head = (f"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: {name}\r\n#Sensor-Size: {W}x{H}\r\n"
            "#!END-HEADER\r\n")
    words = np.empty((a.size, 2), dtype="<u4")
    words[:, 0] = (x << 17) | (y << 2) | (p << 1) | 1
    words[:, 1] = t & 0x7FFFFFFF
    ovf = t >> 31
    cuts = np.flatnonzero(np.diff(ovf)) + 1
    out: list[bytes] = [head.encode("ascii")]
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, a.size]):
        for s in range(int(lo), int(hi), max(1, packet_events)):
            e = min(s + packet_events, int(hi))
            out += [packet_header(POLARITY, e - s, int(ovf[s])), words[s:e].tobytes()]
    return out

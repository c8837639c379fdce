"""AEDAT 2.0 (jAER): ``#`` text header, then big-endian ``>u4 address, >u4 timestamp`` pairs.

The address layout depends on the chip (``# AEChip:`` header line, or ``chip=``):

* ``dvs128`` (DVS128, CIFAR10-DVS), 128×128, as jAER's ``DVS128.Extractor`` reads it::

      x = 127 − ((addr >> 1) & 0x7F)     y = 127 − ((addr >> 8) & 0x7F)     p = 1 − (addr & 1)

  jAER flips x and puts y up; the second ``127 −`` turns jAER's y-up into our y-down. SpikingJelly's
  CIFAR10-DVS loader additionally transposes x and y; Tonic's ``read_dvs_128`` returns the raw,
  transposed, unflipped fields. We follow the recorder's own software.
* ``davis240`` / ``davis346`` (jAER DAVIS family, W×H = 240×180 / 346×260)::

      x = W−1 − ((addr >> 12) & 0x3FF)   y = H−1 − ((addr >> 22) & 0x1FF)   p = (addr >> 11) & 1

  Addresses with bit 31 set are APS / IMU samples and are dropped.

Timestamps are µs; a backward jump of more than 2**31 is a 32-bit counter wrap and is unrolled; any
other step back breaks the order jAER writes and is an error, as are events outside the sensor and a
file cut inside its text header (``strict=False`` drops such events and counts them instead).
One numba pass decodes, filters and checks (the body is a native-order view, byte-swapped in the
kernel: numba has no big-endian arrays).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from ..events import EVENT_DTYPE, Events
from ._io import finish, header_value, text_header, to_int
from .errors import EventFormatError

__all__ = ["NAME", "EXTENSIONS", "CHIPS", "decode", "encode", "sniff", "chip_from_header"]

NAME = "aedat2"
EXTENSIONS = (".aedat",)
MAGIC = b"#!AER-DAT2"
END_HEADER = "End Of ASCII Header"
CHIPS = {"dvs128": (128, 128), "davis240": (240, 180), "davis346": (346, 260)}
_APS = np.uint32(0x80000000)


def sniff(head: bytes) -> bool:
    return head.startswith(MAGIC)


def chip_from_header(lines: list[str]) -> str | None:
    """Map the ``AEChip`` class (e.g. ``eu.seebetter.ini.chips.davis.Davis346red``) to a chip."""
    chip = (header_value(lines, "AEChip") or "").lower()
    if not chip:
        return None
    for key, name in (("davis346", "davis346"), ("davis240", "davis240"), ("dvs128", "dvs128")):
        if key in chip:
            return name
    return "unknown:" + chip


@njit(cache=True, nogil=True)
def _dvs128(words, out):  # pragma: no cover - jitted
    """DVS128 records → events (7-bit fields always fit 128×128: no check, no branch but wraps).

    ``words`` is an ``[N, 2]`` native-order view of the big-endian pairs, so the address bytes
    are ``a >> 24`` (bits 7..0 of the big-endian word) etc., and the timestamp is byte-swapped.
    """
    wrap = np.int64(0)
    prev = np.int64(-1)
    for i in range(words.shape[0]):
        a = words[i, 0]
        v = np.int64(words[i, 1])
        ts = ((v & 0xFF) << 24) | ((v & 0xFF00) << 8) | ((v >> 8) & 0xFF00) | ((v >> 24) & 0xFF)
        lo, hi = (a >> 24) & 0xFF, (a >> 16) & 0xFF          # address bits 7..0 and 15..8
        if ts < prev - (1 << 31):
            wrap += 1 << 32
        prev = ts
        e = out[i]
        e.t = ts + wrap
        e.x = 127 - (lo >> 1)
        e.y = 127 - (hi & 0x7F)
        e.p = 1 - (lo & 1)


@njit(cache=True, nogil=True)
def _davis(words, W, H, strict, out, kept):  # pragma: no cover - jitted
    """DAVIS records → events: drops APS samples (bit 31), checks the raw address against the chip
    (with ``strict`` off, skips records outside it). Returns ``(events written, index of a bad record or
    -1, records skipped as outside)``; ``kept[j]`` is the record of event ``j``."""
    skipped = 0
    n = 0
    wrap = np.int64(0)
    prev = np.int64(-1)
    for i in range(words.shape[0]):
        v = np.int64(words[i, 0])
        a = ((v & 0xFF) << 24) | ((v & 0xFF00) << 8) | ((v >> 8) & 0xFF00) | ((v >> 24) & 0xFF)
        if a & 0x80000000:
            continue
        v = np.int64(words[i, 1])
        ts = ((v & 0xFF) << 24) | ((v & 0xFF00) << 8) | ((v >> 8) & 0xFF00) | ((v >> 24) & 0xFF)
        xr = (a >> 12) & 0x3FF
        yr = (a >> 22) & 0x1FF
        if xr >= W or yr >= H:
            if strict:
                return n, i, skipped
            skipped += 1
            continue
        if ts < prev - (1 << 31):
            wrap += 1 << 32
        prev = ts
        kept[n] = i
        e = out[n]
        e.t = ts + wrap
        e.x = W - 1 - xr
        e.y = H - 1 - yr
        e.p = (a >> 11) & 1
        n += 1
    return n, -1, skipped


def decode(data: bytes, source: str = "<bytes>", *, chip: str | None = None,
           sensor_size: tuple[int, ...] | None = None, strict: bool = True) -> Events:
    """Decode AEDAT 2.0 bytes (one jitted pass; no Python loop per event).

    Args:
        chip: ``"dvs128"``, ``"davis240"`` or ``"davis346"``; default from the ``AEChip`` header
            line, else ``dvs128`` (CIFAR10-DVS files).
        sensor_size: overrides the chip's size (events outside it are an error).
        strict: raise ``EventFormatError`` at the first event outside the sensor or out of time order, or where
            the file ends inside its header or an event (default); ``False`` drops such events and counts them
            in ``meta["dropped"]``, and reads a cut file up to its last whole event (``"truncated"``: the bytes
            after it; ``"header_cut"``: the file ends before the header's closing line).

    Returns:
        :class:`Events` ``[N]``; ``meta`` has ``version``, ``creation_time_ms``, ``chip``,
        ``dropped_aps`` and the ``header`` lines.
    """
    if not data.startswith(MAGIC):
        raise EventFormatError(source, 0, "the AEDAT 2.0 magic '#!AER-DAT2.0'",
                               repr(bytes(data[:12])), NAME)
    lines, body, line_cut = text_header(data, b"#", end_markers=(b"#" + END_HEADER.encode(),), source=source,
                                        fmt=NAME, strict=strict)
    # (not strict, a file cut inside its first line: that line as far as it goes; the magic is whole)
    first = lines[0] if lines else data[1:].decode("latin-1").rstrip("\r") if line_cut else ""
    if not first.startswith("!AER-DAT"):
        raise EventFormatError(source, 0, "a '#!AER-DAT2.0' text line", repr(bytes(data[:16])),
                               NAME)
    cut = body + line_cut == len(data) and not (lines and lines[-1].startswith(END_HEADER))
    if cut and strict:       # no events follow, so the header must be whole: jAER closes it with END_HEADER
        raise EventFormatError(source, len(data), f"the '#{END_HEADER}' line that closes the header",
                               "the end of the file: it was cut inside its header", NAME)
    version = first[len("!AER-DAT"):].strip()
    if not version.startswith("2"):
        raise EventFormatError(source, 0, "AEDAT version 2.x", version, NAME)
    if chip is not None and chip not in CHIPS:
        raise ValueError(f"aedat2: chip must be one of {sorted(CHIPS)}, got {chip!r}")
    chip_name = chip or chip_from_header(lines) or "dvs128"
    if chip_name not in CHIPS:
        raise EventFormatError(source, max(data.find(b"AEChip", 0, body), 0),
                               f"an AEChip of a supported chip {sorted(CHIPS)} (or pass chip=)",
                               chip_name[len("unknown:"):], NAME)
    n_bytes = len(data) - body
    rest = n_bytes % 8 if not cut else n_bytes      # bytes of an event (or a header line) the file was cut inside
    if rest and strict:
        raise EventFormatError(source, len(data) - rest,
                               f"a whole number of 8-byte events after the {body}-byte header",
                               f"{n_bytes} bytes after it ({n_bytes // 8} whole events), {rest} left over: "
                               "the file was cut", NAME)
    words = np.frombuffer(data, dtype="<u4", offset=body, count=(n_bytes - rest) // 4).reshape(-1, 2)
    W, H = CHIPS[chip_name]
    out = np.empty(words.shape[0], dtype=EVENT_DTYPE)
    kept: np.ndarray | None = None            # record of each event, where some were dropped (DAVIS)
    if chip_name == "dvs128":
        _dvs128(words, out)
        n, bad, outside = words.shape[0], -1, 0
    else:
        kept = np.empty(words.shape[0], dtype=np.int64)
        n, bad, outside = _davis(words, W, H, strict, out, kept)
    if bad >= 0:
        a = int.from_bytes(data[body + 8 * bad:body + 8 * bad + 4], "big")
        xr, yr = ((a >> 12) & 0x3FF, (a >> 22) & 0x1FF) if chip_name != "dvs128" else (0, 0)
        raise EventFormatError(source, body + 8 * bad, f"an address inside the {W}×{H} sensor "
                               f"of a {chip_name}", f"address {a:#010x} (raw x={xr}, y={yr})",
                               NAME)
    aps = words.shape[0] - n - outside
    if n < words.shape[0]:
        out = out[:n] if 2 * n >= words.shape[0] else out[:n].copy()
    size = (W, H, 2) if sensor_size is None else (int(sensor_size[0]), int(sensor_size[1]), 2)
    out, dropped = finish(out, source, NAME, W=size[0], H=size[1], ordered=True, strict=strict,
                          offset_of=lambda i: body + 8 * (i if kept is None else int(kept[i])))
    if outside:
        dropped = {"outside_sensor": outside + dropped.pop("outside_sensor", 0), **dropped}
    created = header_value(lines, "Creation time: System.currentTimeMillis()")
    meta: dict[str, Any] = {"format": NAME, "version": version, "chip": chip_name, "header": lines,
            "creation_time_ms": to_int(created), "dropped_aps": int(aps)}
    if cut:
        dropped["header_cut"] = 1
    if rest:
        dropped["truncated"] = rest
    if dropped:
        meta["dropped"] = dropped
    return Events(out, size, meta)


def encode(ev: Events, *, chip: str = "dvs128", creation_time_ms: int | None = None) -> list[bytes]:
    """Inverse of :func:`decode` for ``chip`` (DVS events only; ``t`` in ``[0, 2**32)``)."""
    if chip not in CHIPS:
        raise ValueError(f"write aedat2: chip must be one of {sorted(CHIPS)}, got {chip!r}")
    W, H = CHIPS[chip]
    a = ev.events
    x, y, p, t = (a[k].astype(np.int64) for k in ("x", "y", "p", "t"))
    if a.size and (x.max() >= W or y.max() >= H):
        raise ValueError(f"write aedat2: events must fit the {chip} sensor {W}×{H}")
    if a.size and (t.min() < 0 or t.max() >= 1 << 32):
        raise ValueError("write aedat2: timestamps must be in [0, 2**32) µs")
    xr, yr = (W - 1) - x, (H - 1) - y
    if chip == "dvs128":
        addr = (yr << 8) | (xr << 1) | (1 - p)
    else:
        addr = (yr << 22) | (xr << 12) | (p << 11)
    chip_cls = {"dvs128": "ch.unizh.ini.jaer.chip.retina.DVS128",
                "davis240": "eu.seebetter.ini.chips.davis.DAVIS240C",
                "davis346": "eu.seebetter.ini.chips.davis.Davis346B"}[chip]
    head = ("#!AER-DAT2.0\r\n# This is a raw AE data file created by spikeforge\r\n"
            "# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each "
            "event\r\n# Timestamps tick is 1 us\r\n")
    if creation_time_ms is not None:
        head += f"# Creation time: System.currentTimeMillis() {int(creation_time_ms)}\r\n"
    head += f"# AEChip: {chip_cls}\r\n#{END_HEADER}\r\n"
    body = np.empty((a.size, 2), dtype=">u4")
    body[:, 0], body[:, 1] = addr, t
    return [head.encode("ascii"), body.tobytes()]

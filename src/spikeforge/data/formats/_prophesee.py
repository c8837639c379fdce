"""The ``%`` text header shared by Prophesee DAT and RAW (EVT 2.0 / 3.0) files.

Lines look like ``% key value``: DAT has ``% Height 720``, ``% Width 1280``, ``% Version 2``; RAW
has ``% evt 3.0``, ``% format EVT3;height=720;width=1280``, ``% geometry 1280x720`` and, in newer
files, a closing ``% end``. Old Gen3 RAW files state no geometry, only the camera plugin, so the
plugin name maps to a sensor size as Metavision does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..events import Events
from ._io import finish, smallest_size, text_header, to_int
from .errors import EventFormatError

__all__ = ["ProphHeader", "parse_header", "raw_kind", "time_high_fillers", "raw_words", "raw_result"]

# plugin-name fragment → (W, H), checked in order (Metavision HAL plugin names)
_PLUGINS = (("gen31", (640, 480)), ("gen3", (640, 480)), ("gen41", (1280, 720)),
            ("gen4", (1280, 720)), ("imx636", (1280, 720)), ("imx646", (1280, 720)),
            ("imx8", (320, 320)), ("genx320", (320, 320)))


@dataclass
class ProphHeader:
    lines: list[str]
    body: int                                # byte offset of the first event byte
    evt: str | None = None                   # "2.0", "3.0", "2.1" for RAW files
    size: tuple[int, int] | None = None      # (W, H) the header declares
    version: int | None = None               # DAT "% Version"
    fields: dict[str, str] = field(default_factory=dict)
    cut: int = 0                             # bytes of a header line the file ends inside (left out; not strict)


def parse_header(data: bytes, source: str | None = None, fmt: str | None = None, strict: bool = True) -> ProphHeader:
    """The header's lines and fields; with ``source``, a header cut before its line end raises, or with
    ``strict`` off is left out and its bytes counted in ``cut`` (see ``text_header``)."""
    lines, body, cut = text_header(data, b"%", end_markers=(b"% end",), source=source, fmt=fmt, strict=strict)
    fields: dict[str, str] = {}
    for line in lines:
        parts = line.strip().split(None, 1)
        if parts:
            fields.setdefault(parts[0].lower(), parts[1] if len(parts) > 1 else "")
    h = ProphHeader(lines, body, fields=fields, cut=cut)
    fmt = fields.get("format", "")
    evt = fields.get("evt", "").strip()
    if not evt and fmt:
        m = re.match(r"evt\s*([0-9.]+)", fmt.split(";")[0].strip().lower())
        if m:
            evt = {"2": "2.0", "3": "3.0", "21": "2.1"}.get(m.group(1).replace(".", ""), m.group(1))
    h.evt = evt or None
    h.size = _geometry(fields)
    h.version = to_int(fields.get("version"))
    return h


def _geometry(fields: dict[str, str]) -> tuple[int, int] | None:
    if "geometry" in fields:
        wh = [to_int(v) for v in fields["geometry"].lower().split("x")]
        if len(wh) == 2 and wh[0] is not None and wh[1] is not None:
            return wh[0], wh[1]
    if "format" in fields:
        fmt = dict(kv.split("=", 1) for kv in fields["format"].lower().split(";") if "=" in kv)
        w, h = to_int(fmt.get("width")), to_int(fmt.get("height"))
        if w is not None and h is not None:
            return w, h
    w, h = to_int(fields.get("width")), to_int(fields.get("height"))
    if w is not None and h is not None:
        return w, h
    plugin = fields.get("plugin_name", "").lower()
    for frag, size in _PLUGINS:
        if frag in plugin:
            return size
    return None


def time_high_fillers(values: np.ndarray, max_step: int) -> tuple[np.ndarray, np.ndarray]:
    """What an encoder writes so that no TIME_HIGH step exceeds ``max_step`` (as a camera, which writes one
    every tick): for increasing absolute time-high ``values``, the filler values and, for each, the index of
    the value it precedes. The first value needs none (a stream may start at any time)."""
    v = np.asarray(values, dtype=np.int64)
    if v.size == 0:
        return v, v
    prev = np.r_[v[0], v[:-1]]
    counts = np.maximum(0, -(-(v - prev) // max_step) - 1)
    idx = np.repeat(np.arange(v.size), counts)
    k = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts) + 1
    return np.repeat(prev, counts) + max_step * k, idx


def raw_words(data: bytes, h: ProphHeader, source: str, fmt: str, strict: bool, dtype: str) -> tuple[np.ndarray, int]:
    """The whole little-endian ``dtype`` words after the header, and the bytes of a word the file was cut
    inside (which ``strict`` refuses). A file cut inside its header has no words."""
    size = np.dtype(dtype).itemsize
    n_bytes = len(data) - h.body
    cut = 0 if h.cut else n_bytes % size
    if cut and strict:
        raise EventFormatError(source, len(data) - cut, f"a whole number of {8 * size}-bit words after the "
                               f"{h.body}-byte header", f"{n_bytes} bytes after it ({n_bytes // size} whole words), "
                               f"{cut} left over: the file was cut", fmt)
    return np.frombuffer(data, dtype=dtype, offset=h.body, count=0 if h.cut else (n_bytes - cut) // size), cut


def raw_result(out: np.ndarray, size: tuple[int, int] | None, h: ProphHeader, source: str, fmt: str, strict: bool,
               skipped: dict[str, int]) -> Events:
    """The ``Events`` of an EVT decoder: the sensor (the declared one, else the smallest holding the events),
    the order and sign checks of ``finish``, and what was dropped (the decoder's own ``skipped`` counts first,
    then ``finish``'s, then a cut header's or word's ``header_cut`` / ``truncated``)."""
    W, H = size if size is not None else smallest_size(out)
    out, dropped = finish(out, source, fmt, W=W, H=H, ordered=True, strict=strict)
    tail: dict[str, int] = {k: skipped.pop(k) for k in ("header_cut", "truncated") if k in skipped}
    dropped = {k: v for k, v in (skipped | dropped | tail).items() if v}
    return Events(out, (W, H, 2), {"format": fmt, "header": h.lines, **({"dropped": dropped} if dropped else {})})


def raw_kind(head: bytes) -> str | None:
    """``"evt2"`` / ``"evt3"`` / ``"dat"`` from a file's first bytes, or None if not Prophesee."""
    if not head.startswith(b"%"):
        return None
    h = parse_header(head)
    if h.evt is not None:
        return {"2.0": "evt2", "3.0": "evt3"}.get(h.evt, "raw:" + h.evt)
    keys = set(h.fields)
    if keys & {"height", "width", "version"} or "event" in " ".join(h.lines).lower():
        return "dat"
    return None

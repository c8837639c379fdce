"""AEDAT 4.0 (iniVation DV; DVXplorer, DAVIS): FlatBuffers packets, none/LZ4/Zstd, several streams.

Layout::

    "#!AER-DAT4.0\\r\\n" | u32 header_len | IOHeader flatbuffer ("IOHE": compression int32,
    dataTablePosition int64 (−1: none), infoNode string = XML listing the streams)
    packets until dataTablePosition (or EOF): i32 stream_id | u32 byte_len | payload
    payload = compressed size-prefixed flatbuffer, "EVTS" for events:
        EventPacket { elements: [Event] }
        struct Event { int64 t; int16 x; int16 y; bool on; pad[3] }

The XML (``outInfo/<id>``: ``typeIdentifier`` EVTS/FRME/IMUS/TRIG, ``info/sizeX, sizeY``) says what
each stream is; only the chosen event stream is decompressed. A packet of an undeclared stream is an
error. Timestamps are the file's clock (absolute Unix µs); subtract ``t[0]`` downstream if needed.
Decompressed packets are capped at ``MAX_RATIO`` × their compressed size (no decompression bombs).

The file data table after the packets (a size-prefixed ``FTAB`` FileDataTable, compressed like the packets, one
entry per packet) is not needed to read the events, but a table that does not decompress, parse or list every
packet means a damaged file (a file cut by a few bytes ends inside it): strict reading refuses it, naming the
table; ``strict=False`` reads the events and counts it as ``meta["dropped"]["data_table"]``. A file cut before
its table (``dataTablePosition`` past the end) or, without a table, inside a packet keeps, when not strict, the
packets wholly present (``"truncated"``: the bytes of the cut packet).

Spec: https://docs.inivation.com/software/software-advanced-usage/file-formats/aedat-4.0.html
"""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import numpy as np

from ..events import EVENT_DTYPE, Events
from . import _flatbuffers as fb
from ._io import finish, smallest_size, to_int
from .errors import EventFormatError, require_extra

__all__ = ["NAME", "EXTENSIONS", "COMPRESSION", "EVENT_STRUCT", "decode", "encode", "sniff",
           "io_header", "event_packet", "compress", "stream_xml"]

NAME = "aedat4"
EXTENSIONS = (".aedat4",)
MAGIC = b"#!AER-DAT4.0\r\n"
COMPRESSION = {0: "none", 1: "lz4", 2: "lz4high", 3: "zstd", 4: "zstdhigh"}
EVENT_STRUCT = np.dtype({"names": ["t", "x", "y", "on"], "formats": ["<i8", "<i2", "<i2", "u1"],
                         "offsets": [0, 8, 10, 12], "itemsize": 16})
MAX_RATIO = 256
_PKT = struct.Struct("<iI")


def sniff(head: bytes) -> bool:
    return head.startswith(MAGIC)


def _err(source: str, offset: int | None, expected: str, got: Any = None) -> EventFormatError:
    return EventFormatError(source, offset, expected, got, NAME)


class _HeaderCut(Exception):
    """The file ends inside its IOHeader (raised only when not strict: the caller returns no events)."""


def _read_header(data: bytes, source: str, strict: bool = True) -> tuple[int, int, str, int]:
    """``(compression, data_table_position, xml, first packet offset)``; not ``strict``, a file cut inside the
    IOHeader raises ``_HeaderCut`` and a data table position past the end of the file is returned as it is."""
    if not data.startswith(MAGIC):
        raise _err(source, 0, "the AEDAT 4.0 magic '#!AER-DAT4.0\\r\\n'", repr(bytes(data[:14])))
    if len(data) < 18:
        if not strict:
            raise _HeaderCut
        raise _err(source, 14, "a u32 IOHeader length", f"{len(data) - 14} bytes before the end of the file")
    hlen = struct.unpack_from("<I", data, 14)[0]
    if hlen > len(data) - 18:
        if not strict:
            raise _HeaderCut
        raise _err(source, 14, f"an IOHeader of {hlen} bytes inside the file",
                   f"{len(data) - 18} bytes after its length field")
    buf = data[18:18 + hlen]
    try:
        root = fb.uoffset(buf, 0, "the IOHeader root table")
        if buf[4:8] != b"IOHE":
            raise fb.FlatbufferError(4, f"the file identifier 'IOHE', got {bytes(buf[4:8])!r}")
        p0, p1, p2 = (fb.field_pos(buf, root, i) for i in range(3))
        comp = fb.read_i32(buf, p0, "compression") if p0 is not None else 0
        table = fb.read_i64(buf, p1, "dataTablePosition") if p1 is not None else -1
        xml = fb.string(buf, p2, "the infoNode XML") if p2 is not None else b""
    except fb.FlatbufferError as e:
        raise _err(source, 18 + e.pos, e.expected) from None
    if comp not in COMPRESSION:
        raise _err(source, 18, f"a compression type in {sorted(COMPRESSION)}", comp)
    body = 18 + hlen
    if table != -1 and not body <= table <= (len(data) if strict else table):
        why = f" (past the end of the {len(data)}-byte file: it was cut)" if table > len(data) else ""
        raise _err(source, 18, f"dataTablePosition -1 or a byte offset in [{body}, {len(data)}]", f"{table}{why}")
    return comp, table, xml.decode("utf-8", "replace"), body


def _streams(xml: str, source: str) -> dict[int, dict[str, str]]:
    """Stream id → attributes (``typeIdentifier``, ``sizeX``, ``sizeY``, …) from the header XML."""
    try:
        root = ET.fromstring(xml)
    except (ET.ParseError, ValueError) as e:
        raise _err(source, 18, "well-formed XML in the IOHeader infoNode", str(e)) from None
    out_info = next((n for n in root.iter("node") if n.get("name") == "outInfo"), None)
    if out_info is None:
        raise _err(source, 18, "an <node name='outInfo'> listing the streams in the header XML")
    streams: dict[int, dict[str, str]] = {}
    for node in out_info.findall("node"):
        try:
            sid = int(node.get("name", ""))
        except ValueError:
            continue
        attrs = {a.get("key", ""): (a.text or "") for a in node.findall("attr")}
        for sub in node.findall("node"):
            attrs.update({a.get("key", ""): (a.text or "") for a in sub.findall("attr")})
        streams[sid] = attrs
    return streams


def _decompressor(comp: int) -> Callable[[bytes, int], bytes]:
    """``f(payload, limit) -> bytes`` raising ``ValueError`` on bad or too large frames."""
    if comp == 0:
        return lambda payload, limit: payload
    if comp in (1, 2):
        lz4f = require_extra("lz4.frame", "AEDAT 4.0 LZ4 packets")

        def lz4(payload: bytes, limit: int) -> bytes:
            d = lz4f.LZ4FrameDecompressor()
            try:
                out = d.decompress(payload, max_length=limit)
            except RuntimeError as e:
                raise ValueError(f"a valid LZ4 frame ({e})") from None
            if not d.eof:
                raise ValueError("a complete LZ4 frame" if d.needs_input else
                                 f"at most {MAX_RATIO}× expansion")
            return bytes(out)
        return lz4
    zstd = require_extra("zstandard", "AEDAT 4.0 Zstd packets")

    def zst(payload: bytes, limit: int) -> bytes:
        try:
            size = zstd.frame_content_size(payload)
            if size > limit:
                raise ValueError(f"at most {MAX_RATIO}× expansion (frame declares {size} bytes)")
            return bytes(zstd.ZstdDecompressor().decompress(payload, max_output_size=limit))
        except zstd.ZstdError as e:
            raise ValueError(f"a valid Zstd frame ({e})") from None
    return zst


def _event_elements(buf: bytes) -> bytes:
    """The raw 16-byte Event structs of one decompressed, size-prefixed EventPacket."""
    size = fb.read_u32(buf, 0, "the size prefix")
    if size > len(buf) - 4:
        raise fb.FlatbufferError(0, f"a size prefix <= {len(buf) - 4}, got {size}")
    root = fb.uoffset(buf, 4, "the EventPacket root table")
    if buf[8:12] != b"EVTS":
        raise fb.FlatbufferError(8, f"the identifier 'EVTS', got {bytes(buf[8:12])!r}")
    p = fb.field_pos(buf, root, 0)
    if p is None:
        return b""
    first, n = fb.vector(buf, p, 16, "the elements vector")
    return buf[first:first + 16 * n]


def _table_entries(data: bytes, at: int, unpack: Callable[[bytes, int], bytes]) -> int:
    """Entries in the file data table at byte ``at`` (the rest of the file: a size-prefixed ``FTAB``
    FileDataTable flatbuffer, compressed like the packets); ``ValueError`` / ``FlatbufferError`` if damaged."""
    payload = data[at:]
    buf = unpack(payload, MAX_RATIO * len(payload) + 4096)
    size = fb.read_u32(buf, 0, "the size prefix")
    if size != len(buf) - 4:
        raise fb.FlatbufferError(0, f"a size prefix equal to the table's {len(buf) - 4} bytes, got {size}")
    root = fb.uoffset(buf, 4, "the FileDataTable root table")
    if buf[8:12] != b"FTAB":
        raise fb.FlatbufferError(8, f"the identifier 'FTAB', got {bytes(buf[8:12])!r}")
    p = fb.field_pos(buf, root, 0)
    return 0 if p is None else fb.vector(buf, p, 4, "the table's entries")[1]


def decode(data: bytes, source: str = "<bytes>", *, stream: int | None = None,
           sensor_size: tuple[int, ...] | None = None, strict: bool = True) -> Events:
    """Decode the events of one stream (default: the lowest-id ``EVTS`` stream).

    Events must have ``t >= 0``, lie inside the stream's declared (or the given) sensor and come in time
    order, as DV writes them; errors name the byte of the packet that holds the first event that does not.
    ``strict=False`` drops such events and counts them in ``meta["dropped"]``; it also reads a file cut short or
    with a damaged data table (see the module docstring): ``"truncated"``, ``"data_table"``, and ``"header_cut"``
    (the file ends inside its IOHeader: no events).

    Returns:
        :class:`Events` ``[N]``; ``meta`` has ``compression``, ``streams`` (id → XML attributes),
        ``stream`` (the decoded id) and ``packets`` (count per type identifier).
    """
    try:
        comp, table, xml, pos = _read_header(data, source, strict)
    except _HeaderCut:
        meta: dict[str, Any] = {"format": NAME, "compression": None, "streams": {}, "stream": None, "packets": {},
                                "dropped": {"header_cut": 1, "truncated": len(data) - len(MAGIC)}}
        return Events(np.empty(0, EVENT_DTYPE), (0, 0, 2), meta)
    cut: dict[str, int] = {}                   # not strict: what a cut or damaged end lost
    if table > len(data):                      # the file was cut before its data table
        cut["data_table"] = 1
    streams = _streams(xml, source)
    kinds = {sid: a.get("typeIdentifier", "?") for sid, a in streams.items()}
    evts = sorted(sid for sid, k in kinds.items() if k == "EVTS")
    if stream is not None and stream not in evts:
        raise ValueError(f"{source}: stream {stream} is not an event stream; event streams: {evts}")
    target = stream if stream is not None else (evts[0] if evts else None)
    end = table if -1 < table <= len(data) else len(data)
    until = f"the data table at byte {end}" if end == table else "the end of the file"
    salvage = not strict and end == len(data)  # a packet the file ends inside was cut, not damaged
    unpack = _decompressor(comp)
    packets: dict[str, int] = {}
    parts: list[bytes] = []
    where: list[tuple[int, int]] = []          # (packet offset, events) for error messages
    while pos < end:
        if end - pos < 8:
            if salvage:
                cut["truncated"] = end - pos
                break
            raise _err(source, pos, "an 8-byte packet header (stream id, size)",
                       f"{end - pos} bytes before {until}")
        sid, size = _PKT.unpack_from(data, pos)
        if sid not in kinds:
            raise _err(source, pos, f"a packet of a stream declared in the header {sorted(kinds)}",
                       f"stream id {sid}")
        if size > end - pos - 8:
            if salvage:
                cut["truncated"] = end - pos
                break
            raise _err(source, pos + 4, f"a packet size <= {end - pos - 8}, the bytes between the packet's "
                       f"8-byte header and {until}", size)
        packets[kinds[sid]] = packets.get(kinds[sid], 0) + 1
        if sid == target:
            try:
                buf = unpack(data[pos + 8:pos + 8 + size], MAX_RATIO * size + 4096)
                elems = _event_elements(buf)
            except ValueError as e:
                raise _err(source, pos + 8, str(e)) from None
            except fb.FlatbufferError as e:
                raise _err(source, pos + 8, f"{e.expected} (decompressed byte {e.pos})") from None
            parts.append(elems)
            where.append((pos, len(elems) // 16))
        pos += 8 + size
    if -1 < table <= len(data):                # a table at the very end is missing: the file was cut
        try:
            entries = _table_entries(data, table, unpack)
            if entries != sum(packets.values()):
                raise ValueError(f"an entry for each of the {sum(packets.values())} packets, got {entries} entries")
        except (ValueError, fb.FlatbufferError) as e:
            if strict:
                what = f"{e.expected} (decompressed byte {e.pos})" if isinstance(e, fb.FlatbufferError) else str(e)
                raise EventFormatError(source, table, f"a whole file data table: {what}", None, NAME,
                                       "file data table") from None
            cut["data_table"] = 1
    raw = np.frombuffer(b"".join(parts), dtype=EVENT_STRUCT)
    out = np.empty(raw.size, dtype=EVENT_DTYPE)
    out["t"] = raw["t"]
    info = streams.get(target, {}) if target is not None else {}
    if sensor_size is not None:
        W, H = int(sensor_size[0]), int(sensor_size[1])
    elif to_int(info.get("sizeX")) is not None and to_int(info.get("sizeY")) is not None:
        W, H = to_int(info["sizeX"]) or 0, to_int(info["sizeY"]) or 0
    else:
        W, H = smallest_size(raw)
    ends = np.cumsum([n for _, n in where])

    def packet_of(i: int) -> int:          # the byte where the packet holding event i starts
        return where[int(np.searchsorted(ends, i, side="right"))][0]

    x, y = raw["x"], raw["y"]
    negative = (x < 0) | (y < 0)
    if negative.any():                     # int16 fields: a negative coordinate cannot be stored as ours
        if strict:
            i = int(np.flatnonzero(negative)[0])
            raise _err(source, packet_of(i), f"coordinates inside the {W}×{H} sensor",
                       f"x={int(x[i])}, y={int(y[i])} (event {i})")
        keep = ~negative
        raw, out, x, y = raw[keep], out[keep], x[keep], y[keep]
    out["x"], out["y"] = x, y
    out["p"] = raw["on"] != 0
    out, dropped = finish(out, source, NAME, W=W, H=H, ordered=True, strict=strict, offset_of=packet_of)
    if negative.any():
        dropped["outside_sensor"] = dropped.get("outside_sensor", 0) + int(negative.sum())
    dropped.update(cut)
    meta = {"format": NAME, "compression": COMPRESSION[comp], "streams": streams,
            "stream": target, "packets": packets, **({"dropped": dropped} if dropped else {})}
    return Events(out, (W, H, 2), meta)


# ----------------------------------------------------------------------------------------- writing

def stream_xml(streams: dict[int, dict[str, Any]], compression: str) -> str:
    """The infoNode XML for ``{id: {"typeIdentifier": "EVTS", "sizeX": W, "sizeY": H, ...}}``."""
    rows = ['<dv version="2.0">', '    <node name="outInfo" path="/mainloop/Recorder/outInfo/">']
    for sid, attrs in streams.items():
        path = f"/mainloop/Recorder/outInfo/{sid}/"
        rows.append(f'        <node name="{sid}" path="{path}">')
        rows.append(f'            <attr key="compression" type="string">{compression.upper()}'
                    '</attr>')
        rows.append(f'            <attr key="typeIdentifier" type="string">'
                    f'{attrs["typeIdentifier"]}</attr>')
        rows.append(f'            <node name="info" path="{path}info/">')
        for k, v in attrs.items():
            if k != "typeIdentifier":
                kind = "int" if isinstance(v, int) else "string"
                rows.append(f'                <attr key="{k}" type="{kind}">{v}</attr>')
        rows += ["            </node>", "        </node>"]
    rows += ["    </node>", "</dv>", ""]
    return "\n".join(rows)


def io_header(compression: int, table_position: int, xml: str) -> bytes:
    """``u32 length | IOHeader flatbuffer`` (the bytes after the 14-byte magic)."""
    text = xml.encode("utf-8")
    fields = [struct.pack("<i", compression), struct.pack("<q", table_position), b"\0" * 4]
    tbl, tpos, fpos = fb.table(fields, 8)
    spos = 8 + len(tbl) + fb.pad_to(8 + len(tbl), 4)
    fields[2] = struct.pack("<I", spos - fpos[2])
    tbl, tpos, _ = fb.table(fields, 8)
    head = struct.pack("<I", tpos) + b"IOHE" + tbl
    head += bytes(spos - len(head)) + struct.pack("<I", len(text)) + text + b"\0"
    head += bytes(fb.pad_to(len(head), 4))
    return struct.pack("<I", len(head)) + head


def event_packet(raw: np.ndarray) -> bytes:
    """Uncompressed size-prefixed ``EVTS`` flatbuffer for an ``EVENT_STRUCT`` array."""
    tbl, tpos, fpos = fb.table([b"\0" * 4], 12, align=4)
    vec = 12 + len(tbl)
    vec += fb.pad_to(vec + 4, 8)                 # elements (int64 inside) 8-aligned
    tbl, tpos, _ = fb.table([struct.pack("<I", vec - fpos[0])], 12, align=4)
    buf = struct.pack("<I", tpos - 4) + b"EVTS" + tbl
    buf += bytes(vec - 4 - len(buf)) + struct.pack("<I", raw.size) + raw.tobytes()
    return struct.pack("<I", len(buf)) + buf


def _file_table(entries: list[tuple[int, int, int, int, int, int]]) -> bytes:
    """Size-prefixed ``FTAB`` FileDataTable; entries (payload offset, stream, size, n, t_start, t_end)."""
    root, rpos, rf = fb.table([b"\0" * 4], 12, align=4)
    vec = 12 + len(root)
    vec += fb.pad_to(vec, 4)
    root, rpos, _ = fb.table([struct.pack("<I", vec - rf[0])], 12, align=4)
    at = vec + 4 + 4 * len(entries)
    tables, slots = b"", []
    for off, sid, size, n, t0, t1 in entries:
        f = [struct.pack("<q", off), struct.pack("<ii", sid, size), struct.pack("<q", n),
             struct.pack("<q", t0), struct.pack("<q", t1)]
        tb, tp, _ = fb.table(f, at)
        tables, at = tables + tb, at + len(tb)
        slots.append(tp)
    buf = struct.pack("<I", rpos - 4) + b"FTAB" + root
    buf += bytes(vec - 4 - len(buf)) + struct.pack("<I", len(entries))
    buf += b"".join(struct.pack("<I", tp - (vec + 4 + 4 * i)) for i, tp in enumerate(slots))
    buf += tables
    return struct.pack("<I", len(buf)) + buf


def compress(buf: bytes, compression: int) -> bytes:
    """Compress one packet payload the way DV does (one LZ4 / Zstd frame per packet)."""
    if compression == 0:
        return buf
    if compression in (1, 2):
        lz4f = require_extra("lz4.frame", "AEDAT 4.0 LZ4 packets")
        return bytes(lz4f.compress(buf, compression_level=0 if compression == 1 else 9))
    zstd = require_extra("zstandard", "AEDAT 4.0 Zstd packets")
    return bytes(zstd.ZstdCompressor(level=3 if compression == 3 else 19).compress(buf))


def encode(ev: Events, *, compression: str = "lz4", packet_events: int = 4096,
           data_table: bool = True) -> list[bytes]:
    """One ``EVTS`` stream (id 0) in packets of ``packet_events``, optional file data table."""
    codes = {v: k for k, v in COMPRESSION.items()}
    if compression not in codes:
        raise ValueError(f"write aedat4: compression must be one of {sorted(codes)}, "
                         f"got {compression!r}")
    comp = codes[compression]
    a = ev.events
    W, H = int(ev.sensor_size[0]), int(ev.sensor_size[1])
    if a.size and (a["x"].max() >= min(W, 1 << 15) or a["y"].max() >= min(H, 1 << 15)):
        raise ValueError(f"write aedat4: events must fit the {W}×{H} sensor (int16 coordinates)")
    raw = np.zeros(a.size, dtype=EVENT_STRUCT)
    raw["t"], raw["x"], raw["y"], raw["on"] = a["t"], a["x"], a["y"], a["p"]
    xml = stream_xml({0: {"typeIdentifier": "EVTS", "sizeX": W, "sizeY": H,
                          "source": "spikeforge"}}, compression)
    body_at = len(MAGIC) + len(io_header(comp, 0, xml))
    packets, entries, pos = [], [], body_at
    step = max(1, packet_events)
    for s in range(0, a.size, step):
        chunk = raw[s:s + step]
        payload = compress(event_packet(chunk), comp)
        packets.append(_PKT.pack(0, len(payload)) + payload)
        # ByteOffset is the payload's, after the 8-byte packet header (as in DV's own files)
        entries.append((pos + 8, 0, len(payload), chunk.size, int(chunk["t"][0]), int(chunk["t"][-1])))
        pos += len(packets[-1])
    tail = [compress(_file_table(entries), comp)] if data_table else []
    return [MAGIC, io_header(comp, pos if data_table else -1, xml), *packets, *tail]

"""The few FlatBuffers operations AEDAT 4.0 needs, by hand and bounds-checked (no dependency).

Reading: a table at ``pos`` starts with an ``int32`` soffset to its vtable
(``vtable = pos − soffset``); the vtable is ``u16 vtable_size, u16 table_size,
u16 field_offset[k]``; a field is absent when its offset is 0 or lies past ``vtable_size``.
Offsets to sub-objects (strings, vectors, tables) are ``u32`` relative to where they are stored.
Every read is checked against the buffer length and raises :class:`FlatbufferError` (a byte
position inside the buffer, what was expected); callers turn it into an ``EventFormatError``
with the file offset.

Writing: :func:`table` lays out one table with a private vtable in front of it; the AEDAT writers
only need flat tables of scalars, one string and one vector, so no general builder is required.

FlatBuffers internals: https://flatbuffers.dev/internals/
"""

from __future__ import annotations

import struct

__all__ = ["FlatbufferError", "field_pos", "read_u32", "read_i32", "read_i64", "uoffset",
           "string", "vector", "table", "pad_to"]

_U16, _U32 = struct.Struct("<H"), struct.Struct("<I")
_I32, _I64 = struct.Struct("<i"), struct.Struct("<q")


class FlatbufferError(Exception):
    """Bad flatbuffer: ``pos`` is the byte inside the buffer, ``expected`` what should be there."""

    def __init__(self, pos: int, expected: str) -> None:
        super().__init__(f"byte {pos} of the flatbuffer: expected {expected}")
        self.pos, self.expected = pos, expected


def _read(s: struct.Struct, buf: bytes, pos: int, what: str) -> int:
    if pos < 0 or pos + s.size > len(buf):
        raise FlatbufferError(pos, f"{what} ({s.size} bytes) inside the {len(buf)}-byte buffer")
    return int(s.unpack_from(buf, pos)[0])


def read_u32(buf: bytes, pos: int, what: str = "a uint32") -> int:
    return _read(_U32, buf, pos, what)


def read_i32(buf: bytes, pos: int, what: str = "an int32") -> int:
    return _read(_I32, buf, pos, what)


def read_i64(buf: bytes, pos: int, what: str = "an int64") -> int:
    return _read(_I64, buf, pos, what)


def uoffset(buf: bytes, pos: int, what: str) -> int:
    """Follow the ``u32`` offset stored at ``pos`` (relative to ``pos``)."""
    target = pos + read_u32(buf, pos, f"the offset to {what}")
    if target >= len(buf):
        raise FlatbufferError(pos, f"an offset to {what} inside the buffer (points to {target})")
    return target


def field_pos(buf: bytes, table: int, index: int) -> int | None:
    """Absolute position of field ``index`` of the table at ``table``, or None if absent."""
    vt = table - read_i32(buf, table, "the table's vtable soffset")
    if not 0 <= vt <= len(buf) - 4:
        raise FlatbufferError(table, f"a vtable soffset pointing inside the buffer (to {vt})")
    vt_size = _read(_U16, buf, vt, "the vtable size")
    if vt_size < 4 or vt_size % 2:
        raise FlatbufferError(vt, f"a vtable size >= 4 and even, got {vt_size}")
    entry = 4 + 2 * index
    if entry + 2 > vt_size:
        return None
    off = _read(_U16, buf, vt + entry, f"vtable entry {index}")
    if off and table + off >= len(buf):
        raise FlatbufferError(vt + entry, f"field {index} inside the buffer (offset {off})")
    return table + off if off else None


def string(buf: bytes, pos: int, what: str) -> bytes:
    """The string whose offset is stored at ``pos`` (``u32`` length, bytes, NUL)."""
    start = uoffset(buf, pos, what)
    n = read_u32(buf, start, f"the length of {what}")
    if start + 4 + n > len(buf):
        raise FlatbufferError(start, f"{what} of {n} bytes inside the buffer")
    return bytes(buf[start + 4:start + 4 + n])


def vector(buf: bytes, pos: int, elem_size: int, what: str) -> tuple[int, int]:
    """``(first element position, length)`` of the vector whose offset is stored at ``pos``."""
    start = uoffset(buf, pos, what)
    n = read_u32(buf, start, f"the length of {what}")
    if start + 4 + n * elem_size > len(buf):
        raise FlatbufferError(start, f"{what} of {n} × {elem_size} bytes inside the buffer "
                              f"({len(buf) - start - 4} bytes left)")
    return start + 4, n


def pad_to(n: int, align: int) -> int:
    return (-n) % align


def table(fields: list[bytes], at: int, align: int = 8) -> tuple[bytes, int, list[int]]:
    """Lay out a table of inline ``fields`` (scalars, structs or u32 offsets already resolved).

    The vtable is written first, then padding, then the table (soffset, fields each aligned to its
    own size up to ``align``). ``at`` is the absolute position where the returned bytes will go,
    so that alignment is right in the final buffer.

    The layout depends only on the field sizes, so a caller that needs ``u32`` offsets to objects
    placed after the table calls it once with zero placeholders, computes the offsets from the
    returned field positions, and calls it again.

    Returns:
        (bytes, absolute position of the table, absolute position of each field).
    """
    # field offsets inside the table: after the 4-byte soffset, each aligned to min(size, align)
    offs, cur = [], 4
    for f in fields:
        a = min(len(f), align) if len(f) in (1, 2, 4, 8, 16) else 4
        cur += pad_to(cur, a)
        offs.append(cur)
        cur += len(f)
    tsize = cur + pad_to(cur, 4)
    vt = struct.pack(f"<HH{len(fields)}H", 4 + 2 * len(fields), tsize, *offs)
    pad = pad_to(at + len(vt), align)
    tpos = at + len(vt) + pad
    body = bytearray(tsize)
    body[0:4] = _I32.pack(tpos - at)
    for o, f in zip(offs, fields):
        body[o:o + len(f)] = f
    return vt + bytes(pad) + bytes(body), tpos, [tpos + o for o in offs]

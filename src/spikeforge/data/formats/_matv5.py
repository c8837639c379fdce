"""A small, bounds-checked reader for the numeric matrices of a MATLAB v5 / v7 ``.mat`` file.

Why not ``scipy.io.loadmat``: fuzzing it with mutated files crashed the interpreter (a bus error in
its compiled ``_mio5`` reader), which no ``except`` can catch. ASL-DVS needs only four numeric
column vectors, so this reader handles exactly that and refuses the rest by name.

Layout (MathWorks, "MAT-File Format", 2021, ch. 1): a 128-byte header (116 bytes text, 8 bytes
subsystem offset, u16 version 0x0100, 2 bytes endian mark ``IM`` = little-endian, ``MI`` = big),
then data elements, each a tag ``u32 type, u32 nbytes`` (or a *small* element: ``u16 nbytes,
u16 type`` and 4 data bytes in one 8-byte word) and data padded to 8 bytes. ``miCOMPRESSED`` (15)
holds one zlib-compressed element; ``miMATRIX`` (14) holds array flags, dimensions, name and the
real part. Numeric classes may store their data in a narrower type (a double array saved as uint8).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

__all__ = ["MatError", "read_numeric"]

_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8",
          13: "u8"}
_NUMERIC_CLASSES = set(range(6, 16))          # mxDOUBLE .. mxUINT64
MI_MATRIX, MI_COMPRESSED = 14, 15
MAX_RATIO = 1032                               # deflate cannot expand further than ~1032:1


class MatError(Exception):
    """Bad MAT bytes at ``pos`` (file offset of the element being read)."""

    def __init__(self, pos: int, expected: str, got: object = None) -> None:
        super().__init__(f"byte {pos}: expected {expected}" + (f", got {got}" if got else ""))
        self.pos, self.expected, self.got = pos, expected, got


def _tag(buf: bytes, pos: int, end: int, e: str, base: int) -> tuple[int, int, int]:
    """``(type, nbytes, data position)`` of the element at ``pos``; it must end before ``end``."""
    if end - pos < 8:
        raise MatError(base + pos, "an 8-byte data element tag", f"{end - pos} bytes")
    a, b = struct.unpack_from(e + "II", buf, pos)
    if a >> 16:                                # small element: nbytes in the upper half
        typ, n, data = a & 0xFFFF, a >> 16, pos + 4
        if n > 4:
            raise MatError(base + pos, "a small data element of at most 4 bytes", n)
        return typ, n, data
    if b > end - pos - 8:
        raise MatError(base + pos, f"an element of at most {end - pos - 8} bytes", b)
    return a, b, pos + 8


def _next(pos: int, typ_small: bool, n: int) -> int:
    return pos + 8 if typ_small else pos + 8 + n + (-n) % 8


def _matrix(buf: bytes, pos: int, end: int, e: str, base: int,
            names: set[str]) -> tuple[str, np.ndarray] | None:
    """Parse the sub-elements of one miMATRIX spanning ``[pos, end)``."""
    parts: list[tuple[int, int, int, int]] = []
    while pos < end and len(parts) < 4:
        typ, n, data = _tag(buf, pos, end, e, base)
        parts.append((typ, n, data, pos))
        pos = _next(pos, data == pos + 4, n)
    if len(parts) < 3:
        raise MatError(base + pos, "array flags, dimensions and name in a matrix element")
    (ft, fn, fd, fp), (dt, dn, dd, dp), (nt, nn, nd, _) = parts[:3]
    if ft != 6 or fn != 8:
        raise MatError(base + fp, "array flags (miUINT32, 8 bytes)", f"type {ft}, {fn} bytes")
    flags = struct.unpack_from(e + "I", buf, fd)[0]
    cls, complex_ = flags & 0xFF, bool(flags & 0x800)
    name = bytes(buf[nd:nd + nn]).decode("latin-1")
    if name not in names or cls not in _NUMERIC_CLASSES or complex_:
        return None
    if dt != 5 or dn % 4:
        raise MatError(base + dp, "dimensions as miINT32", f"type {dt}, {dn} bytes")
    dims = np.frombuffer(buf, e + "i4", dn // 4, dd)
    if dims.min(initial=0) < 0:
        raise MatError(base + dp, "non-negative dimensions", dims.tolist())
    if len(parts) < 4:
        raise MatError(base + pos, f"the real part of {name!r}")
    rt, rn, rd, rp = parts[3]
    if rt not in _TYPES:
        raise MatError(base + rp, "a numeric data type", rt)
    dtype = np.dtype(e + _TYPES[rt])
    count = int(np.prod(dims.astype(object))) if dims.size else 0
    if rn % dtype.itemsize or rn // dtype.itemsize != count:
        raise MatError(base + rp, f"{count} elements of {dtype} for dims {dims.tolist()}",
                       f"{rn} bytes")
    return name, np.frombuffer(buf, dtype, count, rd)


def read_numeric(data: bytes, names: set[str]) -> dict[str, np.ndarray]:
    """The real numeric matrices called ``names`` (flattened, column-major order kept as stored)."""
    if len(data) < 128:
        raise MatError(0, "a 128-byte MAT header", f"{len(data)} bytes")
    mark = bytes(data[126:128])
    if mark not in (b"IM", b"MI"):
        raise MatError(126, "the endian mark 'IM' or 'MI'", repr(mark))
    e = "<" if mark == b"IM" else ">"
    version = struct.unpack_from(e + "H", data, 124)[0]
    if version != 0x0100:
        raise MatError(124, "MAT version 0x0100 (v5/v7; v7.3 files are HDF5)", hex(version))
    out: dict[str, np.ndarray] = {}
    pos = 128
    while pos < len(data):
        typ, n, start = _tag(data, pos, len(data), e, 0)
        nxt = pos + 8 if start == pos + 4 else start + n    # top-level elements are not padded
        buf, base, lo, hi = data, 0, start, start + n
        got: tuple[str, np.ndarray] | None
        if typ == MI_COMPRESSED:
            d = zlib.decompressobj()
            try:
                buf = d.decompress(data[start:start + n], MAX_RATIO * n + 1024)
            except zlib.error as err:
                raise MatError(start, "a valid zlib stream", str(err)) from None
            if d.unconsumed_tail or not d.eof:
                raise MatError(start, f"a complete zlib stream expanding at most {MAX_RATIO}×")
            try:
                typ, n, lo = _tag(buf, 0, len(buf), e, 0)
                got = _matrix(buf, lo, lo + n, e, 0, names) if typ == MI_MATRIX else None
            except MatError as err:   # positions inside the inflated data are not file offsets
                raise MatError(start, f"{err.expected} (decompressed byte {err.pos})",
                               err.got) from None
        elif typ == MI_MATRIX:
            got = _matrix(buf, lo, hi, e, base, names)
        else:
            got = None
        if got is not None:
            out.setdefault(got[0], got[1])
        pos = nxt
    return out

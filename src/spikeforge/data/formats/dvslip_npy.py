"""DVS-Lip (Tan et al. 2022) ``.npy``: a structured array with fields ``t, x, y, p`` on 128×128.

The ``.npy`` header is parsed with numpy's own header reader, then the declared size is checked
against the bytes that follow *before* anything is allocated (``np.load`` on a file-like object
allocates the declared shape first). Object dtypes (pickles) are refused. Any ``.npy`` holding a
structured ``t, x, y, p`` array — e.g. one written by :func:`encode` — reads the same way.

Tan, Wang, Yan, Zhang, Xu, Chen (2022), "Multi-grained spatio-temporal features perceived network
for event-based lip-reading", CVPR.
"""

from __future__ import annotations

import io
import math
import warnings

import numpy as np

from ..events import EVENT_DTYPE, Events
from .errors import EventFormatError

__all__ = ["NAME", "EXTENSIONS", "SENSOR", "decode", "encode", "sniff"]

NAME = "dvslip_npy"
EXTENSIONS = (".npy",)
MAGIC = b"\x93NUMPY"
SENSOR = (128, 128)


def sniff(head: bytes) -> bool:
    return head.startswith(MAGIC)


def decode(data: bytes, source: str = "<bytes>", *, sensor_size: tuple[int, ...] | None = None,
           strict: bool = True) -> Events:
    """Decode a structured ``.npy`` event array (sensor 128×128 unless ``sensor_size`` is given).

    Every event must lie inside the sensor, with ``t >= 0`` and a polarity in {-1, 0, 1};
    ``strict=False`` drops those that do not and counts them in ``meta["dropped"]``."""
    f = io.BytesIO(data)
    fmt = np.lib.format
    try:
        major, _minor = fmt.read_magic(f)
        read = {1: fmt.read_array_header_1_0, 2: fmt.read_array_header_2_0}.get(major)
        if read is None:
            raise ValueError(f"npy format version 1 or 2, got {major}")
        with warnings.catch_warnings():   # "created on Python 2" header notes are not errors
            warnings.simplefilter("ignore")
            shape, fortran, dtype = read(f)
    except Exception as e:  # numpy's header parser (tokenize, literal_eval, np.dtype) raises many
        # types; the header is capped at 10 kB by numpy, so nothing large was allocated
        raise EventFormatError(source, 0, "a .npy header", f"{type(e).__name__}: {e}",
                               NAME) from None
    body = f.tell()
    names = set(dtype.names or ())
    if dtype.hasobject or not {"t", "x", "y", "p"} <= names or len(shape) > 1:
        raise EventFormatError(source, 8, "a 1-D structured array with numeric fields t, x, y, p",
                               f"dtype {dtype}, shape {shape}", NAME)
    n = math.prod(int(d) for d in shape)
    if n * dtype.itemsize > len(data) - body:
        raise EventFormatError(source, body, f"{n} × {dtype.itemsize} bytes of array data",
                               f"{len(data) - body} bytes (truncated)", NAME)
    arr = np.frombuffer(data, dtype=dtype, count=n, offset=body)
    W, H = (int(sensor_size[0]), int(sensor_size[1])) if sensor_size is not None else SENSOR
    cols, drop = {}, np.zeros(n, dtype=bool)
    dropped: dict[str, int] = {}
    for k, lo, hi in (("x", 0, W), ("y", 0, H), ("p", -1, 2), ("t", 0, 1 << 62)):
        c = arr[k]
        if c.dtype.kind not in "biuf" or c.ndim != 1:
            raise EventFormatError(source, 8, f"a numeric scalar field {k}", str(c.dtype), NAME)
        if c.size and not np.isfinite(c).all():
            i = int(np.flatnonzero(~np.isfinite(c))[0])
            raise EventFormatError(source, body + i * dtype.itemsize, f"a finite {k}", c[i], NAME)
        r = np.rint(c).astype(np.int64) if c.dtype.kind == "f" else c.astype(np.int64)
        bad = (r < lo) | (r >= hi)
        if bad.any():
            if strict:
                i = int(np.flatnonzero(bad)[0])
                raise EventFormatError(source, body + i * dtype.itemsize,
                                       f"{k} in [{lo}, {hi})" + (" (inside the sensor)" if k in "xy" else ""),
                                       c[i], NAME)
            reason = {"x": "outside_sensor", "y": "outside_sensor", "t": "negative_time", "p": "bad_polarity"}[k]
            dropped[reason] = dropped.get(reason, 0) + int((bad & ~drop).sum())
            drop |= bad
        cols[k] = r
    keep = ~drop
    out = np.empty(int(keep.sum()), dtype=EVENT_DTYPE)
    out["t"], out["x"], out["y"] = cols["t"][keep], cols["x"][keep], cols["y"][keep]
    out["p"] = cols["p"][keep] > 0
    meta = {"format": NAME, "fortran_order": bool(fortran), **({"dropped": dropped} if dropped else {})}
    return Events(out, (W, H, 2), meta)


def encode(ev: Events) -> list[bytes]:
    """The events as a ``.npy`` of ``EVENT_DTYPE`` (fields t, x, y, p)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(ev.events, dtype=EVENT_DTYPE), allow_pickle=False)
    return [buf.getvalue()]

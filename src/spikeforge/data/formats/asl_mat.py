"""ASL-DVS (Bi et al. 2019): one MATLAB v5 ``.mat`` per sample, column vectors ``x, y, ts, pol``.

DAVIS240 sensor, 240×180. The files store y bottom-up, so ``y = 179 − y`` (as Tonic does) gives our
y-down convention; ``pol`` is 0/1 (or −1/+1, mapped to 0/1); ``ts`` is µs. Parsed by the
bounds-checked ``_matv5`` reader (MAT v5 / v7, compressed or not), not ``scipy.io.loadmat``,
which crashed the interpreter on mutated files during fuzzing. MAT v7.3 (HDF5) files are
refused by name.

Bi, Chadha, Abbas, Bourtsoulatze, Andreopoulos (2019), "Graph-based object classification for
neuromorphic vision sensing", ICCV.
"""

from __future__ import annotations

import numpy as np

from ..events import EVENT_DTYPE, Events
from ._matv5 import MatError, read_numeric
from .errors import EventFormatError

__all__ = ["NAME", "EXTENSIONS", "SENSOR", "decode", "sniff"]

NAME = "asl_mat"
EXTENSIONS = (".mat",)
MAGIC = b"MATLAB 5.0 MAT-file"
SENSOR = (240, 180)


def sniff(head: bytes) -> bool:
    return head.startswith(MAGIC)


def _integers(a: np.ndarray, key: str, lo: int, hi: int, source: str) -> np.ndarray:
    """``a`` as int64, checking every value is an integer in ``[lo, hi)``."""
    if a.dtype.kind not in "biuf" or (a.size and not np.isfinite(a).all()):
        raise EventFormatError(source, None, "a real numeric column", str(a.dtype), NAME, where=key)
    r = a.astype(np.int64)
    if a.size and (np.any(r != a) or r.min() < lo or r.max() >= hi):
        raise EventFormatError(source, None, f"integers in [{lo}, {hi})",
                               f"values in [{a.min()}, {a.max()}]", NAME, where=key)
    return r


def decode(data: bytes, source: str = "<bytes>", *, flip_y: bool = True, strict: bool = True) -> Events:
    """Decode one ASL-DVS sample.

    Args:
        flip_y: convert the file's bottom-up rows (``y = 179 − y``); False keeps them.
        strict: raise ``EventFormatError`` for an event outside the 240×180 sensor or with ``ts < 0``
            (default); ``False`` drops such events and counts them in ``meta["dropped"]``.

    Returns:
        :class:`Events` ``[N]`` on ``(240, 180, 2)``.
    """
    if not data.startswith(MAGIC):
        raise EventFormatError(source, 0, "a MATLAB 5.0 MAT-file header", repr(data[:19]), NAME)
    try:
        mat = read_numeric(data, {"x", "y", "ts", "pol"})
    except MatError as e:
        raise EventFormatError(source, e.pos, e.expected, e.got, NAME) from None
    missing = [k for k in ("x", "y", "ts", "pol") if k not in mat]
    if missing:
        raise EventFormatError(source, None, "variables x, y, ts, pol", f"missing {missing}", NAME,
                               where="MAT variables")
    cols = {k: np.asarray(mat[k]).ravel() for k in ("x", "y", "ts", "pol")}
    n = cols["ts"].size
    if any(c.size != n for c in cols.values()):
        raise EventFormatError(source, None, "x, y, ts, pol of equal length",
                               {k: c.size for k, c in cols.items()}, NAME, where="MAT variables")
    W, H = SENSOR
    wide = 1 << 62
    x, y = (_integers(cols[k], k, -wide, wide, source) for k in ("x", "y"))
    t = _integers(cols["ts"], "ts", -wide, wide, source)
    p = _integers(cols["pol"], "pol", -1, 2, source)
    dropped: dict[str, int] = {}
    outside, negative = (x < 0) | (x >= W) | (y < 0) | (y >= H), t < 0
    if strict and (outside.any() or negative.any()):
        key, bad, what = (("x, y", outside, f"coordinates inside the {W}×{H} sensor") if outside.any()
                          else ("ts", negative, "times >= 0"))
        i = int(np.flatnonzero(bad)[0])
        raise EventFormatError(source, None, what, f"event {i}: x={x[i]}, y={y[i]}, ts={t[i]}", NAME, where=key)
    keep = ~(outside | negative)
    if not keep.all():
        dropped = {k: int(v) for k, v in (("outside_sensor", outside.sum()),
                                          ("negative_time", (negative & ~outside).sum())) if v}
        x, y, t, p = x[keep], y[keep], t[keep], p[keep]
    out = np.empty(x.size, dtype=EVENT_DTYPE)
    out["t"], out["x"] = t, x
    out["y"] = (H - 1) - y if flip_y else y
    out["p"] = p > 0
    return Events(out, (W, H, 2), {"format": NAME, **({"dropped": dropped} if dropped else {})})

"""SHD / SSC spiking-audio HDF5 (Cramer et al. 2020): one sample of a ``spikes/times, units`` file.

Datasets: ``spikes/times`` (vlen float32, **seconds**), ``spikes/units`` (vlen uint16, channel
0..699), ``labels`` (uint16), optionally ``extra/speaker``. A sample becomes events with

    t = round(times · 10**6) µs,   x = unit,   y = 0,   p = 1,   sensor_size = (700, 1, 2)

The sensor keeps the ``(W, H, 2)`` shape every other reader returns, so frame integration and
transforms need no special case; all events are ON, so channel 0 of a frame stays empty (Tonic uses
``(700, 1, 1)`` instead). Rounding (not truncation) keeps float32 seconds exact to the µs.

A file holds thousands of samples: ``index=`` picks one (required when there are several);
:func:`read_samples` returns all of them from one open.

Limitation: the container is parsed by libhdf5 (through h5py), which is not hardened against
corrupted metadata: in our fuzzing about one in a thousand files with random bytes flipped in the
HDF5 structures made ``H5Dread`` loop forever (no exception, no memory growth). Truncated files,
foreign bytes and bad spike payloads are all reported as ``EventFormatError``; files from an
untrusted source should be checked against the published SHD/SSC checksums before reading.

Cramer, Stradmann, Schemmel, Zenke (2020), "The Heidelberg spiking data sets for the systematic
evaluation of spiking neural networks", IEEE TNNLS.
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

from ..events import EVENT_DTYPE, Events
from .errors import EventFormatError, require_extra

__all__ = ["NAME", "EXTENSIONS", "N_CHANNELS", "decode", "read_samples", "sniff"]

NAME = "hdf5_spikes"
EXTENSIONS = (".h5", ".hdf5")
MAGIC = b"\x89HDF\r\n\x1a\n"
N_CHANNELS = 700


def sniff(head: bytes) -> bool:
    return head.startswith(MAGIC)


def _open(data: bytes | str | os.PathLike, source: str) -> Any:
    h5py = require_extra("h5py", "SHD/SSC HDF5 files")
    try:
        f = h5py.File(io.BytesIO(data) if isinstance(data, bytes) else data, "r")
        return f, f["spikes/times"], f["spikes/units"]
    except Exception as e:  # h5py raises OSError, KeyError, ValueError, RuntimeError, TypeError …
        if isinstance(data, bytes) and not data.startswith(MAGIC):
            raise EventFormatError(source, 0, "the HDF5 signature", repr(data[:8]), NAME) from None
        raise EventFormatError(source, None, "an HDF5 file with datasets spikes/times and "
                               "spikes/units", f"{type(e).__name__}: {e}", NAME,
                               where="HDF5 container") from None


def _sample(times: Any, units: Any, i: int, n_channels: int, source: str, strict: bool = True) -> Events:
    where = f"spikes/times[{i}], spikes/units[{i}]"
    try:
        tt = np.asarray(times, dtype=np.float64).ravel()
        uu = np.asarray(units).ravel()
    except (TypeError, ValueError) as e:
        raise EventFormatError(source, None, "numeric vlen times and units", str(e), NAME,
                               where=where) from None
    if tt.shape != uu.shape:
        raise EventFormatError(source, None, "as many times as units", f"{tt.size} vs {uu.size}",
                               NAME, where=where)
    if uu.size and not np.issubdtype(uu.dtype, np.integer):
        raise EventFormatError(source, None, f"integer units in [0, {n_channels})", str(uu.dtype), NAME, where=where)
    bad_u = (uu < 0) | (uu >= n_channels)
    with np.errstate(invalid="ignore"):
        bad_t = ~(np.isfinite(tt) & (tt >= 0) & (tt < 1e6))
    if strict and bad_u.any():
        raise EventFormatError(source, None, f"integer units in [0, {n_channels})",
                               f"{uu.dtype} in [{uu.min()}, {uu.max()}]", NAME, where=where)
    if strict and bad_t.any():
        raise EventFormatError(source, None, "finite times >= 0 in seconds", None, NAME, where=where)
    dropped = {k: int(v) for k, v in (("outside_sensor", bad_u.sum()), ("bad_time", (bad_t & ~bad_u).sum())) if v}
    if dropped:
        keep = ~(bad_u | bad_t)
        tt, uu = tt[keep], uu[keep]
    out = np.zeros(tt.size, dtype=EVENT_DTYPE)
    out["t"] = np.rint(tt * 1e6)
    out["x"] = uu
    out["p"] = 1
    return Events(out, (n_channels, 1, 2), {"format": NAME, "index": i, **({"dropped": dropped} if dropped else {})})


def _labels(f: Any, n: int) -> np.ndarray | None:
    """``labels`` as int64 ``[S]``, or None when the file has none (or a differently sized one)."""
    if "labels" not in f:
        return None
    lab = np.asarray(f["labels"][()]).ravel()
    return lab.astype(np.int64) if lab.size == n and np.issubdtype(lab.dtype, np.integer) else None


def decode(data: bytes | str | os.PathLike, source: str = "<bytes>", *, index: int | None = None,
           n_channels: int = N_CHANNELS, strict: bool = True) -> Events:
    """One sample as :class:`Events` ``[N]``; ``meta`` has ``index``, ``label``, ``n_samples``. Units must lie
    in ``[0, n_channels)`` and times be finite and ``>= 0`` (``strict=False`` drops and counts the rest)."""
    f, times, units = _open(data, source)
    with f:
        try:
            n, same = len(times), units.shape == times.shape
        except Exception as e:
            raise EventFormatError(source, None, "readable spikes/times and spikes/units",
                                   f"{type(e).__name__}: {e}", NAME,
                                   where="HDF5 container") from None
        if not same or n == 0:
            raise EventFormatError(source, None, "one or more samples, spikes/units shaped like "
                                   "spikes/times", f"{units.shape} vs {times.shape}", NAME,
                                   where="spikes")
        if index is None and n != 1:
            raise ValueError(f"{source}: holds {n} samples; pass index= (0..{n - 1}) or use "
                             "hdf5_spikes.read_samples")
        i = 0 if index is None else index
        if not -n <= i < n:
            raise IndexError(f"{source}: sample index {i} out of range for {n} samples")
        i %= n
        try:
            t_i, u_i, lab = times[i], units[i], _labels(f, n)
        except Exception as e:
            raise EventFormatError(source, None, "readable vlen spikes/times and spikes/units",
                                   f"{type(e).__name__}: {e}", NAME, where=f"sample {i}") from None
    ev = _sample(t_i, u_i, i, n_channels, source, strict)
    ev.meta.update(n_samples=n, label=None if lab is None else int(lab[i]))
    return ev


def read_samples(path: str | os.PathLike | bytes, n_channels: int = N_CHANNELS,
                 ) -> tuple[list[Events], np.ndarray | None]:
    """Every sample of the file (one open, one loop per sample) and the labels ``[S]`` (or None)."""
    source = "<bytes>" if isinstance(path, bytes) else os.fspath(path)
    f, times, units = _open(path, source)
    with f:
        try:
            tt, uu = times[()], units[()]
            lab = _labels(f, len(tt))
        except Exception as e:
            raise EventFormatError(source, None, "readable vlen spikes/times and spikes/units",
                                   f"{type(e).__name__}: {e}", NAME,
                                   where="HDF5 container") from None
    if len(tt) != len(uu):
        raise EventFormatError(source, None, "as many units rows as times rows",
                               f"{len(uu)} vs {len(tt)}", NAME, where="spikes")
    return [_sample(a, b, i, n_channels, source) for i, (a, b) in enumerate(zip(tt, uu))], lab

"""Event-file readers and writers: one module per format, one entry point each way.

    ev = read_events("user01_led.aedat")            # format from magic bytes, then extension
    ev.events["t"], ev.sensor_size                  # EVENT_DTYPE [N], (W, H, 2)
    write_events("sample.bin", ev)                  # format from extension (or format=...)

Every reader returns :class:`~spikeforge.data.events.Events` in the one convention (t µs int64,
x right, y down, p 1 = ON) and raises :class:`EventFormatError` (a ``ValueError``) naming the file,
the byte offset and what it expected on malformed input — including input that decodes but breaks what
the format guarantees: a header cut short or inconsistent with the layout, coordinates outside the declared
or known sensor, negative times, times out of order where the format stores them in order, impossible time
jumps, a file cut short. ``strict=False`` salvages what it can and records what it dropped in ``meta["dropped"]``:
counts of events by reason (``outside_sensor``, ``negative_time``, ``backward_time`` — the fewest events that
leave the rest in time order — and the EVT decoders' ``time_jump`` / ``unknown_word`` words) and, for a damaged
end, ``truncated`` (bytes after the last whole record, word or packet before the cut: every event before it comes
back), ``header_cut`` (the file ends inside its header: no events) and ``data_table`` (an AEDAT 4.0 file data table
missing or damaged; strict reading refuses it). Writers are atomic (temp file + rename), refuse to overwrite
unless ``overwrite=True``, and refuse unsorted events for a format that stores them in time order.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ...core import atomic_write
from ..events import Events, check_events
from ._io import Source, as_events, load_bytes, read_file
from .errors import EventFormatError
from .registry import ALIASES, FORMATS, HEAD_BYTES, FormatSpec, detect_format, get_format

__all__ = ["read_events", "write_events", "detect_format", "get_format", "available_formats",
           "EventFormatError", "FormatSpec", "FORMATS", "ALIASES"]

_LAZY_EXT = (".h5", ".hdf5")     # sniff the head only: these files are large and read lazily
_WRITE_EXT = {".bin": "nmnist", ".aedat4": "aedat4", ".dat": "dat", ".npy": "dvslip_npy"}


def available_formats(writable: bool = False) -> list[str]:
    """Format names (those with a writer when ``writable``)."""
    return [n for n, s in FORMATS.items() if s.writable or not writable]


def read_events(source: Source, format: str | None = None, **options: Any) -> Events:
    """Read an event file (path or bytes) into :class:`Events`.

    Args:
        source: a path, or the file's bytes.
        format: a name from :func:`available_formats` or an alias (``"shd"``, ``"aedat31"`` …);
            default: detected from the magic bytes, then the extension.
        **options: passed to the format's decoder, e.g. ``sensor_size=(W, H)`` (most formats),
            ``strict=False`` (salvage: drop what breaks the format's guarantees, read a cut file up to the cut,
            counted in ``meta["dropped"]``), ``chip="davis346"`` (aedat2), ``stream=`` (aedat4), ``index=``
            (hdf5_spikes).

    Returns:
        :class:`Events`: ``events`` (``EVENT_DTYPE [N]``), ``sensor_size (W, H, 2)``, ``meta``.

    Raises:
        EventFormatError: the bytes are not a valid file of the format (file, byte offset, what
            was expected). ``ImportError`` names ``pip install 'spikeforge[data]'`` when an extra
            (h5py, lz4, zstandard, scipy) the format needs is missing.
    """
    spec: FormatSpec | None = get_format(format) if format is not None else None
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = load_bytes(source)
        spec = spec or detect_format(data[:HEAD_BYTES])
        return spec.module.decode(data, name, **options)
    name = str(os.fspath(source))
    if os.path.isdir(name):
        raise EventFormatError(name, None, "an event file", "a folder", spec.name if spec else None, "path")
    if spec is None and os.path.splitext(name)[1].lower() in _LAZY_EXT:
        spec = detect_format(read_file(name, HEAD_BYTES), name)
    if spec is not None and spec.opens_path:       # HDF5: h5py reads only what it needs
        return spec.module.decode(name, name, **options)
    data = read_file(name)
    if spec is None:
        spec = detect_format(data[:HEAD_BYTES], name)
        if spec.opens_path:
            return spec.module.decode(name, name, **options)
    return spec.module.decode(data, name, **options)


def write_events(path: str | os.PathLike, events: Events | np.ndarray, format: str | None = None,
                 *, sensor_size: tuple[int, ...] | None = None, overwrite: bool = False,
                 **options: Any) -> Path:
    """Write events atomically in ``format`` (default from the extension: .bin .aedat4 .dat .npy).

    Args:
        events: :class:`Events`, or a structured ``t, x, y, p`` array with ``sensor_size``.
        format: ``nmnist``, ``aedat2``, ``aedat3``, ``aedat4``, ``dat``, ``evt2``, ``evt3``,
            ``dvslip_npy`` (or an alias).
        overwrite: replace an existing file (otherwise ``FileExistsError``).
        **options: passed to the encoder, e.g. ``compression="zstd"`` (aedat4), ``chip=`` (aedat2).

    Returns:
        The path written.
    """
    p = Path(os.fspath(path))
    if format is None:
        name = _WRITE_EXT.get(p.suffix.lower())
        if name is None:
            raise ValueError(f"write_events: cannot tell the format of {p} from its extension; "
                             f"pass format= one of {available_formats(writable=True)}")
        format = name
    spec = get_format(format)
    if not spec.writable:
        raise ValueError(f"write_events: no writer for {spec.name}; writable formats: "
                         f"{available_formats(writable=True)}")
    ev = as_events(events, sensor_size, spec.name)
    check_events(ev.events, ev.sensor_size, source=f"write_events({p})")
    t = ev.events["t"]
    if spec.ordered and t.size > 1 and bool(np.any(t[1:] < t[:-1])):
        i = int(np.flatnonzero(t[1:] < t[:-1])[0]) + 1
        raise ValueError(f"write_events({p}): {spec.name} stores events in time order, but event {i} has "
                         f"t={int(t[i])} after t={int(t[i - 1])}; sort them first "
                         "(events[np.argsort(events['t'], kind='stable')])")
    return atomic_write(p, spec.module.encode(ev, **options), overwrite=overwrite)

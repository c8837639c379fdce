"""Format registry: names, aliases, extensions, detection (magic bytes first, extension second)."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from functools import cached_property
from types import ModuleType

from ._prophesee import raw_kind
from .errors import EventFormatError

__all__ = ["FormatSpec", "FORMATS", "ALIASES", "get_format", "detect_format"]


@dataclass(frozen=True)
class FormatSpec:
    """One file format: its module provides ``decode(data, source, **options) -> Events``,
    optionally ``encode(events, **options) -> list[bytes]``, and ``sniff(head) -> bool``."""

    name: str
    module_name: str          # the module in this package, imported on first use
    description: str
    opens_path: bool = False  # the decoder takes the path itself (h5py reads lazily)
    ordered: bool = True      # the format stores events in time order (readers check it, writers require it)

    @cached_property
    def module(self) -> ModuleType:
        return importlib.import_module(f"{__package__}.{self.module_name}")

    @property
    def extensions(self) -> tuple[str, ...]:
        return tuple(self.module.EXTENSIONS)

    @property
    def writable(self) -> bool:
        return hasattr(self.module, "encode")


FORMATS: dict[str, FormatSpec] = {s.name: s for s in (
    FormatSpec("nmnist", "nmnist_bin", "N-MNIST / N-Caltech101 ATIS .bin (40-bit events)"),
    FormatSpec("aedat2", "aedat2", "AEDAT 2.0 (jAER; DVS128, DAVIS240/346)"),
    FormatSpec("aedat3", "aedat31", "AEDAT 3.1 (cAER; DVS128 Gesture)"),
    FormatSpec("aedat4", "aedat4", "AEDAT 4.0 (DV; flatbuffer packets, none/LZ4/Zstd)"),
    FormatSpec("dat", "prophesee_dat", "Prophesee DAT v2 (N-CARS, Gen1/Gen4 .dat)"),
    FormatSpec("evt2", "evt2", "Prophesee RAW EVT 2.0"),
    FormatSpec("evt3", "evt3", "Prophesee RAW EVT 3.0"),
    FormatSpec("hdf5_spikes", "hdf5_spikes", "SHD / SSC HDF5 (spikes/times, spikes/units)", True, False),
    FormatSpec("asl_mat", "asl_mat", "ASL-DVS MATLAB .mat (x, y, ts, pol)", ordered=False),
    FormatSpec("dvslip_npy", "dvslip_npy", "DVS-Lip structured .npy (t, x, y, p)", ordered=False),
)}
"""Event-file formats by name, with their reader, writer and file extensions."""

ALIASES = {"ncaltech101": "nmnist", "bin": "nmnist", "aedat31": "aedat3", "aedat3.1": "aedat3",
           "aedat4.0": "aedat4", "aedat2.0": "aedat2", "prophesee_dat": "dat", "evt2.0": "evt2",
           "evt3.0": "evt3", "shd": "hdf5_spikes", "ssc": "hdf5_spikes", "hdf5": "hdf5_spikes",
           "asl_dvs": "asl_mat", "mat": "asl_mat", "dvs_lip": "dvslip_npy", "npy": "dvslip_npy"}
"""Other names and extensions accepted for a format (``bin`` → ``nmnist``, ``aedat3.1`` → ``aedat3``, …)."""

# extensions that name one format unambiguously (".aedat" and ".raw" need the magic / header)
_BY_EXTENSION = {".bin": "nmnist", ".aedat4": "aedat4", ".dat": "dat", ".h5": "hdf5_spikes",
                 ".hdf5": "hdf5_spikes", ".mat": "asl_mat", ".npy": "dvslip_npy"}
_MAGIC_ORDER = ("aedat2", "aedat3", "aedat4", "hdf5_spikes", "asl_mat", "dvslip_npy")
_MAGIC_FIRST = (b"#", b"\x89", b"M", b"\x93")
HEAD_BYTES = 4096


def _listing() -> str:
    return "; ".join(f"{n} ({', '.join(s.extensions)})" for n, s in FORMATS.items())


def get_format(name: str) -> FormatSpec:
    """The spec for a format name or alias (case-insensitive); unknown names list the known ones."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in FORMATS:
        raise ValueError(f"unknown event format {name!r}; known formats: {_listing()}")
    return FORMATS[key]


def detect_format(head: bytes, path: str | os.PathLike | None = None) -> FormatSpec:
    """Guess the format from the first bytes (magic) and, failing that, the file extension.

    Raises:
        EventFormatError: nothing matches; the message lists the known formats.
    """
    source = os.fspath(path) if path is not None else "<bytes>"
    first = head[:1]
    if first in _MAGIC_FIRST:                  # every magic starts with one of these bytes
        for name in _MAGIC_ORDER:
            if FORMATS[name].module.sniff(head):
                return FORMATS[name]
        if head.startswith(b"#!AER-DAT"):
            version = head[9:13].split(b"\r")[0].split(b"\n")[0]
            raise EventFormatError(source, 0, "AEDAT version 2.0, 3.1 or 4.0", repr(version))
    if first == b"%":
        kind = raw_kind(head[:HEAD_BYTES])
        if kind is not None and kind.startswith("raw:"):
            raise EventFormatError(source, 0, "Prophesee RAW EVT 2.0 or 3.0", f"evt {kind[4:]}")
        if kind is not None:
            return FORMATS[kind]
    ext = os.path.splitext(os.fspath(path))[1].lower() if path is not None else ""
    if ext in _BY_EXTENSION:
        return FORMATS[_BY_EXTENSION[ext]]
    raise EventFormatError(source, 0, f"a known event file (pass format=; known: {_listing()})",
                           repr(bytes(head[:16])))

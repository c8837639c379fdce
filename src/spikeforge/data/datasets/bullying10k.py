"""Bullying10K: 10 violent / normal interactions recorded with a DAVIS346 (346×260).

The release ships one ``.npy`` per sample holding an *object* array (a pickle): a sequence of
frames, each a sequence of ``(t, x, y, p, …)`` rows. ``np.load(allow_pickle=True)`` would run any
code a tampered file carries, so :func:`load_object_npy` unpickles with an allow-list that admits
only numpy array/dtype/scalar reconstruction (plain lists, tuples and numbers need no lookup).

Split as the authors' loader (and SpikingJelly): all files, category by category in label order,
then every 5th file (positions 0, 5, 10, …) is validation and the rest train. The authors list
files with ``os.listdir`` / ``os.walk`` (file-system order); here the order is sorted, so the split
is reproducible across machines.

Dong et al. (2023), "Bullying10K: a large-scale neuromorphic dataset towards
privacy-preserving bullying recognition", NeurIPS Datasets and Benchmarks.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..events import Events, check_events, make_events
from ._common import EventFolderDataset, natural_key, resolve_root

__all__ = ["Bullying10K", "BULLYING_CLASSES", "load_object_npy"]

BULLYING_CLASSES = ("handshake", "slapping", "punching", "walking", "fingerguess", "strangling",
                    "greeting", "pushing", "hairgrabs", "kicking")

_ALLOWED = {(m, n) for m in ("numpy.core.multiarray", "numpy._core.multiarray")
            for n in ("_reconstruct", "scalar")} | {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer")}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: only numpy arrays, "
                                     "dtypes and scalars are allowed in dataset files")


def load_object_npy(path: str | os.PathLike) -> np.ndarray:
    """Load a ``.npy`` file; object arrays are unpickled with the numpy-only allow-list.

    Raises:
        pickle.UnpicklingError: the file references anything but numpy arrays/dtypes/scalars.
    """
    fmt = np.lib.format
    with open(path, "rb") as f:
        major, _ = fmt.read_magic(f)
        read = {1: fmt.read_array_header_1_0, 2: fmt.read_array_header_2_0}.get(major)
        if read is None:
            raise ValueError(f"{path}: .npy format version {major} not supported (1 or 2)")
        _shape, _fortran, dtype = read(f)
        if not dtype.hasobject:
            f.seek(0)
            return np.load(f, allow_pickle=False)
        return np.asarray(_NumpyOnlyUnpickler(f).load())


def _rows(frame: Any) -> np.ndarray:
    a = np.asarray(frame)
    if a.dtype.names:
        return np.stack([a[n] for n in a.dtype.names[:4]], axis=-1).reshape(-1, 4)
    if a.size == 0:
        return np.zeros((0, 4))
    return a.reshape(-1, a.shape[-1])[:, :4]


class Bullying10K(EventFolderDataset):
    """Bullying10K: ``(events, label 0..9)``; ``train=False`` is the validation fifth."""

    url = ("https://github.com/Brain-Cog-Lab/Bullying10K (figshare archives handshake.zip … "
           "kicking.zip; arXiv:2306.11546)")
    layout = """
<root>/                       (unzip the ten archives into <root>)
  handshake/**/*.npy, slapping/**/*.npy, punching/…, walking/…, fingerguess/…,
  strangling/…, greeting/…, pushing/…, hairgrabs/…, kicking/…
  *.json                      (annotations, not used)
"""
    sensor_size = (346, 260, 2)

    def __init__(self, root: str | os.PathLike, train: bool = True,
                 transform: Callable[[Events], Any] | None = None,
                 target_transform: Callable[[int], Any] | None = None) -> None:
        super().__init__(resolve_root(root, ("Bullying10K", "bullying10k")), transform,
                         target_transform)
        self.train = train
        self.classes = list(BULLYING_CLASSES)
        every: list[tuple[Path, int]] = []
        for label, name in enumerate(self.classes):
            folder = self.require_dir(self.root / name, f"category {name!r}")
            files = []
            for dirpath, dirnames, filenames in os.walk(folder):
                dirnames.sort(key=natural_key)
                files += [Path(dirpath) / n for n in filenames if n.endswith(".npy")]
            every += [(p, label) for p in sorted(files, key=lambda p: natural_key(str(p)))]
        if not every:
            raise self.layout_error("no .npy files in the category folders")
        self.samples = [s for k, s in enumerate(every) if (k % 5 != 0) == train]

    def read(self, index: int) -> Events:
        path = self.samples[index][0]
        data = load_object_npy(path)
        frames = data if data.dtype.hasobject else [data]
        rows = [_rows(fr) for fr in frames]
        a = np.concatenate(rows) if rows else np.zeros((0, 4))
        order = np.argsort(a[:, 0], kind="stable")
        ev = make_events(a[order, 0], a[order, 1], a[order, 2], (a[order, 3] > 0).astype(np.uint8))
        check_events(ev, self.sensor_size, source=str(path))
        return Events(ev, self.sensor_size, {"file": str(path)})

    def cache_identity(self) -> dict[str, Any]:
        return {**super().cache_identity(), "train": self.train}

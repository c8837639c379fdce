"""What every dataset over local files shares: the layout error, file listing, splits, the base class.

A dataset is indexed from what the release lays out on disk — folder and file names, label files,
the labels of an HDF5 container — never by opening every recording (``fangwei123456/spikingjelly#208``:
splitting read every sample on each run). Recordings are decoded in ``__getitem__`` only.
"""

from __future__ import annotations

import math
import os
import re
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from torch.utils.data import Dataset

from ...core import UserError
from ..events import Events

__all__ = ["DatasetLayoutError", "EventFolderDataset", "natural_key", "list_files",
           "split_per_class", "resolve_root"]


class DatasetLayoutError(UserError, FileNotFoundError):
    """The root folder is missing or not laid out as the original release.

    The message names the dataset, the root, what is wrong, the expected layout and where the data
    is published (nothing is ever downloaded at run time).
    """

    def __init__(self, dataset: str, root: str | os.PathLike | None, problem: str, layout: str,
                 url: str) -> None:
        self.dataset, self.root, self.problem = dataset, root, problem
        self._args = (dataset, root, problem, layout, url)
        lay = "\n".join("    " + line for line in layout.strip("\n").splitlines())
        super().__init__(
            f"{dataset}: {problem} (root: {root}).\nExpected layout, as in the original release:\n"
            f"{lay}\nThe data is published at {url} — download and extract it there yourself; "
            f"spikeforge never downloads at run time.")

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across DataLoader workers
        return (type(self), self._args)


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key that orders ``a_2`` before ``a_10``."""
    return tuple(int(s) if s.isdigit() else s for s in re.split(r"(\d+)", name))


def list_files(folder: Path, suffixes: Sequence[str], natural: bool = True) -> list[Path]:
    """Files directly in ``folder`` whose name ends with one of ``suffixes`` (case-insensitive),
    sorted naturally (``natural=True``) or lexically, hidden files skipped."""
    suf = tuple(s.lower() for s in suffixes)
    names = [n for n in os.listdir(folder) if not n.startswith(".") and n.lower().endswith(suf)]
    names.sort(key=natural_key if natural else None)
    return [folder / n for n in names]


def split_per_class(labels: Sequence[int] | np.ndarray, train_ratio: float, train: bool) -> np.ndarray:
    """Deterministic per-class split: of each class's samples, in the given order, the first
    ``ceil(train_ratio · n_c)`` are train and the rest test (SpikingJelly's
    ``split_to_train_test_set(..., random_split=False)``).

    Returns:
        Sorted indices ``[M]`` into ``labels`` of the requested side.
    """
    if not 0.0 < train_ratio < 1.0:
        raise ValueError(f"train_ratio={train_ratio}: must be in (0, 1)")
    lab = np.asarray(labels)
    keep = []
    for c in np.unique(lab):
        idx = np.flatnonzero(lab == c)
        cut = math.ceil(len(idx) * train_ratio)
        keep.append(idx[:cut] if train else idx[cut:])
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


def resolve_root(root: str | os.PathLike, candidates: Sequence[str]) -> Path:
    """``root`` itself, or the first of ``root/<candidate>`` that exists (the release's top folder,
    for users who point at the folder that holds it)."""
    r = Path(root).expanduser()
    for c in candidates:
        if (r / c).is_dir():
            return r / c
    return r


class EventFolderDataset(Dataset):
    """Base of the event datasets: ``samples`` is a list of ``(path, label)`` found at init.

    Subclasses set ``url``, ``layout``, ``sensor_size`` and ``classes``, build
    ``self.samples`` in ``__init__`` and implement :meth:`read` (one recording → :class:`Events`).

    Items are ``(events, label)``, or ``(transform(events), label)`` with a ``transform``;
    ``target_transform`` maps the label.
    """

    url: ClassVar[str] = ""
    layout: ClassVar[str] = ""
    sensor_size: tuple[int, int, int] = (0, 0, 2)

    def __init__(self, root: str | os.PathLike, transform: Callable[[Any], Any] | None = None,
                 target_transform: Callable[[int], Any] | None = None) -> None:
        self.root = Path(root).expanduser()
        self.transform = transform
        self.target_transform = target_transform
        self.samples: list[tuple[Path, int]] = []
        self.classes: list[str] = []

    def layout_error(self, problem: str) -> DatasetLayoutError:
        """The error to raise when the root does not look like the release."""
        return DatasetLayoutError(type(self).__name__, self.root, problem, self.layout, self.url)

    def require_dir(self, path: Path, what: str) -> Path:
        """``path`` if it is a folder, else the layout error naming it."""
        if not path.is_dir():
            raise self.layout_error(f"{what} folder {path} not found")
        return path

    def read(self, index: int) -> Events:
        """Decode recording ``index`` (subclasses)."""
        raise NotImplementedError

    @property
    def targets(self) -> list[int]:
        """The label of every sample, without reading any recording."""
        return [label for _, label in self.samples]

    def cache_identity(self) -> dict[str, Any]:
        """What identifies this dataset's content for :mod:`spikeforge.data.cache` keys: class,
        root, sample count, labels' checksum, and ``(name, size, mtime)`` of up to 64 evenly spaced
        files (a cheap fingerprint: replacing recordings in place changes the key)."""
        n = len(self.samples)
        pick = sorted({int(k) for k in np.linspace(0, n - 1, min(n, 64))}) if n else []
        files = []
        for k in pick:
            p = self.samples[k][0]
            st = p.stat() if p.exists() else None
            files.append([str(p.relative_to(self.root)) if p.is_relative_to(self.root) else str(p),
                          st.st_size if st else None, st.st_mtime_ns if st else None])
        labels = np.asarray([lab for _, lab in self.samples], dtype=np.int64)
        return {"dataset": type(self).__name__, "root": str(self.root.resolve()), "n": n,
                "labels": zlib.crc32(labels.tobytes()), "files": files}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{type(self).__name__}: index {index} out of range for {len(self)} samples")
        index %= len(self)
        ev = self.read(index)
        label: Any = self.samples[index][1]
        if self.target_transform is not None:
            label = self.target_transform(label)
        return (self.transform(ev) if self.transform is not None else ev), label

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, n={len(self)}, "
                f"classes={len(self.classes)}, sensor_size={self.sensor_size})")

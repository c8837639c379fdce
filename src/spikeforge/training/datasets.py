"""Datasets by name for training, and the one rule that turns a batch into ``[T, B, ...]``.

Every dataset yields ``(x, label)`` with ``x`` either a static image ``[C, H, W]`` in ``[0, 1]`` (encoded
per batch — direct, rate or latency — with the trainer's own generator) or event frames
``[T, 2, H, W]`` (already time-binned). Splits are fixed and stratified; the validation split is
carved out of the training split (never out of test), so choosing the best checkpoint never sees test.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset, TensorDataset

from .. import encode

__all__ = ["DataBundle", "DATASETS", "build_dataset", "to_time_first", "list_datasets", "cache_root"]


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


def cache_root() -> Path:
    root = os.environ.get("SPIKEFORGE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "spikeforge")
    return Path(root) / "datasets"


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


def _bundle_from_arrays(name: str, kind: str, x_tr: Tensor, y_tr: Tensor, x_te: Tensor, y_te: Tensor,
                        num_classes: int, val_fraction: float, seed: int, limit: int | None) -> DataBundle:
    full = TensorDataset(x_tr, y_tr)
    if val_fraction > 0:
        tr, va = _val_split(y_tr.numpy(), val_fraction, seed)
        train: Dataset = Subset(full, tr.tolist())
        val: Dataset | None = Subset(full, va.tolist())
    else:
        train, val = full, None
    if limit is not None:
        train = Subset(train, list(range(min(limit, len(train)))))  # type: ignore[arg-type]
    c = x_tr.shape[-3] if kind == "static" else x_tr.shape[-3]
    return DataBundle(train, val, TensorDataset(x_te, y_te), kind, int(c), int(x_tr.shape[-1]), num_classes, name)


def _digits(cfg: Any) -> DataBundle:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise RuntimeError("dataset 'digits' needs scikit-learn: pip install 'spikeforge[data]'") from e
    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)      # [N, 1, 8, 8]
    y = torch.tensor(d.target, dtype=torch.long)
    from ..data.datasets.emulated import stratified_every_kth
    tr, te = stratified_every_kth(d.target, 5, True), stratified_every_kth(d.target, 5, False)
    return _bundle_from_arrays("digits", "static", x[tr], y[tr], x[te], y[te], 10, cfg.val_fraction, cfg.seed,
                               cfg.limit_train)


def _fashion(cfg: Any) -> DataBundle:
    from ..data.datasets.static import load_fashion_mnist
    try:
        xtr, ytr = load_fashion_mnist(train=True, root=cfg.data_root)
        xte, yte = load_fashion_mnist(train=False, root=cfg.data_root)
    except (FileNotFoundError, OSError) as e:
        raise RuntimeError(f"dataset 'fashion-mnist': {e}. Install it with: apt-get install dataset-fashion-mnist "
                           "(or pass --data-root to a folder of the four IDX files)") from None

    def t(a: np.ndarray) -> Tensor:
        a = np.asarray(a, dtype=np.float32)
        return torch.from_numpy(a / 255.0 if a.max() > 1.0 else a).reshape(len(a), 1, 28, 28)

    return _bundle_from_arrays("fashion-mnist", "static", t(xtr), torch.as_tensor(ytr, dtype=torch.long),
                               t(xte), torch.as_tensor(yte, dtype=torch.long), 10, cfg.val_fraction, cfg.seed,
                               cfg.limit_train)


def _frames_of(ds: Dataset, T: int, name: str, workers: int, progress: bool,
               limit: int | None = None) -> tuple[Tensor, Tensor]:
    """Every sample of an event dataset as uint8 frames ``[N, T, 2, H, W]`` (counts saturate at 255),
    through the on-disk cache; with ``limit``, only the first samples, computed in-process."""
    from ..data.cache import CachedDataset
    from ..data.transforms import ToFrames
    tf = ToFrames(n_bins=T, dtype="uint8")
    if limit is not None:
        idx = list(range(min(limit, len(ds))))  # type: ignore[arg-type]
        items = ds.__getitems__(idx) if hasattr(ds, "__getitems__") else [ds[i] for i in idx]
        xs = [torch.as_tensor(tf(ev)) for ev, _ in items]
        return torch.stack(xs), torch.tensor([int(lab) for _, lab in items], dtype=torch.long)
    cached = CachedDataset(ds, tf, cache_root(), progress=progress, workers=workers,
                           dataset_id=getattr(ds, "cache_identity", lambda: name)())
    cached.build()
    pairs = [cached[i] for i in range(len(cached))]
    return torch.stack([torch.as_tensor(f) for f, _ in pairs]), torch.tensor([int(lab) for _, lab in pairs])


def _emulated(cfg: Any) -> DataBundle:
    from ..data.datasets import EmulatedNMNIST
    source = cfg.extra.get("source", "mnist5k")
    workers = max(1, min(2, os.cpu_count() or 1))
    parts = [_frames_of(EmulatedNMNIST(source=source, train=tr, seed=cfg.seed), cfg.T, f"emulated-{source}",
                        workers, cfg.progress, cfg.limit_train) for tr in (True, False)]
    (xtr, ytr), (xte, yte) = parts
    return _bundle_from_arrays("emulated-nmnist", "frames", xtr, ytr, xte, yte, 10, cfg.val_fraction, cfg.seed,
                               cfg.limit_train)


def _event_dataset(cls_name: str, num_classes: int) -> Callable[[Any], DataBundle]:
    def build(cfg: Any) -> DataBundle:
        from ..data import datasets as D
        if not cfg.data_root:
            raise RuntimeError(f"dataset {cls_name}: --data-root is required (the folder of the original release)")
        cls = getattr(D, cls_name)
        parts = [_frames_of(cls(cfg.data_root, train=tr), cfg.T, cls_name, 2, cfg.progress, cfg.limit_train)
                 for tr in (True, False)]
        (xtr, ytr), (xte, yte) = parts
        return _bundle_from_arrays(cls_name.lower(), "frames", xtr, ytr, xte, yte, num_classes, cfg.val_fraction,
                                   cfg.seed, cfg.limit_train)
    return build


DATASETS: dict[str, Callable[[Any], DataBundle]] = {
    "digits": _digits,
    "emulated-nmnist": _emulated,
    "fashion-mnist": _fashion,
    "nmnist": _event_dataset("NMNIST", 10),
    "dvs128-gesture": _event_dataset("DVS128Gesture", 11),
    "cifar10-dvs": _event_dataset("CIFAR10DVS", 10),
    "ncaltech101": _event_dataset("NCaltech101", 101),
}


def list_datasets() -> list[str]:
    return sorted(DATASETS)


def build_dataset(cfg: Any) -> DataBundle:
    return DATASETS[cfg.dataset](cfg)


def to_time_first(x: Tensor, kind: str, T: int, encoding: str, generator: torch.Generator | None) -> Tensor:
    """A batch as the model wants it, ``[T, B, C, H, W]`` float: encode static images, or transpose frames."""
    if kind == "frames":
        return x.transpose(0, 1).float()
    if encoding == "direct":
        return encode.direct(x, T)
    if encoding == "rate":
        return encode.rate(x, T, generator=generator)
    return encode.latency(x, T)

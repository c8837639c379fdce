"""CIFAR10-DVS: 10,000 DVS128 recordings (1,000 per class) of moving CIFAR-10 images, AEDAT 2.0.

The release has no train/test split. ``train=True`` / ``False`` is SpikingJelly's 9:1 split
(``split_to_train_test_set(0.9, ..., random_split=False)``): of each class's files in *lexical*
order (``cifar10_airplane_0``, ``_1``, ``_10``, ``_100`` …, the order SpikingJelly's folder
dataset sees), the first 900 are train and the last 100 test. ``train=None`` gives all 10,000.
Orientation is the AEDAT 2.0 reader's DVS128 convention (x right, y down, ON = 1).

Li, Liu, Ji, Li, Shi (2017), "CIFAR10-DVS: an event-stream dataset for object classification",
Front. Neurosci. 11:309.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..events import Events
from ._common import EventFolderDataset, list_files, resolve_root, split_per_class

__all__ = ["CIFAR10DVS", "CIFAR10_CLASSES"]

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck")


class CIFAR10DVS(EventFolderDataset):
    """CIFAR10-DVS: ``(events, label 0..9)``; see the module docstring for the split."""

    url = "https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671 (Li et al. 2017)"
    layout = """
<root>/
  airplane/cifar10_airplane_0.aedat … cifar10_airplane_999.aedat
  automobile/…, bird/…, cat/…, deer/…, dog/…, frog/…, horse/…, ship/…, truck/…
  (unzip the ten per-class archives airplane.zip … truck.zip into <root>)
"""
    sensor_size = (128, 128, 2)

    def __init__(self, root: str | os.PathLike, train: bool | None = None,
                 transform: Callable[[Events], Any] | None = None,
                 target_transform: Callable[[int], Any] | None = None,
                 train_ratio: float = 0.9) -> None:
        super().__init__(resolve_root(root, ("CIFAR10-DVS", "cifar10_dvs")), transform,
                         target_transform)
        self.train, self.train_ratio = train, train_ratio
        self.classes = list(CIFAR10_CLASSES)
        samples = []
        for label, name in enumerate(self.classes):
            folder = self.require_dir(self.root / name, f"class {name!r}")
            files = list_files(folder, (".aedat",), natural=False)
            if not files:
                raise self.layout_error(f"no .aedat files in {folder}")
            samples += [(p, label) for p in files]
        if train is not None:
            keep = split_per_class([lab for _, lab in samples], train_ratio, train)
            samples = [samples[i] for i in keep]
        self.samples = samples

    def read(self, index: int) -> Events:
        from ..formats import read_events

        return read_events(self.samples[index][0], format="aedat2", chip="dvs128")

    def cache_identity(self) -> dict[str, Any]:
        return {**super().cache_identity(), "train": self.train, "train_ratio": self.train_ratio}

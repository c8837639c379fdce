"""N-MNIST and N-Caltech101: ATIS ``.bin`` recordings of saccades over MNIST / Caltech101 images.

Orchard, Jayawant, Cohen, Thakor (2015), "Converting static image datasets to spiking neuromorphic
datasets using saccades", Front. Neurosci. 9:437.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..events import Events
from ._common import EventFolderDataset, list_files, resolve_root, split_per_class

__all__ = ["NMNIST", "NCaltech101"]


class NMNIST(EventFolderDataset):
    """N-MNIST: 60,000 train / 10,000 test recordings of MNIST digits, 34×34, ~300 ms each.

    Args:
        root: the folder holding ``Train/`` and ``Test/`` (or a folder holding ``NMNIST/``).
        train: the ``Train`` or the ``Test`` folder.
        transform: applied to the :class:`Events`.
        target_transform: applied to the label (digit 0–9).
    """

    url = "https://www.garrickorchard.com/datasets/n-mnist (Mendeley Data doi:10.17632/468j46mzdv.1)"
    layout = """
<root>/
  Train/0/00002.bin, Train/0/…, Train/1/…, … Train/9/…   (60,000 files; unzip Train.zip)
  Test/0/00004.bin, …, Test/9/…                           (10,000 files; unzip Test.zip)
"""
    sensor_size = (34, 34, 2)

    def __init__(self, root: str | os.PathLike, train: bool = True,
                 transform: Callable[[Events], Any] | None = None,
                 target_transform: Callable[[int], Any] | None = None) -> None:
        super().__init__(resolve_root(root, ("NMNIST", "N-MNIST", "nmnist")), transform,
                         target_transform)
        self.train = train
        split = self.require_dir(self.root / ("Train" if train else "Test"),
                                 "Train" if train else "Test")
        self.classes = [str(d) for d in range(10)]
        for label, name in enumerate(self.classes):
            folder = self.require_dir(split / name, f"class {name!r}")
            self.samples += [(p, label) for p in list_files(folder, (".bin",))]
        if not self.samples:
            raise self.layout_error(f"no .bin files under {split}")

    def read(self, index: int) -> Events:
        from ..formats import read_events

        return read_events(self.samples[index][0], format="nmnist", sensor_size=(34, 34))

    def cache_identity(self) -> dict[str, Any]:
        return {**super().cache_identity(), "train": self.train}


class NCaltech101(EventFolderDataset):
    """N-Caltech101: 8,709 ATIS recordings of Caltech101 images, up to 240×180, ~300 ms each.

    The release has no train/test split. ``train=None`` gives every sample; ``True`` / ``False``
    give a deterministic per-class split: of each category's files in natural order, the first
    ``ceil(train_ratio · n)`` are train (as SpikingJelly's ``split_to_train_test_set`` with
    ``random_split=False``). Classes are the category folders in sorted order (101 objects plus
    ``BACKGROUND_Google``; pass ``include_background=False`` to drop it).
    """

    url = ("https://www.garrickorchard.com/datasets/n-caltech101 (Mendeley Data "
           "doi:10.17632/cy6cvx3ryv.1)")
    layout = """
<root>/
  Caltech101/accordion/image_0001.bin, …          (unzip Caltech101.zip)
  Caltech101/airplanes/…, …, Caltech101/BACKGROUND_Google/…
  Caltech101_annotations/…                         (optional, not used)
"""
    sensor_size = (240, 180, 2)

    def __init__(self, root: str | os.PathLike, train: bool | None = None,
                 transform: Callable[[Events], Any] | None = None,
                 target_transform: Callable[[int], Any] | None = None,
                 train_ratio: float = 0.9, include_background: bool = True) -> None:
        super().__init__(root, transform, target_transform)
        self.train, self.train_ratio = train, train_ratio
        top = self.require_dir(resolve_root(self.root, ("Caltech101",)), "Caltech101")
        self.root = top
        names = sorted(d.name for d in top.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not include_background:
            names = [n for n in names if n != "BACKGROUND_Google"]
        if not names:
            raise self.layout_error(f"no category folders in {top}")
        self.classes = names
        samples = [(p, label) for label, n in enumerate(names) for p in list_files(top / n, (".bin",))]
        if not samples:
            raise self.layout_error(f"no .bin files in the category folders of {top}")
        if train is not None:
            keep = split_per_class([lab for _, lab in samples], train_ratio, train)
            samples = [samples[i] for i in keep]
        self.samples = samples

    def read(self, index: int) -> Events:
        from ..formats import read_events

        return read_events(self.samples[index][0], format="nmnist", sensor_size=(240, 180))

    def cache_identity(self) -> dict[str, Any]:
        return {**super().cache_identity(), "train": self.train, "train_ratio": self.train_ratio}

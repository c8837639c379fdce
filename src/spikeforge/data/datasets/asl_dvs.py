"""ASL-DVS: 100,800 DAVIS240 recordings of 24 American Sign Language letters (a–y without j).

One MATLAB ``.mat`` per sample (``x, y, ts, pol``), 4,200 per letter; the reader flips the
file's bottom-up rows. The release has no split: ``train=None`` gives every sample, ``True`` /
``False`` a deterministic per-letter split (the first ``ceil(train_ratio · n)`` files of each
letter in natural order are train). Needs scipy (``pip install 'spikeforge[data]'``).

Bi, Chadha, Abbas, Bourtsoulatze, Andreopoulos (2019), "Graph-based object classification for
neuromorphic vision sensing", ICCV.
"""

from __future__ import annotations

import os
import string
from collections.abc import Callable
from typing import Any

from ..events import Events
from ._common import EventFolderDataset, list_files, resolve_root, split_per_class

__all__ = ["ASLDVS", "ASL_LETTERS"]

ASL_LETTERS = tuple(c for c in string.ascii_lowercase if c not in "jz")


class ASLDVS(EventFolderDataset):
    """ASL-DVS: ``(events on 240×180, label 0..23)`` for letters ``a b c … y`` (no j, z)."""

    url = "https://github.com/PIX2NVS/NVS2Graph (Bi et al. 2019; ICCV2019_DVS_dataset.zip)"
    layout = """
<root>/                     (unzip ICCV2019_DVS_dataset.zip, then the 24 letter archives)
  a/*.mat                   (4,200 samples per letter)
  b/, c/, …, y/             (24 folders, j and z absent)
"""
    sensor_size = (240, 180, 2)

    def __init__(self, root: str | os.PathLike, train: bool | None = None,
                 transform: Callable[[Events], Any] | None = None,
                 target_transform: Callable[[int], Any] | None = None,
                 train_ratio: float = 0.8) -> None:
        super().__init__(resolve_root(root, ("ICCV2019_DVS_dataset",)), transform,
                         target_transform)
        self.train, self.train_ratio = train, train_ratio
        self.classes = list(ASL_LETTERS)
        samples = []
        for label, letter in enumerate(self.classes):
            folder = self.require_dir(self.root / letter, f"letter {letter!r}")
            samples += [(p, label) for p in list_files(folder, (".mat",))]
        if not samples:
            raise self.layout_error("no .mat files in the letter folders")
        if train is not None:
            keep = split_per_class([lab for _, lab in samples], train_ratio, train)
            samples = [samples[i] for i in keep]
        self.samples = samples

    def read(self, index: int) -> Events:
        from ..formats import read_events

        return read_events(self.samples[index][0], format="asl_mat")

    def cache_identity(self) -> dict[str, Any]:
        return {**super().cache_identity(), "train": self.train, "train_ratio": self.train_ratio}

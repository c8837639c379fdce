"""DVS-Lip: event recordings of 100 spoken words (lip motion), 128×128, structured ``.npy``.

The release's ``train/`` and ``test/`` folders are the split; classes are the word folders of
``train/`` in sorted order, and ``test/`` must hold the same words.

Tan et al. (2022), "Multi-grained spatio-temporal features perceived network for event-based
lip-reading", CVPR.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ..events import Events
from ._common import EventFolderDataset, list_files, resolve_root

__all__ = ["DVSLip"]


class DVSLip(EventFolderDataset):
    """DVS-Lip: ``(events, label)`` with labels indexing the sorted word folders."""

    url = "https://sites.google.com/view/event-based-lipreading (Tan et al. 2022; DVS-Lip.zip)"
    layout = """
<root>/DVS-Lip/
  train/<word>/*.npy   (100 word folders)
  test/<word>/*.npy    (the same 100 words)
"""
    sensor_size = (128, 128, 2)

    def __init__(self, root: str | os.PathLike, train: bool = True,
                 transform: Callable[[Events], Any] | None = None,
                 target_transform: Callable[[int], Any] | None = None) -> None:
        super().__init__(resolve_root(root, ("DVS-Lip",)), transform, target_transform)
        self.train = train
        train_dir = self.require_dir(self.root / "train", "train")
        self.classes = sorted(d.name for d in train_dir.iterdir()
                              if d.is_dir() and not d.name.startswith("."))
        if not self.classes:
            raise self.layout_error(f"no word folders in {train_dir}")
        split = self.require_dir(self.root / ("train" if train else "test"),
                                 "train" if train else "test")
        for label, word in enumerate(self.classes):
            folder = self.require_dir(split / word, f"word {word!r}")
            self.samples += [(p, label) for p in list_files(folder, (".npy",))]
        if not self.samples:
            raise self.layout_error(f"no .npy files under {split}")

    def read(self, index: int) -> Events:
        from ..formats import read_events

        return read_events(self.samples[index][0], format="dvslip_npy", sensor_size=(128, 128))

    def cache_identity(self) -> dict[str, Any]:
        return {**super().cache_identity(), "train": self.train}

"""HARDVS: human activity recognition, 300 classes, DAVIS346 (346×260), ``.npz`` with t, x, y, p.

The split files ``train_label.txt``, ``val_label.txt`` and ``test_label.txt`` list
``action_NNN/<sample>`` (then, optionally, the label); the label is ``NNN − 1``. This is the
layout of the MINI-HARDVS release SpikingJelly reads (``MINI_HARDVS_files.zip``, one
``action_NNN.zip`` per class, extracted into ``action_NNN/``).

Wang et al. (2024), "HARDVS: revisiting human activity recognition with dynamic vision sensors",
AAAI.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ..events import Events, check_events, make_events
from ._common import EventFolderDataset, resolve_root

__all__ = ["HARDVS"]


class HARDVS(EventFolderDataset):
    """HARDVS: ``(events, label 0..299)``; ``split`` in ``train`` / ``val`` / ``test``."""

    url = "https://github.com/Event-AHU/HARDVS (MINI_HARDVS_files.zip and the three label files)"
    layout = """
<root>/
  train_label.txt, val_label.txt, test_label.txt   (lines 'action_001/dvSave-2021_10_15_19_18_02 …')
  action_001/dvSave-2021_10_15_19_18_02.npz, …     (keys t, x, y, p)
  action_002/…, …, action_300/…
"""
    sensor_size = (346, 260, 2)

    def __init__(self, root: str | os.PathLike, split: str = "train",
                 transform: Callable[[Events], Any] | None = None,
                 target_transform: Callable[[int], Any] | None = None) -> None:
        super().__init__(resolve_root(root, ("HARDVS", "MINI_HARDVS")), transform, target_transform)
        if split not in ("train", "val", "test"):
            raise ValueError(f"HARDVS: split={split!r}, expected train, val or test")
        self.split = split
        self.classes = [f"action_{k:03d}" for k in range(1, 301)]
        listing = self.root / f"{split}_label.txt"
        if not listing.is_file():
            raise self.layout_error(f"{listing.name} not found")
        for k, line in enumerate(listing.read_text().splitlines()):
            parts = line.split()
            if not parts:
                continue
            rel = parts[0]
            cls = rel.split("/")[0]
            if "/" not in rel or not cls.startswith("action_") or not cls[7:].isdigit():
                raise self.layout_error(f"{listing.name} line {k + 1}: expected "
                                        f"'action_NNN/<sample>', got {line!r}")
            self.samples.append((self.root / (rel + ".npz"), int(cls[7:]) - 1))
        if not self.samples:
            raise self.layout_error(f"{listing.name} lists no samples")
        first = self.samples[0][0]
        if not first.is_file():
            raise self.layout_error(f"{first.relative_to(self.root)}, listed in {listing.name}, "
                                    "not found")

    def read(self, index: int) -> Events:
        path = self.samples[index][0]
        with np.load(path, allow_pickle=False) as z:
            missing = {"t", "x", "y", "p"} - set(z.files)
            if missing:
                raise ValueError(f"{path}: expected arrays t, x, y, p; missing {sorted(missing)}")
            t, x, y, p = (np.asarray(z[k]).ravel() for k in ("t", "x", "y", "p"))
        ev = make_events(t, x, y, (p > 0).astype(np.uint8))
        check_events(ev, self.sensor_size, source=str(path))
        return Events(ev, self.sensor_size, {"file": str(path)})

    def cache_identity(self) -> dict[str, Any]:
        return {**super().cache_identity(), "split": self.split}

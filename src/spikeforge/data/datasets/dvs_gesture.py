"""DVS128 Gesture: 29 subjects × up to 5 lighting conditions, 11 gestures, AEDAT 3.1, 128×128.

Each recording ``userNN_<lighting>.aedat`` comes with ``userNN_<lighting>_labels.csv``
(``class,startTime_usec,endTime_usec``; classes 1..11, 11 = "other"); every ``[start, end)``
window is one sample, as SpikingJelly and snnTorch cut them. ``trials_to_train.txt`` (users 1–23)
and ``trials_to_test.txt`` (users 24–29) list the recordings, giving **1,176 train / 288 test**
samples in the real release (98 × 12 and 24 × 12: some files hold a class twice).

Indexing reads the two trial lists and the label CSVs only; a recording is decoded when one of its
samples is requested (the last decoded recording is kept, so consecutive windows decode once).
Event times are the recording's own (not shifted to the window start).

Amir et al. (2017), "A low power, fully event-based gesture recognition system", CVPR.
"""

from __future__ import annotations

import csv
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..events import Events
from ._common import EventFolderDataset, resolve_root

__all__ = ["DVS128Gesture", "GESTURE_CLASSES"]

GESTURE_CLASSES = ("hand_clapping", "right_hand_wave", "left_hand_wave", "right_arm_clockwise",
                   "right_arm_counter_clockwise", "left_arm_clockwise", "left_arm_counter_clockwise",
                   "arm_roll", "air_drums", "air_guitar", "other_gestures")


class DVS128Gesture(EventFolderDataset):
    """DVS128 Gesture windows: ``(events of one [start, end) window, label 0..10)``.

    Args:
        root: the ``DvsGesture`` folder (or a folder holding it).
        train: samples of the recordings in ``trials_to_train.txt`` or ``trials_to_test.txt``.
    """

    url = ("https://research.ibm.com/interactive/dvsgesture/ (DvsGesture.tar.gz on IBM Box: "
           "https://ibm.ent.box.com/s/3hiq58ww1pbbjrinh367ykfdf60xsfm8/folder/50167556794)")
    layout = """
<root>/DvsGesture/
  trials_to_train.txt, trials_to_test.txt      (one recording name per line)
  user01_fluorescent.aedat, user01_fluorescent_labels.csv,
  user01_fluorescent_led.aedat, …, user29_natural_labels.csv   (122 recordings)
"""
    sensor_size = (128, 128, 2)

    def __init__(self, root: str | os.PathLike, train: bool = True,
                 transform: Callable[[Events], Any] | None = None,
                 target_transform: Callable[[int], Any] | None = None) -> None:
        super().__init__(resolve_root(root, ("DvsGesture",)), transform, target_transform)
        self.require_dir(self.root, "DvsGesture")
        self.train = train
        self.classes = list(GESTURE_CLASSES)
        self.windows: list[tuple[int, int]] = []
        trials = self.root / ("trials_to_train.txt" if train else "trials_to_test.txt")
        if not trials.is_file():
            raise self.layout_error(f"trial list {trials.name} not found")
        names = [s.strip() for s in trials.read_text().splitlines() if s.strip()]
        for name in names:
            aedat = self.root / name
            labels = aedat.with_name(aedat.stem + "_labels.csv")
            if not aedat.is_file() or not labels.is_file():
                missing = aedat if not aedat.is_file() else labels
                raise self.layout_error(f"{missing.name}, listed in {trials.name}, not found")
            for label, start, end in self._read_labels(labels):
                self.samples.append((aedat, label))
                self.windows.append((start, end))
        self._last: tuple[Path, Events] | None = None

    def _read_labels(self, path: Path) -> list[tuple[int, int, int]]:
        rows = []
        with open(path, newline="") as f:
            for k, row in enumerate(csv.reader(f)):
                if not row or not row[0].strip():
                    continue
                if k == 0 and not row[0].strip().isdigit():
                    continue  # header: class,startTime_usec,endTime_usec
                try:
                    c, start, end = (int(v) for v in row[:3])
                except ValueError:
                    raise self.layout_error(f"{path.name} line {k + 1}: expected "
                                            f"'class,startTime_usec,endTime_usec', got {row}") from None
                if not 1 <= c <= len(GESTURE_CLASSES):
                    raise self.layout_error(f"{path.name} line {k + 1}: class {c} outside 1..11")
                rows.append((c - 1, start, end))
        return rows

    def read(self, index: int) -> Events:
        from ..formats import read_events

        path = self.samples[index][0]
        if self._last is None or self._last[0] != path:
            self._last = (path, read_events(path, format="aedat3", sensor_size=(128, 128)))
        rec = self._last[1]
        start, end = self.windows[index]
        t = rec.events["t"]
        sel = rec.events[(t >= start) & (t < end)]
        return Events(np.ascontiguousarray(sel), self.sensor_size,
                      {"file": str(path), "window_us": (start, end)})

    def cache_identity(self) -> dict[str, Any]:
        win = np.asarray(self.windows, dtype=np.int64)
        return {**super().cache_identity(), "train": self.train,
                "windows": zlib.crc32(win.tobytes())}

"""ATIS / Prophesee ``.dat`` datasets: N-CARS (cars vs background) and NavGesture (6 gestures).

* **N-CARS**: 24,029 samples of 100 ms (``n-cars_train``: 7,940 cars + 7,482 background;
  ``n-cars_test``: 4,396 + 4,211), crops of up to 120×100 from an ATIS; the folders are the split.
  Sironi, Brambilla, Bourdis, Lagorce, Benosman (2018), "HATS: histograms of averaged time surfaces
  for robust event-based object classification", CVPR.
* **NavGesture** (``walk`` or ``sit``): ATIS (304×240) recordings of 6 smartphone navigation
  gestures, one folder per user, the gesture in the file name (``<user>_<le|ri|up|do|ho|se>_…``).
  Rows are flipped, ``y = 239 − y``, as SpikingJelly does for these ``_td.dat`` files. No
  official split: ``train=None`` gives all; ``True`` / ``False`` split by *user* (the last
  ``ceil(20 %)`` of the users in sorted order are test, so no subject is in both).
  Maro, Ieng, Benosman (2020), "Event-based gesture recognition with dynamic background
  suppression using smartphone computational capabilities", Front. Neurosci. 14:275.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ..events import Events
from ._common import EventFolderDataset, list_files, resolve_root

__all__ = ["NCARS", "NavGesture", "NAVGESTURE_CLASSES"]

NAVGESTURE_CLASSES = ("left", "right", "up", "down", "home", "select")
_NAV_CODES = {"le": 0, "ri": 1, "up": 2, "do": 3, "ho": 4, "se": 5}


class NCARS(EventFolderDataset):
    """N-CARS: ``(events on 120×100, label)`` with 0 = background, 1 = cars."""

    url = "https://www.prophesee.ai/2018/03/13/dataset-n-cars/ (Sironi et al. 2018)"
    layout = """
<root>/                                   (unzip n-cars_train.zip and n-cars_test.zip)
  n-cars_train/background/obj_000000_td.dat, …   n-cars_train/cars/…
  n-cars_test/background/…                       n-cars_test/cars/…
"""
    sensor_size = (120, 100, 2)

    def __init__(self, root: str | os.PathLike, train: bool = True,
                 transform: Callable[[Events], Any] | None = None,
                 target_transform: Callable[[int], Any] | None = None) -> None:
        super().__init__(resolve_root(root, ("Prophesee_Dataset_n_cars",)), transform,
                         target_transform)
        self.train = train
        split = self.require_dir(self.root / ("n-cars_train" if train else "n-cars_test"),
                                 "n-cars_train" if train else "n-cars_test")
        self.classes = ["background", "cars"]
        for label, name in enumerate(self.classes):
            folder = self.require_dir(split / name, f"class {name!r}")
            self.samples += [(p, label) for p in list_files(folder, (".dat",))]
        if not self.samples:
            raise self.layout_error(f"no .dat files under {split}")

    def read(self, index: int) -> Events:
        from ..formats import read_events

        return read_events(self.samples[index][0], format="dat", sensor_size=(120, 100))

    def cache_identity(self) -> dict[str, Any]:
        return {**super().cache_identity(), "train": self.train}


class NavGesture(EventFolderDataset):
    """NavGesture-walk / -sit: ``(events on 304×240, label 0..5)``; see the module docstring."""

    url = ("https://www.neuromorphic-vision.com/public/downloads/navgesture/ "
           "(navgesture-walk.zip, navgesture-sit.zip; Maro et al. 2020)")
    layout = """
<root>/                          (unzip navgesture-walk.zip, then each user's zip into <root>)
  user01/user01_do_01_td.dat, user01/user01_le_01_td.dat, …
  user02/…, …                    (gesture code after the first '_': le ri up do ho se)
"""
    sensor_size = (304, 240, 2)

    def __init__(self, root: str | os.PathLike, variant: str = "walk", train: bool | None = None,
                 transform: Callable[[Events], Any] | None = None,
                 target_transform: Callable[[int], Any] | None = None,
                 test_fraction: float = 0.2) -> None:
        if variant not in ("walk", "sit"):
            raise ValueError(f"NavGesture: variant={variant!r}, expected 'walk' or 'sit'")
        super().__init__(resolve_root(root, (f"navgesture-{variant}",)), transform,
                         target_transform)
        self.variant, self.train, self.test_fraction = variant, train, test_fraction
        self.require_dir(self.root, "dataset")
        self.classes = list(NAVGESTURE_CLASSES)
        users = sorted(d.name for d in self.root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not users:
            raise self.layout_error("no user folders")
        n_test = math.ceil(len(users) * test_fraction)
        if train is not None:
            users = users[:len(users) - n_test] if train else users[len(users) - n_test:]
        for user in users:
            for p in list_files(self.root / user, (".dat",)):
                parts = p.stem.split("_")
                code = parts[1].lower() if len(parts) > 1 else ""
                if code not in _NAV_CODES:
                    raise self.layout_error(f"{user}/{p.name}: no gesture code (le ri up do ho se) "
                                            "after the first '_'")
                self.samples.append((p, _NAV_CODES[code]))
        self.users = users

    def read(self, index: int) -> Events:
        from ..formats import read_events

        ev = read_events(self.samples[index][0], format="dat", sensor_size=(304, 240))
        ev.events["y"] = np.uint16(239) - ev.events["y"]
        return Events(ev.events, self.sensor_size, ev.meta)

    def cache_identity(self) -> dict[str, Any]:
        return {**super().cache_identity(), "variant": self.variant, "train": self.train,
                "users": self.users}

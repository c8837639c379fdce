"""Spoken-word datasets: SHD and SSC (spiking, HDF5) and Google Speech Commands (waveforms).

* **SHD** (Heidelberg Digits, 20 classes: 0–9 in English and German) and **SSC** (Speech Commands
  through the same cochlea model, 35 classes): ``spikes/times`` (seconds), ``spikes/units``
  (channel 0..699) and ``labels`` per file. Events: ``t`` µs, ``x`` = channel, ``y = 0``, ``p = 1``
  on a ``(700, 1, 2)`` sensor. Indexing reads ``labels`` only. Cramer, Stradmann, Schemmel, Zenke
  (2020), IEEE TNNLS. Needs ``h5py`` (``pip install 'spikeforge[data]'``).
* **SpeechCommands** v0.02 (Warden 2018, 35 words): 16 kHz mono 16-bit ``.wav`` read with the
  standard library; items are ``(float32 waveform [n_samples] in [-1, 1), label)``. The split is the
  release's: ``validation_list.txt`` and ``testing_list.txt``, the rest is train.
"""

from __future__ import annotations

import os
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..events import Events
from ._common import EventFolderDataset, list_files, resolve_root

__all__ = ["SHD", "SSC", "SpeechCommands"]


class _SpikingAudio(EventFolderDataset):
    """One HDF5 file of a split; ``samples[i] = (file, label)``, sample ``i`` is row ``i``."""

    url = "https://zenkelab.org/datasets/ (also https://compneuro.net/datasets/)"
    sensor_size = (700, 1, 2)
    prefix = ""
    splits: tuple[str, ...] = ()
    n_classes = 0

    def __init__(self, root: str | os.PathLike, split: str,
                 transform: Callable[[Events], Any] | None = None,
                 target_transform: Callable[[int], Any] | None = None) -> None:
        super().__init__(root, transform, target_transform)
        if split not in self.splits:
            raise ValueError(f"{type(self).__name__}: split={split!r}, expected one of {self.splits}")
        self.split = split
        self.file = self.root / f"{self.prefix}_{split}.h5"
        if not self.file.is_file():
            gz = self.file.with_name(self.file.name + ".gz")
            hint = f" ({gz.name} is there: gunzip it)" if gz.is_file() else ""
            raise self.layout_error(f"{self.file.name} not found{hint}")
        from ..formats.errors import require_extra

        h5py = require_extra("h5py", f"{type(self).__name__} (HDF5 files)")
        with h5py.File(self.file, "r") as f:
            if "labels" not in f or "spikes" not in f:
                raise self.layout_error(f"{self.file.name} has no 'labels' / 'spikes' datasets")
            labels = np.asarray(f["labels"][()]).astype(np.int64).ravel()
        self.samples = [(self.file, int(v)) for v in labels]
        self.classes = [str(c) for c in range(self.n_classes)]

    def read(self, index: int) -> Events:
        from ..formats import read_events

        return read_events(self.file, format="hdf5_spikes", index=index)

    def cache_identity(self) -> dict[str, Any]:
        st = self.file.stat()
        return {**super().cache_identity(), "split": self.split, "size": st.st_size,
                "mtime_ns": st.st_mtime_ns}


class SHD(_SpikingAudio):
    """Spiking Heidelberg Digits: 8,156 train / 2,264 test samples, 20 classes.

    Args:
        root: folder holding ``shd_train.h5`` and ``shd_test.h5`` (gunzipped).
        train: ``shd_train.h5`` or ``shd_test.h5``.
    """

    layout = """
<root>/
  shd_train.h5   (gunzip shd_train.h5.gz)
  shd_test.h5    (gunzip shd_test.h5.gz)
"""
    prefix, splits, n_classes = "shd", ("train", "test"), 20

    def __init__(self, root: str | os.PathLike, train: bool = True,
                 transform: Callable[[Events], Any] | None = None,
                 target_transform: Callable[[int], Any] | None = None) -> None:
        super().__init__(root, "train" if train else "test", transform, target_transform)


class SSC(_SpikingAudio):
    """Spiking Speech Commands: ``split`` in ``train`` / ``valid`` / ``test``, 35 classes."""

    layout = """
<root>/
  ssc_train.h5, ssc_valid.h5, ssc_test.h5   (gunzip the .h5.gz files)
"""
    prefix, splits, n_classes = "ssc", ("train", "valid", "test"), 35

    def __init__(self, root: str | os.PathLike, split: str = "train",
                 transform: Callable[[Events], Any] | None = None,
                 target_transform: Callable[[int], Any] | None = None) -> None:
        super().__init__(root, split, transform, target_transform)


class SpeechCommands(EventFolderDataset):
    """Google Speech Commands v0.02 waveforms; ``split`` in ``train`` / ``valid`` / ``test``.

    Classes are the word folders in sorted order (``_background_noise_`` excluded). Items are
    ``(waveform float32 [n], label)`` (1 s clips are 16,000 samples; some are shorter).
    """

    url = "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz (Warden 2018)"
    layout = """
<root>/
  validation_list.txt, testing_list.txt     (lines like 'right/bb05582b_nohash_3.wav')
  backward/0165e0e8_nohash_0.wav, …, zero/…  (35 word folders)
  _background_noise_/…                       (ignored)
"""
    sensor_size = (0, 0, 0)

    def __init__(self, root: str | os.PathLike, split: str = "train",
                 transform: Callable[[np.ndarray], Any] | None = None,
                 target_transform: Callable[[int], Any] | None = None) -> None:
        super().__init__(resolve_root(root, ("speech_commands_v0.02",)), transform,
                         target_transform)
        if split not in ("train", "valid", "test"):
            raise ValueError(f"SpeechCommands: split={split!r}, expected train, valid or test")
        self.split = split
        lists = {}
        for key, name in (("valid", "validation_list.txt"), ("test", "testing_list.txt")):
            p = self.root / name
            if not p.is_file():
                raise self.layout_error(f"{name} not found")
            lists[key] = {s.strip() for s in p.read_text().splitlines() if s.strip()}
        self.classes = sorted(d.name for d in self.root.iterdir()
                              if d.is_dir() and not d.name.startswith(("_", ".")))
        if not self.classes:
            raise self.layout_error("no word folders")
        for label, word in enumerate(self.classes):
            for p in list_files(self.root / word, (".wav",)):
                rel = f"{word}/{p.name}"
                side = "valid" if rel in lists["valid"] else "test" if rel in lists["test"] else "train"
                if side == split:
                    self.samples.append((p, label))

    def read(self, index: int) -> Any:
        return read_wav(self.samples[index][0])

    def cache_identity(self) -> dict[str, Any]:
        return {**super().cache_identity(), "split": self.split}


def read_wav(path: Path) -> np.ndarray:
    """A mono 16-bit PCM ``.wav`` as float32 ``[n]`` in ``[-1, 1)``."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError(f"{path}: expected mono 16-bit PCM, got {w.getnchannels()} channel(s) "
                             f"of {8 * w.getsampwidth()} bits")
        frames = w.readframes(w.getnframes())
    return np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0

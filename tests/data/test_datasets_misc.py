"""Audio (SHD, SSC, Speech Commands) and npz/npy releases (ES-ImageNet, HARDVS, Bullying10K)."""

from __future__ import annotations

import io
import pickle
import wave
from pathlib import Path

import numpy as np
import pytest
import torch

from spikeforge.data.cache import CachedDataset
from spikeforge.data.datasets import (
    HARDVS,
    NMNIST,
    SHD,
    SSC,
    Bullying10K,
    DatasetLayoutError,
    ESImageNet,
    SpeechCommands,
    load_object_npy,
)
from tests.conftest import has_module
from tests.data.test_datasets import rand_events, write


def write_h5(path: Path, times: list[list[float]], units: list[list[int]], labels: list[int]) -> None:
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        ft = f.create_dataset("spikes/times", (len(times),), dtype=h5py.vlen_dtype(np.float32))
        fu = f.create_dataset("spikes/units", (len(units),), dtype=h5py.vlen_dtype(np.uint16))
        for i, (t, u) in enumerate(zip(times, units)):
            ft[i], fu[i] = np.asarray(t, np.float32), np.asarray(u, np.uint16)
        f["labels"] = np.asarray(labels, np.uint16)


@pytest.mark.skipif(not has_module("h5py"), reason="h5py not installed")
def test_shd_and_ssc_index_labels_and_read_microseconds(tmp_path):
    write_h5(tmp_path / "shd_train.h5", [[0.0, 0.5, 0.25], [1e-6]], [[3, 699, 0], [7]], [19, 4])
    write_h5(tmp_path / "shd_test.h5", [[0.1]], [[1]], [2])
    tr, te = SHD(tmp_path), SHD(tmp_path, train=False)
    assert (len(tr), len(te), tr.targets, te.targets) == (2, 1, [19, 4], [2])
    ev, label = tr[0]
    assert label == 19 and ev.sensor_size == (700, 1, 2)
    assert ev.events["t"].tolist() == [0, 500_000, 250_000] and ev.events["x"].tolist() == [3, 699, 0]
    assert tr[1][0].events["t"].tolist() == [1] and set(ev.events["p"]) == {1}
    write_h5(tmp_path / "ssc_valid.h5", [[0.0]] * 3, [[0]] * 3, [34, 0, 1])
    assert SSC(tmp_path, "valid").targets == [34, 0, 1]
    (tmp_path / "ssc_test.h5.gz").write_bytes(b"")
    with pytest.raises(DatasetLayoutError, match=r"ssc_test.h5 not found \(ssc_test.h5.gz is there"):
        SSC(tmp_path, "test")
    with pytest.raises(ValueError, match="split='dev'"):
        SSC(tmp_path, "dev")


def write_wav(path: Path, samples: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16_000)
        w.writeframes(samples.astype("<i2").tobytes())


def test_speech_commands_release_split(tmp_path):
    words = ["down", "go", "yes"]
    for w in words:
        for k in range(4):
            write_wav(tmp_path / w / f"abc{k}_nohash_0.wav", np.full(160, 1000 * k, np.int16))
    write_wav(tmp_path / "_background_noise_" / "noise.wav", np.zeros(10, np.int16))
    (tmp_path / "validation_list.txt").write_text("go/abc1_nohash_0.wav\nyes/abc1_nohash_0.wav\n")
    (tmp_path / "testing_list.txt").write_text("down/abc3_nohash_0.wav\n")
    tr = SpeechCommands(tmp_path)
    va, te = SpeechCommands(tmp_path, "valid"), SpeechCommands(tmp_path, "test")
    assert tr.classes == words and (len(tr), len(va), len(te)) == (9, 2, 1)
    wav, label = te[0]
    assert label == 0 and wav.dtype == np.float32 and wav.shape == (160,)
    assert wav[0] == pytest.approx(3000 / 32768)


def test_es_imagenet_npz_steps_and_val_labels(tmp_path):
    top = tmp_path / "ES-imagenet-0.18"
    for k in (0, 2, 10):
        (top / "train" / f"class{k}").mkdir(parents=True)
        np.savez(top / "train" / f"class{k}" / f"img{k}.npz",
                 pos=np.array([[5, 9, 3], [1, 2, 0]]), neg=np.array([[7, 8, 1]]))
    (top / "val").mkdir()
    np.savez(top / "val" / "v0.npz", pos=np.zeros((0, 3), int), neg=np.array([[0, 255, 7]]))
    (top / "vallabel.txt").write_text("v0.npz 999\n")
    tr, va = ESImageNet(tmp_path), ESImageNet(tmp_path, train=False)
    assert tr.targets == [0, 2, 10] and va.targets == [999]
    ev, _ = tr[1]
    assert ev.events["t"].tolist() == [0, 1, 3]  # sorted by time step
    assert ev.events["x"].tolist() == [2, 8, 9] and ev.events["y"].tolist() == [1, 7, 5]
    assert ev.events["p"].tolist() == [1, 0, 1] and ev.meta["t_unit"] == "step"
    assert va[0][0].events["x"].tolist() == [255]


def test_hardvs_label_files(tmp_path):
    names = ["action_001/dvSave-2021_10_15_19_18_02", "action_300/dvSave-2021_11_01_10_00_00"]
    for n in names:
        (tmp_path / n).parent.mkdir(parents=True, exist_ok=True)
        np.savez(tmp_path / (n + ".npz"), t=np.array([5, 1]), x=np.array([345, 0]),
                 y=np.array([259, 3]), p=np.array([1, 0]))
    (tmp_path / "train_label.txt").write_text("\n".join(f"{n} 0" for n in names) + "\n")
    (tmp_path / "val_label.txt").write_text(names[1] + "\n")
    ds = HARDVS(tmp_path)
    assert ds.targets == [0, 299] and HARDVS(tmp_path, "val").targets == [299]
    ev, _ = ds[0]
    assert ev.events["x"].tolist() == [345, 0] and ev.sensor_size == (346, 260, 2)
    (tmp_path / "test_label.txt").write_text("dvSave-2021 3\n")
    with pytest.raises(DatasetLayoutError, match="line 1: expected 'action_NNN/<sample>'"):
        HARDVS(tmp_path, "test")


def _bullying_npy(path: Path, seed: int) -> list[tuple[int, int, int, int]]:
    rng = np.random.default_rng(seed)
    rows = [(int(t), int(rng.integers(346)), int(rng.integers(260)), int(rng.integers(2)))
            for t in sorted(rng.integers(0, 10_000, 6))]
    frames = np.empty(2, dtype=object)
    frames[0], frames[1] = rows[:4], rows[4:]
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, frames, allow_pickle=True)
    return rows


def test_bullying10k_every_fifth_is_validation_and_object_npy_is_safe(tmp_path):
    from spikeforge.data.datasets.bullying10k import BULLYING_CLASSES

    rows = {}
    for c in BULLYING_CLASSES:
        for k in range(3):
            rows[(c, k)] = _bullying_npy(tmp_path / c / "sub" / f"{c}_{k}.npy", k)
    tr, va = Bullying10K(tmp_path), Bullying10K(tmp_path, train=False)
    assert (len(tr), len(va)) == (24, 6)  # positions 0, 5, …, 25 of 30
    assert va.targets == [0, 1, 3, 5, 6, 8]
    ev, label = va[1]  # position 5 = slapping, file 2
    assert label == 1 and ev.events["t"].tolist() == [r[0] for r in rows[("slapping", 2)]]
    assert ev.events["x"].tolist() == [r[1] for r in rows[("slapping", 2)]]

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = np.empty(1, dtype=object)
    bad[0] = Evil()
    buf = io.BytesIO()
    np.save(buf, bad, allow_pickle=True)
    (tmp_path / "evil.npy").write_bytes(buf.getvalue())
    with pytest.raises(pickle.UnpicklingError, match="refusing to unpickle builtins.print"):
        load_object_npy(tmp_path / "evil.npy")


def test_cached_dataset_over_nmnist_with_frames_transform(tmp_path):
    transforms = pytest.importorskip("spikeforge.data.transforms")
    for d in range(10):
        write(tmp_path / "nm" / "Test" / str(d) / "00000.bin", rand_events(d, 34, 34, 400), "nmnist")
    ds = NMNIST(tmp_path / "nm", train=False)
    tf = transforms.ToFrames(4)
    c = CachedDataset(ds, tf, tmp_path / "cache", progress=False, workers=2, chunk_size=3)
    assert c.build().built == 10
    for i in range(10):
        x, label = c[i]
        direct = torch.as_tensor(tf(ds[i][0]))
        assert label == i and x.dtype == direct.dtype and torch.equal(x, direct)
        assert int(x.sum()) == 400
    assert CachedDataset(ds, transforms.ToFrames(5), tmp_path / "cache").key != c.key
    # a recording replaced in place (new size) is a new dataset identity, hence a new key
    write(tmp_path / "nm" / "Test" / "9" / "00000.bin", rand_events(0, 34, 34, 401), "nmnist",
          overwrite=True)
    assert CachedDataset(NMNIST(tmp_path / "nm", train=False), tf, tmp_path / "cache").key != c.key

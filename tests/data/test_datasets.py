"""Vision datasets over tiny synthetic trees laid out as the releases: lengths, labels, splits, reads.

Zero-byte placeholder recordings prove that indexing and splitting never open a recording.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from spikeforge.data.datasets import (
    ASLDVS,
    CIFAR10DVS,
    HARDVS,
    NCARS,
    NMNIST,
    SHD,
    SSC,
    Bullying10K,
    DatasetLayoutError,
    DVS128Gesture,
    DVSLip,
    ESImageNet,
    NavGesture,
    NCaltech101,
    SpeechCommands,
)
from spikeforge.data.events import Events, make_events
from tests.conftest import has_module, real_file


def rand_events(seed: int, W: int, H: int, n: int = 50, t0: int = 0, span: int = 100_000) -> Events:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(t0, t0 + span, n))
    return Events(make_events(t, rng.integers(0, W, n), rng.integers(0, H, n), rng.integers(0, 2, n)),
                  (W, H, 2))


def write(path: Path, ev: Events, fmt: str, **kw) -> Path:
    from spikeforge.data.formats import write_events

    path.parent.mkdir(parents=True, exist_ok=True)
    return write_events(path, ev, format=fmt, **kw)


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


@pytest.mark.parametrize("cls,kw,url_part,layout_part", [
    (NMNIST, {}, "garrickorchard.com/datasets/n-mnist", "Train/0/00002.bin"),
    (NCaltech101, {}, "n-caltech101", "Caltech101/accordion/image_0001.bin"),
    (DVS128Gesture, {}, "dvsgesture", "trials_to_train.txt"),
    (CIFAR10DVS, {}, "figshare.com/articles/dataset/CIFAR10-DVS", "cifar10_airplane_0.aedat"),
    (SHD, {}, "zenkelab.org", "shd_train.h5"),
    (SSC, {"split": "valid"}, "zenkelab.org", "ssc_valid.h5"),
    (SpeechCommands, {}, "speech_commands_v0.02", "validation_list.txt"),
    (ASLDVS, {}, "PIX2NVS/NVS2Graph", "a/*.mat"),
    (DVSLip, {}, "event-based-lipreading", "train/<word>/*.npy"),
    (NCARS, {}, "dataset-n-cars", "n-cars_train/cars"),
    (NavGesture, {}, "navgesture", "user01_do_01_td.dat"),
    (ESImageNet, {}, "cloud.tsinghua.edu.cn", "vallabel.txt"),
    (HARDVS, {}, "Event-AHU/HARDVS", "train_label.txt"),
    (Bullying10K, {}, "Brain-Cog-Lab/Bullying10K", "handshake/**/*.npy"),
])
def test_missing_layout_shows_expected_layout_and_source(tmp_path, cls, kw, url_part, layout_part):
    if cls in (SHD, SSC) and not has_module("h5py"):
        pytest.skip("h5py not installed")
    root = tmp_path / "nothing_here"
    with pytest.raises(DatasetLayoutError) as e:
        cls(root, **kw)
    msg = str(e.value)
    assert cls.__name__ in msg and str(root) in msg and "Expected layout" in msg
    assert url_part in msg and layout_part in msg and "never downloads" in msg
    assert isinstance(e.value, FileNotFoundError)
    again = pickle.loads(pickle.dumps(e.value))  # crosses DataLoader worker boundaries intact
    assert type(again) is DatasetLayoutError and str(again) == msg


def test_nmnist_lists_splits_and_reads_the_real_sample(tmp_path):
    written = {}
    for split, n in (("Train", 2), ("Test", 1)):
        for d in range(10):
            for k in range(n):
                ev = rand_events(100 * d + k, 34, 34)
                written[(split, d, k)] = write(tmp_path / split / str(d) / f"{k:05d}.bin", ev,
                                               "nmnist")
    tr, te = NMNIST(tmp_path), NMNIST(tmp_path, train=False)
    assert (len(tr), len(te)) == (20, 10)
    assert tr.targets == [d for d in range(10) for _ in range(2)] and te.targets == list(range(10))
    ev, label = tr[5]
    assert label == 2 and ev.sensor_size == (34, 34, 2)
    assert np.array_equal(ev.events, rand_events(201, 34, 34).events)
    shutil.copy(real_file("sample_nmnist.bin"), tmp_path / "Test" / "3" / "99999.bin")
    real, label = NMNIST(tmp_path, train=False, transform=len)[4]
    assert (real, label) == (4325, 3)
    shutil.rmtree(tmp_path / "Test" / "7")
    with pytest.raises(DatasetLayoutError, match="class '7' folder"):
        NMNIST(tmp_path, train=False)


def test_ncaltech101_per_class_split_without_reading(tmp_path):
    top = tmp_path / "Caltech101"
    for name, n in (("accordion", 10), ("airplanes", 3), ("BACKGROUND_Google", 1)):
        for k in range(1, n + 1):
            touch(top / name / f"image_{k:04d}.bin")
    every = NCaltech101(tmp_path)
    tr, te = NCaltech101(tmp_path, train=True), NCaltech101(tmp_path, train=False)
    assert every.classes == ["BACKGROUND_Google", "accordion", "airplanes"]
    assert (len(every), len(tr), len(te)) == (14, 13, 1)  # ceil(9.0) + ceil(2.7) + ceil(0.9)
    assert te.samples[0][0].name == "image_0010.bin" and te.samples[0][1] == 1
    assert len(NCaltech101(tmp_path, include_background=False)) == 13
    ev = rand_events(1, 240, 180)
    write(top / "airplanes" / "image_0001.bin", ev, "nmnist", overwrite=True)
    got, label = NCaltech101(tmp_path)[11]
    assert label == 2 and got.sensor_size == (240, 180, 2) and np.array_equal(got.events, ev.events)


GESTURE_CSV = "class,startTime_usec,endTime_usec\n" + "".join(
    f"{c},{1000 * k},{1000 * k + 700}\n" for k, c in enumerate([*range(1, 12), 3]))


def make_gesture_tree(root: Path, users_train: range, users_test: range) -> Path:
    top = root / "DvsGesture"
    lights = ("fluorescent", "fluorescent_led", "lab", "led", "natural")
    for fname, users in (("trials_to_train.txt", users_train), ("trials_to_test.txt", users_test)):
        names = []
        for u in users:
            for light in lights[: 5 if u <= 6 else 4]:  # 6 · 5 + 17 · 4 = 98; 6 · 4 = 24
                name = f"user{u:02d}_{light}"
                touch(top / f"{name}.aedat")
                (top / f"{name}_labels.csv").write_text(GESTURE_CSV)
                names.append(f"{name}.aedat")
        (top / fname).write_text("\n".join(names) + "\n\n")
    return top


def test_dvs128_gesture_counts_1176_288_from_label_files_only(tmp_path):
    """23 train users / 6 test users → 98 / 24 recordings (as released) × 12 windows each."""
    make_gesture_tree(tmp_path, range(1, 24), range(24, 30))
    tr, te = DVS128Gesture(tmp_path), DVS128Gesture(tmp_path / "DvsGesture", train=False)
    assert (len(tr), len(te)) == (1176, 288)  # the .aedat files are empty: never opened
    assert tr.targets[:12] == [*range(11), 2] and tr.windows[11] == (11_000, 11_700)
    assert len({p for p, _ in te.samples}) == 24


def test_dvs128_gesture_cuts_windows_from_the_recording(tmp_path):
    top = make_gesture_tree(tmp_path, range(1, 2), range(2, 3))
    ev = rand_events(7, 128, 128, n=3000, span=13_000)
    write(top / "user01_fluorescent.aedat", ev, "aedat3", overwrite=True)
    ds = DVS128Gesture(tmp_path)
    t = ev.events["t"]
    for i in (0, 4, 11):
        got, label = ds[i]
        start, end = ds.windows[i]
        assert np.array_equal(got.events, ev.events[(t >= start) & (t < end)])
        assert label == [*range(11), 2][i] and got.sensor_size == (128, 128, 2)
    (top / "user01_lab_labels.csv").unlink()
    with pytest.raises(DatasetLayoutError, match="user01_lab_labels.csv, listed in trials_to_train"):
        DVS128Gesture(tmp_path)


def test_cifar10_dvs_nine_to_one_lexical_split(tmp_path):
    from spikeforge.data.datasets.cifar10_dvs import CIFAR10_CLASSES

    for c in CIFAR10_CLASSES:
        for k in range(12):
            touch(tmp_path / c / f"cifar10_{c}_{k}.aedat")
    tr, te, every = CIFAR10DVS(tmp_path, True), CIFAR10DVS(tmp_path, False), CIFAR10DVS(tmp_path)
    assert (len(tr), len(te), len(every)) == (110, 10, 120)  # ceil(0.9 · 12) = 11 per class
    assert [p.name for p, _ in te.samples[:2]] == ["cifar10_airplane_9.aedat",
                                                  "cifar10_automobile_9.aedat"]
    assert te.targets == list(range(10))
    assert not {p for p, _ in tr.samples} & {p for p, _ in te.samples}
    ev = rand_events(3, 128, 128)
    write(tmp_path / "cat" / "cifar10_cat_0.aedat", ev, "aedat2", overwrite=True)
    got, label = CIFAR10DVS(tmp_path)[36]
    assert label == 3 and np.array_equal(got.events, ev.events)


@pytest.mark.skipif(not has_module("scipy"), reason="scipy not installed")
def test_asl_dvs_reads_mat_and_flips_rows(tmp_path):
    import scipy.io

    from spikeforge.data.datasets.asl_dvs import ASL_LETTERS

    assert len(ASL_LETTERS) == 24 and "j" not in ASL_LETTERS and ASL_LETTERS[-1] == "y"
    for letter in ASL_LETTERS:
        for k in range(5):
            touch(tmp_path / letter / f"{letter}_{k:04d}.mat")
    x, y = np.array([[3], [7]]), np.array([[0], [170]])
    scipy.io.savemat(tmp_path / "b" / "b_0000.mat", {"x": x, "y": y, "ts": np.array([[5], [9]]),
                                                     "pol": np.array([[1], [0]])})
    ds, tr, te = ASLDVS(tmp_path), ASLDVS(tmp_path, True), ASLDVS(tmp_path, False)
    assert (len(ds), len(tr), len(te)) == (120, 96, 24)  # ceil(0.8 · 5) = 4 per letter
    ev, label = ds[5]
    assert label == 1 and ev.events["y"].tolist() == [179, 9] and ev.events["t"].tolist() == [5, 9]


def test_dvs_lip_train_test_folders(tmp_path):
    words = ["about", "bread", "cloud"]
    for split, n in (("train", 3), ("test", 1)):
        for w in words:
            for k in range(n):
                write(tmp_path / "DVS-Lip" / split / w / f"{k}.npy", rand_events(k, 128, 128),
                      "dvslip_npy")
    tr, te = DVSLip(tmp_path), DVSLip(tmp_path, train=False)
    assert (len(tr), len(te), tr.classes) == (9, 3, words)
    ev, label = te[2]
    assert label == 2 and np.array_equal(ev.events, rand_events(0, 128, 128).events)
    shutil.rmtree(tmp_path / "DVS-Lip" / "test" / "cloud")
    with pytest.raises(DatasetLayoutError, match="word 'cloud' folder"):
        DVSLip(tmp_path, train=False)


def test_ncars_and_navgesture_dat(tmp_path):
    nc = tmp_path / "ncars"
    for split, n in (("n-cars_train", 3), ("n-cars_test", 2)):
        for cls in ("background", "cars"):
            for k in range(n):
                write(nc / split / cls / f"obj_{k:06d}_td.dat", rand_events(k, 120, 100), "dat")
    tr, te = NCARS(nc), NCARS(nc, train=False)
    assert (len(tr), len(te), te.targets) == (6, 4, [0, 0, 1, 1])
    assert np.array_equal(tr[4][0].events, rand_events(1, 120, 100).events)

    nav = tmp_path / "navgesture-walk"
    codes = ["le", "ri", "up", "do", "ho", "se"]
    for u in range(1, 6):
        for k, code in enumerate(codes):
            write(nav / f"user{u:02d}" / f"user{u:02d}_{code}_01_td.dat", rand_events(k, 304, 240),
                  "dat")
    every, tr, te = NavGesture(tmp_path), NavGesture(tmp_path, train=True), NavGesture(tmp_path,
                                                                                     train=False)
    assert (len(every), len(tr), len(te), te.users) == (30, 24, 6, ["user05"])
    ev, label = every[9]
    code = every.samples[9][0].name.split("_")[1]
    src = rand_events(codes.index(code), 304, 240).events
    assert label == codes.index(code) and np.array_equal(ev.events["y"], 239 - src["y"].astype(int))
    assert np.array_equal(ev.events["x"], src["x"])

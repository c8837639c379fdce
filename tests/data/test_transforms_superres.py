"""Event-stream super-resolution (arXiv 1802.02398): exact counts under sum-pooling, and the
temporal rate profile preserved (correlation >= 0.95 over 10 bins)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeforge.data.events import Events, make_events
from spikeforge.data.transforms import SuperResolve, super_resolve, to_frames

from .test_transforms_common import SIZE, streams


def pixel_counts(ev, size):
    return to_frames(ev, size, 1, "number", dtype=np.int64)[0]  # [2, H, W]


def sum_pool(frame, k):
    C, H, W = frame.shape
    return frame.reshape(C, H // k, k, W // k, k).sum(axis=(2, 4))


def moving_blob(n=40_000, side=24, seed=0):
    """A blob sweeping left to right; its event rate rises, dips and bursts over 1 s."""
    g = np.random.default_rng(seed)
    u = np.concatenate([g.beta(2, 5, n // 2), g.normal(0.8, 0.04, n // 2).clip(0, 1)])
    t = np.sort((u * 1e6).astype(np.int64))
    cx = 3 + (side - 6) * t / 1e6
    x = np.clip(np.rint(g.normal(cx, 2.0)), 0, side - 1)
    y = np.clip(np.rint(g.normal(side / 2, 3.0, n)), 0, side - 1)
    p = (g.random(n) < 0.5 + 0.3 * np.sin(t / 1e5)).astype(np.uint8)
    return make_events(t, x, y, p), (side, side, 2)


@settings(max_examples=40, deadline=None)
@given(streams(max_n=150), st.integers(1, 4), st.integers(0, 2**16))
def test_sum_pooling_returns_the_input_counts_exactly(sample, k, seed):
    ev, size = sample
    out, new = super_resolve(ev, size, k, rng=seed, n_time_bins=16)
    assert new == (k * size[0], k * size[1], 2) and len(out) == len(ev)
    np.testing.assert_array_equal(sum_pool(pixel_counts(out, new), k), pixel_counts(ev, size))
    assert np.all(np.diff(out["t"]) >= 0)
    if len(ev):
        assert out["t"].min() >= ev["t"].min() and out["t"].max() <= ev["t"].max()


@pytest.mark.parametrize("k", [2, 4])
def test_temporal_rate_profile_is_preserved(k):
    ev, size = moving_blob()
    out, new = super_resolve(ev, size, k, rng=1)
    edges = np.linspace(ev["t"].min(), ev["t"].max() + 1, 11)
    for pol in (0, 1):
        a = np.histogram(ev["t"][ev["p"] == pol], edges)[0]
        b = np.histogram(out["t"][out["p"] == pol], edges)[0]
        assert np.corrcoef(a, b)[0, 1] >= 0.95
    # locally too: the profile of each low-resolution quadrant
    for qx in (0, 1):
        for qy in (0, 1):
            sel_in = (ev["x"] // (size[0] // 2) == qx) & (ev["y"] // (size[1] // 2) == qy)
            sel_out = (out["x"] // (new[0] // 2) == qx) & (out["y"] // (new[1] // 2) == qy)
            a = np.histogram(ev["t"][sel_in], edges)[0]
            b = np.histogram(out["t"][sel_out], edges)[0]
            assert np.corrcoef(a, b)[0, 1] >= 0.95


def test_counts_follow_the_bilinear_prior():
    # a lone pixel: its 4 children see the same neighbourhood, so they share its count evenly
    ev = make_events(np.arange(100), [2] * 100, [2] * 100, [1] * 100)
    out, new = super_resolve(ev, SIZE, 2, rng=0)
    np.testing.assert_array_equal(pixel_counts(out, new)[1, 4:6, 4:6], [[25, 25], [25, 25]])
    # with 300 events on its right: priors 0.75·100 + 0.25·300 = 150 (right) vs 0.75·100 = 75
    # (left), quotas 33.3 and 16.7, largest remainders to the left children
    ev = make_events(np.arange(400), [2] * 100 + [3] * 300, [2] * 400, [1] * 400)
    out, new = super_resolve(ev, SIZE, 2, rng=0)
    np.testing.assert_array_equal(pixel_counts(out, new)[1, 4:6, 4:6], [[17, 33], [17, 33]])


def test_timing_is_reproducible_and_follows_the_local_rate():
    ev, size = moving_blob(n=5000)
    a, _ = super_resolve(ev, size, 2, rng=7)
    b, _ = super_resolve(ev, size, 2, rng=7)
    np.testing.assert_array_equal(a, b)
    # an isolated pixel that fires only in [0, 1000) and a far one only in [9000, 10000)
    iso = make_events(list(range(0, 1000, 10)) + list(range(9000, 10000, 10)),
                      [0] * 100 + [6] * 100, [0] * 100 + [4] * 100, [1] * 200)
    out, _ = super_resolve(iso, SIZE, 4, rng=0, n_time_bins=10)
    early = out["x"] < 4
    assert out["t"][early].max() < 1000 and out["t"][~early].min() >= 9000


def test_empty_input_errors_and_wrapper():
    empty = make_events([], [], [], [])
    out, new = super_resolve(empty, SIZE, 2, rng=0)
    assert len(out) == 0 and new == (14, 10, 2)
    with pytest.raises(ValueError, match="factor must be an integer >= 1"):
        super_resolve(empty, SIZE, 0, rng=0)
    ev, size = moving_blob(n=500)
    rec = SuperResolve(2, seed=3)(Events(ev, size))
    assert isinstance(rec, Events) and rec.sensor_size == (48, 48, 2)
    expected, _ = super_resolve(ev, size, 2, np.random.default_rng(3))
    np.testing.assert_array_equal(rec.events, expected)

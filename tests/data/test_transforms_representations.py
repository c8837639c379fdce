"""Voxel grid and time surface against per-event brute-force oracles of their equations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeforge.data.events import Events, make_events
from spikeforge.data.transforms import ToTimeSurface, ToVoxelGrid, to_time_surface, to_voxel_grid

from .test_transforms_common import SIZE, random_stream, streams


def voxel_oracle(ev, size, B, split):
    """Zhu et al. eq. 2, one event at a time: V[b] += p̂ · max(0, 1 − |b − t*|)."""
    W, H, _ = size
    out = np.zeros((B, 2 if split else 1, H, W))
    t = ev["t"].astype(float)
    span = t[-1] - t[0] if len(t) else 0.0
    for i in range(len(ev)):
        ts = (B - 1) * (t[i] - t[0]) / span if span > 0 else 0.0
        c = int(ev["p"][i]) if split else 0
        sign = 1.0 if split else 2.0 * int(ev["p"][i]) - 1.0
        for b in range(B):
            out[b, c, ev["y"][i], ev["x"][i]] += sign * max(0.0, 1.0 - abs(b - ts))
    return out


def time_surface_oracle(ev, size, tau, T):
    """Bins of ``to_frames(split_by="time")``; surface read at each bin's last microsecond."""
    W, H, _ = size
    t = ev["t"].astype(np.int64)
    dt = max((int(t[-1]) - int(t[0])) // T, 1)
    bins = np.minimum((t - t[0]) // dt, T - 1)
    out = np.zeros((T, 2, H, W))
    for j in range(T):
        t_ref = int(t[0]) + (j + 1) * dt - 1
        if j == T - 1:
            t_ref = max(t_ref, int(t[-1]))
        for i in np.flatnonzero(bins <= j):  # later events overwrite: the latest wins
            out[j, ev["p"][i], ev["y"][i], ev["x"][i]] = np.exp(-(t_ref - int(t[i])) / tau)
    return out


@settings(max_examples=40, deadline=None)
@given(streams(max_n=60), st.integers(1, 6), st.booleans())
def test_voxel_grid_matches_the_equation(sample, B, split):
    ev, size = sample
    v = to_voxel_grid(ev, size, B, split)
    assert v.shape == (B, 2 if split else 1, size[1], size[0]) and v.dtype == np.float32
    np.testing.assert_allclose(v, voxel_oracle(ev, size, B, split), atol=1e-5)


def test_voxel_grid_weights_sum_to_one_per_event():
    ev = random_stream(5000, SIZE, t_span=123_457, seed=1)
    signed = 2 * ev["p"].astype(int) - 1
    assert to_voxel_grid(ev, SIZE, 9).sum(dtype=np.float64) == pytest.approx(signed.sum(), abs=1e-2)
    split = to_voxel_grid(ev, SIZE, 9, split_polarity=True)
    assert split.sum(dtype=np.float64) == pytest.approx(len(ev), rel=1e-6)
    assert split[:, 1].sum(dtype=np.float64) == pytest.approx((ev["p"] == 1).sum(), rel=1e-6)


def test_voxel_grid_interpolates_between_the_two_nearest_bins():
    ev = make_events([0, 25, 100], [0, 1, 2], [0, 0, 0], [1, 0, 1])
    v = to_voxel_grid(ev, SIZE, 5)  # t* = 0, 1, 4
    assert v[0, 0, 0, 0] == 1.0 and v[4, 0, 0, 2] == 1.0
    assert v[1, 0, 0, 1] == -1.0 and v[:, 0, 0, 1].sum() == -1.0
    ev = make_events([0, 10, 100], [0, 1, 2], [0, 0, 0], [1, 1, 1])
    np.testing.assert_allclose(to_voxel_grid(ev, SIZE, 5)[:, 0, 0, 1], [0.6, 0.4, 0, 0, 0])


def test_voxel_grid_single_event_and_empty_stream():
    one = make_events([42], [3], [2], [0])
    v = to_voxel_grid(one, SIZE, 4)
    assert v[0, 0, 2, 3] == -1.0 and np.count_nonzero(v) == 1
    assert to_voxel_grid(one[:0], SIZE, 4).shape == (4, 1, 5, 7)


@settings(max_examples=40, deadline=None)
@given(streams(min_n=1, max_n=60), st.integers(1, 5), st.floats(1.0, 5000.0))
def test_time_surface_matches_the_equation(sample, T, tau):
    ev, size = sample
    s = to_time_surface(ev, size, tau, T)
    assert s.shape == (T, 2, size[1], size[0]) and s.dtype == np.float32
    np.testing.assert_allclose(s, time_surface_oracle(ev, size, tau, T), rtol=1e-6, atol=1e-7)
    assert s.min() >= 0.0 and s.max() <= 1.0


def test_time_surface_decays_exponentially():
    ev = make_events([0, 1000, 3000], [0, 1, 2], [0, 0, 0], [1, 1, 0])
    s = to_time_surface(ev, SIZE, tau=1000.0)
    assert s[0, 1, 0, 0] == pytest.approx(np.exp(-3.0))
    assert s[0, 1, 0, 1] == pytest.approx(np.exp(-2.0))
    assert s[0, 0, 0, 2] == 1.0 and s[0, 0, 0, 0] == 0.0  # never fired: 0


def test_time_surface_single_event_and_errors():
    one = make_events([7], [1], [1], [1])
    s = to_time_surface(one, SIZE, 10.0, n_bins=3)
    assert s[:, 1, 1, 1].tolist() == pytest.approx([1.0, np.exp(-0.1), np.exp(-0.2)])
    with pytest.raises(ValueError, match="tau must be > 0"):
        to_time_surface(one, SIZE, 0.0)
    with pytest.raises(ValueError, match="non-decreasing"):
        to_time_surface(make_events([5, 1], [0, 0], [0, 0], [0, 0]), SIZE, 1.0)


def test_wrappers():
    ev = random_stream(300, SIZE, seed=2)
    np.testing.assert_array_equal(ToVoxelGrid(3)(Events(ev, SIZE)), to_voxel_grid(ev, SIZE, 3))
    np.testing.assert_array_equal(ToTimeSurface(100.0, 2, sensor_size=SIZE)(ev),
                                  to_time_surface(ev, SIZE, 100.0, 2))

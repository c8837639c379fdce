"""Events → frames: counts conserved, T exact, empty bins allowed, single events, and equality with
SpikingJelly's documented split-by-number / split-by-time / fixed-duration formulas (oracles below,
transcribed from ``spikingjelly/datasets/utils.py``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from spikeforge.data.events import Events, make_events
from spikeforge.data.transforms import (
    ToFramesByDuration,
    ToFramesByEventCount,
    to_frames,
    to_frames_by_duration,
    to_frames_by_event_count,
)

from .test_transforms_common import SIZE, random_stream, streams

# ---- the oracles: SpikingJelly's formulas, verbatim in numpy ---------------------------------


def sj_segment(x, y, p, H, W, j_l, j_r):
    """``integrate_events_segment_to_frame``: bincount of ``p·H·W + y·W + x`` over [j_l, j_r)."""
    x, y, p = x[j_l:j_r].astype(int), y[j_l:j_r].astype(int), p[j_l:j_r] != 0
    return np.bincount(p.astype(int) * H * W + y * W + x, minlength=2 * H * W).reshape(2, H, W)


def sj_fixed_frames_number(ev, split_by, T, H, W):
    """``cal_fixed_frames_number_segment_index`` + ``integrate_events_by_fixed_frames_number``."""
    t = ev["t"]
    N = t.size
    j_l, j_r = np.zeros(T, dtype=int), np.zeros(T, dtype=int)
    if split_by == "number":
        di = N // T
        for i in range(T):
            j_l[i] = i * di
            j_r[i] = j_l[i] + di
        j_r[-1] = N
    else:
        dt = (t[-1] - t[0]) // T
        idx = np.arange(N)
        for i in range(T):
            t_l = dt * i + t[0]
            t_r = t_l + dt
            idx_masked = idx[(t >= t_l) & (t < t_r)]
            j_l[i] = idx_masked[0]  # raises IndexError on an empty bin, as SpikingJelly does
            j_r[i] = idx_masked[-1] + 1
        j_r[-1] = N
    return np.stack([sj_segment(ev["x"], ev["y"], ev["p"], H, W, j_l[i], j_r[i])
                     for i in range(T)])


def sj_fixed_duration(ev, duration, H, W):
    """``integrate_events_by_fixed_duration``."""
    t = ev["t"] - ev["t"].min()
    N = t.size
    frames_num = math.ceil(t[-1] / duration)
    frames = np.zeros([frames_num, 2, H, W], dtype=np.int64)
    frame_index = t // duration
    left = 0
    for i in range(frames_num - 1):
        right = np.searchsorted(frame_index, i + 1, side="left")
        frames[i] = sj_segment(ev["x"], ev["y"], ev["p"], H, W, left, right)
        left = right
    frames[-1] = sj_segment(ev["x"], ev["y"], ev["p"], H, W, left, N)
    return frames


def brute_windows(ev, sensor_size, coord, window, stride, T):
    """Window k counts the events with ``k·stride <= coord < k·stride + window``."""
    W, H, _ = sensor_size
    out = np.zeros((T, 2, H, W), dtype=np.int64)
    for k in range(T):
        sel = (coord >= k * stride) & (coord < k * stride + window)
        np.add.at(out[k], (ev["p"][sel], ev["y"][sel], ev["x"][sel]), 1)
    return out


# ---- properties -------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(streams(), st.integers(1, 12), st.sampled_from(["time", "number"]))
def test_fixed_T_conserves_every_event_and_T_is_exact(sample, T, split_by):
    ev, size = sample
    f = to_frames(ev, size, T, split_by)
    assert f.shape == (T, 2, size[1], size[0])
    assert int(f.sum(dtype=np.int64)) == len(ev)
    np.testing.assert_array_equal(f.sum(axis=0), to_frames(ev, size, 1, split_by)[0])


@settings(max_examples=60, deadline=None)
@given(streams(min_n=1, max_n=200), st.integers(1, 8), st.sampled_from(["time", "number"]))
def test_equals_spikingjelly_where_it_is_defined(sample, T, split_by):
    ev, size = sample
    W, H, _ = size
    if split_by == "number":
        assume(len(ev) >= T)  # fewer events than bins leaves SpikingJelly's bins empty
        expected = sj_fixed_frames_number(ev, "number", T, H, W)
    else:
        try:
            expected = sj_fixed_frames_number(ev, "time", T, H, W)
        except IndexError:  # an empty time bin: SpikingJelly raises, we return zeros there
            assume(False)
    np.testing.assert_array_equal(to_frames(ev, size, T, split_by), expected)


@pytest.mark.parametrize("split_by", ["time", "number"])
def test_equals_spikingjelly_on_a_large_stream(split_by):
    ev = random_stream(20_000, (34, 26, 2), t_span=1_000_003, seed=4)
    np.testing.assert_array_equal(to_frames(ev, (34, 26, 2), 13, split_by),
                                  sj_fixed_frames_number(ev, split_by, 13, 26, 34))


def test_empty_time_bins_are_allowed():
    ev = make_events([0, 1, 2, 97, 98, 100], [0] * 6, [0] * 6, [1] * 6)
    f = to_frames(ev, SIZE, 10, "time")  # ΔT = 10: bins 1..8 are empty
    assert f[:, 1, 0, 0].tolist() == [3, 0, 0, 0, 0, 0, 0, 0, 0, 3]
    with pytest.raises(IndexError):
        sj_fixed_frames_number(ev, "time", 10, SIZE[1], SIZE[0])


@pytest.mark.parametrize("split_by", ["time", "number"])
def test_a_single_event_lands_in_the_first_bin(split_by):
    ev = make_events([123], [6], [4], [0])
    f = to_frames(ev, SIZE, 5, split_by)
    assert f.sum() == 1 and f[0, 0, 4, 6] == 1  # channel 0 = OFF


def test_short_streams_fill_one_bin_per_event_or_microsecond():
    ev = make_events([5, 5, 6, 7], [0, 1, 2, 3], [0] * 4, [1] * 4)
    assert to_frames(ev, SIZE, 6, "number").sum(axis=(1, 2, 3)).tolist() == [1, 1, 1, 1, 0, 0]
    assert to_frames(ev, SIZE, 6, "time").sum(axis=(1, 2, 3)).tolist() == [2, 1, 1, 0, 0, 0]


def test_empty_stream():
    ev = make_events([], [], [], [])
    assert to_frames(ev, SIZE, 3).shape == (3, 2, 5, 7) and to_frames(ev, SIZE, 3).sum() == 0
    assert to_frames_by_duration(ev, SIZE, 10).shape == (0, 2, 5, 7)
    assert to_frames_by_event_count(ev, SIZE, 10).shape == (0, 2, 5, 7)


# ---- windows: duration and event count, with overlap ------------------------------------------


@settings(max_examples=50, deadline=None)
@given(streams(min_n=1), st.integers(1, 700), st.data())
def test_duration_windows_match_brute_force(sample, duration, data):
    ev, size = sample
    overlap = data.draw(st.integers(0, duration - 1))
    f = to_frames_by_duration(ev, size, duration, overlap)
    coord = ev["t"] - ev["t"][0]
    stride = duration - overlap
    T = 1 + max(0, -(-(int(coord[-1]) + 1 - duration) // stride))
    assert f.shape[0] == T
    np.testing.assert_array_equal(f, brute_windows(ev, size, coord, duration, stride, T))
    assert f[-1].sum() > 0 or T == 1  # the last window is the one that reaches the last event
    if overlap == 0:
        assert int(f.sum(dtype=np.int64)) == len(ev)


@settings(max_examples=40, deadline=None)
@given(streams(min_n=2), st.integers(1, 500))
def test_duration_equals_spikingjelly_when_the_span_is_not_a_multiple(sample, duration):
    ev, size = sample
    span = int(ev["t"][-1] - ev["t"][0])
    assume(span > 0 and span % duration != 0)  # else SpikingJelly merges the last two windows
    np.testing.assert_array_equal(to_frames_by_duration(ev, size, duration),
                                  sj_fixed_duration(ev, duration, size[1], size[0]))


def test_half_overlap_is_the_sum_of_neighbouring_fine_windows():
    ev = random_stream(3000, SIZE, t_span=99_999, seed=1)
    fine = to_frames_by_duration(ev, SIZE, 1000, dtype=np.int64)
    half = to_frames_by_duration(ev, SIZE, 2000, overlap=1000, dtype=np.int64)
    assert half.shape[0] == fine.shape[0] - 1
    np.testing.assert_array_equal(half, fine[:-1] + fine[1:])


def test_t_start_aligns_windows_and_rejects_earlier_events():
    ev = make_events([250, 260, 1999], [0, 1, 2], [0, 0, 0], [1, 1, 1])
    f = to_frames_by_duration(ev, SIZE, 1000, t_start=0)
    assert f.shape[0] == 2 and f[0].sum() == 2 and f[1].sum() == 1
    with pytest.raises(ValueError, match="before t_start"):
        to_frames_by_duration(ev, SIZE, 1000, t_start=255)


@settings(max_examples=50, deadline=None)
@given(streams(min_n=1), st.integers(1, 40), st.data())
def test_event_count_windows_match_brute_force(sample, count, data):
    ev, size = sample
    overlap = data.draw(st.integers(0, count - 1))
    f = to_frames_by_event_count(ev, size, count, overlap)
    stride = count - overlap
    T = 1 + max(0, -(-(len(ev) - count) // stride))
    assert f.shape[0] == T
    np.testing.assert_array_equal(f, brute_windows(ev, size, np.arange(len(ev)), count, stride, T))
    if overlap == 0:
        assert int(f.sum(dtype=np.int64)) == len(ev)  # the short last frame is kept (Tonic: no)
        assert f.shape[0] == -(-len(ev) // count)


def test_event_count_frames_are_exactly_full_but_the_last():
    ev = random_stream(1003, SIZE, seed=2)
    f = to_frames_by_event_count(ev, SIZE, 100)
    assert f.sum(axis=(1, 2, 3)).tolist() == [100] * 10 + [3]


# ---- dtype, layout, errors, wrappers ----------------------------------------------------------


def test_dtype_auto_is_lossless_and_explicit_ints_saturate():
    ev = make_events(np.arange(300), np.zeros(300), np.zeros(300), np.ones(300))
    assert to_frames(ev, SIZE, 1).dtype == np.uint16 and to_frames(ev, SIZE, 1)[0, 1, 0, 0] == 300
    assert to_frames(ev[:255], SIZE, 1).dtype == np.uint8
    assert to_frames(ev, SIZE, 1, dtype=np.uint8)[0, 1, 0, 0] == 255  # saturated, documented
    f32 = to_frames(ev, SIZE, 2, "number", dtype=np.float32)
    assert f32.dtype == np.float32 and f32[:, 1, 0, 0].tolist() == [150.0, 150.0]
    with pytest.raises(ValueError, match="frame dtype"):
        to_frames(ev, SIZE, 1, dtype=np.bool_)


def test_polarity_channel_and_orientation():
    ev = make_events([0, 1], [6, 0], [0, 4], [1, 0])  # ON at top-right, OFF at bottom-left
    f = to_frames(ev, SIZE, 1)
    assert f[0, 1, 0, 6] == 1 and f[0, 0, 4, 0] == 1 and f.sum() == 2


def test_other_structured_layouts_are_accepted():
    ev = random_stream(500, SIZE, seed=3)
    tonic = np.zeros(len(ev), dtype=[("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
    for k in "txyp":
        tonic[k] = ev[k]
    np.testing.assert_array_equal(to_frames(tonic, SIZE, 4), to_frames(ev, SIZE, 4))


def test_errors_name_the_problem():
    ev = random_stream(50)
    bad = ev.copy()
    bad["x"][7] = 99
    with pytest.raises(ValueError, match=r"to_frames: event 7 has x=99.*x < 7"):
        to_frames(bad, SIZE, 3)
    bad = ev.copy()
    bad["p"][9] = 3
    with pytest.raises(ValueError, match=r"event 9 has polarity p=3"):
        to_frames(bad, SIZE, 3, "number")
    with pytest.raises(ValueError, match="non-decreasing"):
        to_frames(ev[::-1].copy(), SIZE, 3, "time")
    to_frames(ev[::-1].copy(), SIZE, 3, "number")  # order is irrelevant when splitting by index
    with pytest.raises(ValueError, match="n_bins must be >= 1"):
        to_frames(ev, SIZE, 0)
    with pytest.raises(ValueError, match="split_by"):
        to_frames(ev, SIZE, 2, "space")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"overlap must be in \[0, duration\)"):
        to_frames_by_duration(ev, SIZE, 10, overlap=10)
    with pytest.raises(ValueError, match="event_count must be >= 1"):
        to_frames_by_event_count(ev, SIZE, 0)
    with pytest.raises(ValueError, match="fields t, x, y, p"):
        to_frames(np.zeros(4), SIZE, 2)
    with pytest.raises(ValueError, match="sensor_size"):
        to_frames(ev, (7, 5), 2)


def test_window_wrappers():
    ev = random_stream(400, SIZE, seed=5)
    rec = Events(ev, SIZE)
    np.testing.assert_array_equal(ToFramesByDuration(500, 100)(rec),
                                  to_frames_by_duration(ev, SIZE, 500, 100))
    np.testing.assert_array_equal(ToFramesByEventCount(64, 16, sensor_size=SIZE)(ev),
                                  to_frames_by_event_count(ev, SIZE, 64, 16))

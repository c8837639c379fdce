"""Event dropping (random, by time, by area) and random temporal delete of frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeforge.data.events import Events
from spikeforge.data.transforms import (
    DropEvent,
    DropEventByArea,
    DropEventByTime,
    RandomTemporalDelete,
    drop_by_area,
    drop_by_time,
    drop_event,
    random_temporal_delete,
)

from .test_transforms_common import SIZE, random_stream, streams


@settings(max_examples=40, deadline=None)
@given(streams(), st.floats(0.0, 1.0))
def test_drop_event_removes_exactly_round_ratio_n(sample, ratio):
    ev, size = sample
    idx = ev.copy()
    idx["t"] = np.arange(len(ev))  # unique tags to see which rows survive
    out = drop_event(idx, size, ratio, rng=0)
    assert len(out) == len(ev) - int(round(ratio * len(ev)))
    assert np.all(np.diff(out["t"]) > 0)  # survivors in input order
    np.testing.assert_array_equal(out, idx[out["t"]])


@settings(max_examples=40, deadline=None)
@given(streams(min_n=1), st.floats(0.0, 1.0), st.integers(0, 1000))
def test_drop_by_time_removes_one_slice_shorter_than_ratio_span(sample, ratio, seed):
    ev, size = sample
    ev["t"] += np.arange(len(ev))  # strictly increasing: t identifies an event
    t = ev["t"]
    out = drop_by_time(ev, size, ratio, rng=seed)
    d = int(round(ratio * (int(t[-1]) - int(t[0]))))
    removed = np.setdiff1d(t, out["t"])
    np.testing.assert_array_equal(out, ev[np.isin(t, out["t"])])  # a subset, in order
    if removed.size:
        assert int(removed.max()) - int(removed.min()) < d
        survivors = out["t"]
        assert not np.any((survivors >= removed.min()) & (survivors <= removed.max()))
    if d == 0:
        assert len(out) == len(ev)


def test_drop_by_area_clears_a_box_of_the_requested_area():
    ev = random_stream(20_000, (40, 30, 2), seed=1)
    out = drop_by_area(ev, (40, 30, 2), 0.25, rng=5)
    f_in = np.zeros((30, 40), int)
    f_out = np.zeros((30, 40), int)
    np.add.at(f_in, (ev["y"], ev["x"]), 1)
    np.add.at(f_out, (out["y"], out["x"]), 1)
    cleared = (f_out == 0) & (f_in > 0)
    ys, xs = np.nonzero(cleared)
    assert (np.ptp(ys) + 1, np.ptp(xs) + 1) == (15, 20)  # round(30·√.25), round(40·√.25)
    assert cleared.sum() == 15 * 20
    assert np.array_equal(f_out[~cleared], f_in[~cleared])
    assert len(drop_by_area(ev, (40, 30, 2), 0.0, rng=0)) == len(ev)
    assert len(drop_by_area(ev, (40, 30, 2), 1.0, rng=0)) == 0


def test_drop_ratio_is_validated():
    with pytest.raises(ValueError, match=r"ratio must be in \[0, 1\]"):
        drop_event(random_stream(5), SIZE, 1.2, rng=0)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_random_temporal_delete_keeps_sorted_random_steps(kind):
    x = np.arange(10 * 3).reshape(10, 3)
    frames = torch.as_tensor(x) if kind == "torch" else x
    out = random_temporal_delete(frames, 6, rng=2)
    assert type(out) is type(frames) and tuple(out.shape) == (6, 3)
    kept = np.asarray(out)[:, 0] // 3
    assert np.all(np.diff(kept) > 0)
    expected = np.sort(np.random.default_rng(2).choice(10, 6, replace=False))
    np.testing.assert_array_equal(kept, expected)
    with pytest.raises(ValueError, match=r"t_remain must be in \[0, T=10\]"):
        random_temporal_delete(frames, 11, rng=0)


def test_drop_wrappers():
    ev = random_stream(500, SIZE, seed=3)
    rec = Events(ev, SIZE)
    np.testing.assert_array_equal(DropEvent(0.3, seed=1)(rec).events, drop_event(ev, SIZE, 0.3, 1))
    np.testing.assert_array_equal(DropEventByTime(0.3, sensor_size=SIZE, seed=1)(ev),
                                  drop_by_time(ev, SIZE, 0.3, 1))
    np.testing.assert_array_equal(DropEventByArea(0.3, seed=1)(rec).events,
                                  drop_by_area(ev, SIZE, 0.3, 1))
    frames = np.zeros((8, 2, 5, 7))
    assert RandomTemporalDelete(3, seed=0)(frames).shape == (3, 2, 5, 7)

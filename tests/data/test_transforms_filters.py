"""Denoise and refractory filters against O(N²) brute-force oracles of their definitions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeforge.data.events import Events, make_events
from spikeforge.data.transforms import Denoise, Refractory, denoise, refractory

from .test_transforms_common import SIZE, random_stream, streams


def denoise_oracle(ev, filter_time, connectivity):
    keep = np.zeros(len(ev), dtype=bool)
    for i in range(len(ev)):
        for j in range(i):
            dx = abs(int(ev["x"][i]) - int(ev["x"][j]))
            dy = abs(int(ev["y"][i]) - int(ev["y"][j]))
            near = (max(dx, dy) == 1) if connectivity == 8 else (dx + dy == 1)
            if near and int(ev["t"][i]) - int(ev["t"][j]) < filter_time:
                keep[i] = True
                break
    return ev[keep]


def refractory_oracle(ev, period, per_polarity):
    kept: list[int] = []
    for i in range(len(ev)):
        same = [j for j in kept if ev["x"][j] == ev["x"][i] and ev["y"][j] == ev["y"][i]
                and (not per_polarity or ev["p"][j] == ev["p"][i])]
        if not same or int(ev["t"][i]) - int(ev["t"][same[-1]]) >= period:
            kept.append(i)
    return ev[kept]


@settings(max_examples=50, deadline=None)
@given(streams(max_n=60, max_side=5, max_span=500), st.integers(0, 200), st.sampled_from([4, 8]))
def test_denoise_matches_its_definition(sample, filter_time, connectivity):
    ev, size = sample
    np.testing.assert_array_equal(denoise(ev, size, filter_time, connectivity),
                                  denoise_oracle(ev, filter_time, connectivity))


@settings(max_examples=50, deadline=None)
@given(streams(max_n=60, max_side=4, max_span=500), st.integers(0, 200), st.booleans())
def test_refractory_matches_its_definition(sample, period, per_polarity):
    ev, size = sample
    np.testing.assert_array_equal(refractory(ev, size, period, per_polarity),
                                  refractory_oracle(ev, period, per_polarity))


def test_denoise_drops_isolated_noise_and_keeps_supported_events():
    ev = make_events([0, 10, 20, 5000, 5010], [3, 4, 3, 0, 6], [2, 2, 3, 0, 4], [1, 0, 1, 1, 1])
    out = denoise(ev, SIZE, filter_time=100)
    assert out["t"].tolist() == [10, 20]  # the first has no earlier neighbour; the last two: lone
    assert len(denoise(ev, SIZE, filter_time=0)) == 0
    assert denoise(ev, SIZE, 100, connectivity=4)["t"].tolist() == [10, 20]
    diag = make_events([0, 1], [0, 1], [0, 1], [1, 1])
    assert len(denoise(diag, SIZE, 10, 8)) == 1 and len(denoise(diag, SIZE, 10, 4)) == 0


def test_refractory_silences_a_pixel_after_each_kept_event():
    ev = make_events([0, 5, 10, 12, 25], [1] * 5, [1] * 5, [1, 0, 1, 1, 1])
    assert refractory(ev, SIZE, 10)["t"].tolist() == [0, 10, 25]
    assert refractory(ev, SIZE, 10, per_polarity=True)["t"].tolist() == [0, 5, 10, 25]
    assert len(refractory(ev, SIZE, 0)) == 5


def test_filters_validate_and_wrap():
    ev = random_stream(200, SIZE, seed=3)
    with pytest.raises(ValueError, match="non-decreasing"):
        denoise(ev[::-1].copy(), SIZE, 10)
    with pytest.raises(ValueError, match="connectivity must be 4 or 8"):
        denoise(ev, SIZE, 10, connectivity=6)
    with pytest.raises(ValueError, match="period must be >= 0"):
        refractory(ev, SIZE, -1)
    rec = Events(ev, SIZE)
    np.testing.assert_array_equal(Denoise(300)(rec).events, denoise(ev, SIZE, 300))
    np.testing.assert_array_equal(Refractory(300, sensor_size=SIZE)(ev), refractory(ev, SIZE, 300))

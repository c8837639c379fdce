"""Downsampling, crops and flips, checked through the frames they produce."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spikeforge.data.events import Events, make_events
from spikeforge.data.transforms import (
    CenterCrop,
    Downsample,
    RandomCrop,
    RandomFlipLR,
    RandomFlipPolarity,
    RandomFlipUD,
    center_crop,
    crop,
    downsample,
    flip_lr,
    flip_polarity,
    flip_ud,
    random_crop,
    to_frames,
)

from .test_transforms_common import SIZE, random_stream, streams


def counts(ev, size):
    return to_frames(ev, size, 1, "number", dtype=np.int64)[0]


def sum_pool(frame, k):
    C, H, W = frame.shape
    padded = np.zeros((C, -(-H // k) * k, -(-W // k) * k), dtype=frame.dtype)
    padded[:, :H, :W] = frame
    return padded.reshape(C, padded.shape[1] // k, k, padded.shape[2] // k, k).sum(axis=(2, 4))


@settings(max_examples=40, deadline=None)
@given(streams(max_side=11), st.integers(1, 4), st.integers(1, 50))
def test_downsample_is_sum_pooling(sample, s, r):
    ev, size = sample
    out, new = downsample(ev, size, s, r)
    assert new == (-(-size[0] // s), -(-size[1] // s), 2) and len(out) == len(ev)
    np.testing.assert_array_equal(counts(out, new), sum_pool(counts(ev, size), s))
    assert np.all(out["t"] % r == 0) and np.all(ev["t"] - out["t"] < r)
    assert np.all(out["t"] <= ev["t"])


@settings(max_examples=40, deadline=None)
@given(streams(max_side=10), st.data())
def test_crop_is_a_frame_slice(sample, data):
    ev, size = sample
    W, H, _ = size
    w, h = data.draw(st.integers(1, W)), data.draw(st.integers(1, H))
    x0, y0 = data.draw(st.integers(0, W - w)), data.draw(st.integers(0, H - h))
    out, new = crop(ev, size, x0, y0, w, h)
    assert new == (w, h, 2)
    np.testing.assert_array_equal(counts(out, new), counts(ev, size)[:, y0:y0 + h, x0:x0 + w])
    assert np.all(np.diff(out["t"]) >= 0)


def test_center_crop_offsets_like_torchvision():
    ev = random_stream(500, (8, 6, 2), seed=1)
    out, new = center_crop(ev, (8, 6, 2), (5, 3))  # margins 3 and 3: 1 left/top, 2 right/bottom
    assert new == (5, 3, 2)
    np.testing.assert_array_equal(counts(out, new), counts(ev, (8, 6, 2))[:, 1:4, 1:6])
    with pytest.raises(ValueError, match="must fit the sensor"):
        center_crop(ev, (8, 6, 2), 9)


def test_random_crop_is_reproducible_and_covers_positions():
    ev = random_stream(2000, (8, 6, 2), seed=2)
    a, _ = random_crop(ev, (8, 6, 2), 4, rng=11)
    b, _ = random_crop(ev, (8, 6, 2), 4, rng=11)
    np.testing.assert_array_equal(a, b)
    g = np.random.default_rng(0)
    seen = {len(random_crop(ev, (8, 6, 2), 4, g)[0]) for _ in range(40)}
    assert len(seen) > 3


def test_crop_rejects_boxes_outside_the_sensor():
    with pytest.raises(ValueError, match="must lie inside the sensor"):
        crop(random_stream(5), SIZE, 5, 0, 3, 2)
    with pytest.raises(ValueError, match="size must be an int or"):
        center_crop(random_stream(5), SIZE, "big")  # type: ignore[arg-type]


@settings(max_examples=30, deadline=None)
@given(streams())
def test_flips_mirror_the_frames_and_are_involutions(sample):
    ev, size = sample
    f = counts(ev, size)
    np.testing.assert_array_equal(counts(flip_lr(ev, size), size), f[:, :, ::-1])
    np.testing.assert_array_equal(counts(flip_ud(ev, size), size), f[:, ::-1, :])
    np.testing.assert_array_equal(counts(flip_polarity(ev, size), size), f[::-1])
    for flip in (flip_lr, flip_ud, flip_polarity):
        np.testing.assert_array_equal(flip(flip(ev, size), size), ev)


def test_random_flips_respect_probability_and_seed():
    ev = random_stream(100, SIZE, seed=4)
    rec = Events(ev, SIZE)
    np.testing.assert_array_equal(RandomFlipLR(p=1.0)(rec).events, flip_lr(ev, SIZE))
    np.testing.assert_array_equal(RandomFlipUD(p=0.0, sensor_size=SIZE)(ev), ev)
    np.testing.assert_array_equal(RandomFlipPolarity(p=1.0)(rec).events, flip_polarity(ev, SIZE))
    t = RandomFlipLR(p=0.5, seed=3)
    flips = [not np.array_equal(t(rec).events, ev) for _ in range(200)]
    assert 70 < sum(flips) < 130
    again = RandomFlipLR(p=0.5, seed=3)
    assert flips[:20] == [not np.array_equal(again(rec).events, ev) for _ in range(20)]
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        RandomFlipLR(p=1.5)(rec)


def test_geometry_wrappers_update_the_sensor_size():
    ev = make_events([0, 1, 2], [0, 5, 6], [0, 2, 4], [1, 0, 1])
    rec = Events(ev, SIZE, meta={"k": 1})
    out = Downsample(spatial_factor=2)(rec)
    assert isinstance(out, Events) and out.sensor_size == (4, 3, 2) and out.meta == {"k": 1}
    assert out.events["x"].tolist() == [0, 2, 3]
    assert CenterCrop(3)(rec).sensor_size == (3, 3, 2)
    assert RandomCrop((2, 2), seed=0)(rec).sensor_size == (2, 2, 2)
    raw = RandomCrop((2, 2), sensor_size=SIZE, seed=0)(ev)
    assert isinstance(raw, np.ndarray)

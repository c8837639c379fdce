"""Shared plumbing of the transforms (validation, generators, Events in/out) and the stream
strategies the other ``test_transforms_*`` files import."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import strategies as st

from spikeforge.data import transforms as tf
from spikeforge.data.events import EVENT_DTYPE, Events, make_events
from spikeforge.data.transforms import ToFrames, to_frames
from spikeforge.data.transforms._common import as_rng, repack, unpack, validate

SIZE = (7, 5, 2)


def random_stream(n: int, sensor_size=SIZE, t_span: int = 10_000, seed: int = 0,
                  t0: int = 0) -> np.ndarray:
    """``n`` uniform events on the sensor, sorted by ``t`` in ``[t0, t0 + t_span]``."""
    g = np.random.default_rng(seed)
    W, H, _ = sensor_size
    t = np.sort(g.integers(t0, t0 + t_span + 1, n))
    return make_events(t, g.integers(0, W, n), g.integers(0, H, n), g.integers(0, 2, n))


@st.composite
def streams(draw, min_n: int = 0, max_n: int = 120, max_side: int = 9, max_span: int = 3000):
    """``(events, sensor_size)``: small sorted streams, with duplicate timestamps and empty bins."""
    n = draw(st.integers(min_n, max_n))
    W = draw(st.integers(1, max_side))
    H = draw(st.integers(1, max_side))
    span = draw(st.integers(0, max_span))
    t0 = draw(st.integers(0, 10**12))
    seed = draw(st.integers(0, 2**32 - 1))
    return random_stream(n, (W, H, 2), span, seed, t0), (W, H, 2)


def test_validate_names_the_field_and_the_limit():
    ev = random_stream(10)
    bad = ev.copy()
    bad["x"][3] = 7
    with pytest.raises(ValueError, match=r"event 3 has x=7.*x < 7"):
        validate(bad, SIZE, "t")
    bad = ev.copy()
    bad["y"][2] = 9
    with pytest.raises(ValueError, match=r"event 2 has y=9"):
        validate(bad, SIZE, "t")
    bad = ev.copy()
    bad["p"][1] = 2
    with pytest.raises(ValueError, match=r"polarity 2"):
        validate(bad, SIZE, "t")


def test_validate_rejects_wrong_containers_and_sizes():
    ev = random_stream(10)
    with pytest.raises(TypeError, match="structured array"):
        validate([1, 2, 3], SIZE, "who")
    with pytest.raises(ValueError, match="1-D"):
        validate(ev.reshape(2, 5), SIZE, "who")
    with pytest.raises(ValueError, match="fields t, x, y, p"):
        validate(np.zeros(3), SIZE, "who")
    with pytest.raises(ValueError, match=r"who: sensor_size must be \(W, H, 2\)"):
        validate(ev, (7, 5), "who")
    with pytest.raises(ValueError, match="2 polarities"):
        validate(ev, (7, 5, 1), "who")
    with pytest.raises(ValueError, match="non-decreasing.*event 1"):
        validate(ev[::-1].copy(), SIZE, "who", need_sorted=True)


def test_validate_rejects_negative_coordinates_of_signed_layouts():
    tonic_like = np.zeros(3, dtype=[("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
    tonic_like["x"] = [0, -1, 2]
    with pytest.raises(ValueError, match="event 1 has x=-1, expected x >= 0"):
        validate(tonic_like, SIZE, "who")


def test_as_rng_seeds_reproducibly_and_passes_generators_through():
    g = np.random.default_rng(3)
    assert as_rng(g) is g
    assert as_rng(5).random() == np.random.default_rng(5).random()
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        as_rng("seed")  # type: ignore[arg-type]


def test_unpack_and_repack_keep_the_events_kind():
    ev = random_stream(20)
    rec = Events(ev, SIZE, meta={"format": "x"})
    arr, size = unpack(rec, None, "W")
    assert arr is ev and size == SIZE
    with pytest.raises(ValueError, match="no sensor_size"):
        unpack(ev, None, "W")
    out = repack(rec, ev[:5], (3, 2, 2))
    assert isinstance(out, Events) and out.sensor_size == (3, 2, 2) and len(out) == 5
    assert out.meta == rec.meta and out.meta is not rec.meta
    assert repack(ev, ev[:5]) is not ev


def test_wrappers_take_events_or_raw_arrays():
    ev = random_stream(50)
    a = ToFrames(4)(Events(ev, SIZE))
    b = ToFrames(4, sensor_size=SIZE)(ev)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, to_frames(ev, SIZE, 4))


def test_transforms_never_mutate_their_input():
    ev = random_stream(300, SIZE, seed=9)
    before = ev.copy()
    calls = [
        lambda: tf.to_frames(ev, SIZE, 3), lambda: tf.to_frames_by_duration(ev, SIZE, 100, 50),
        lambda: tf.to_frames_by_event_count(ev, SIZE, 7, 2), lambda: tf.to_voxel_grid(ev, SIZE, 3),
        lambda: tf.to_time_surface(ev, SIZE, 10.0, 2), lambda: tf.denoise(ev, SIZE, 100),
        lambda: tf.refractory(ev, SIZE, 100), lambda: tf.downsample(ev, SIZE, 2, 10),
        lambda: tf.crop(ev, SIZE, 1, 1, 3, 3), lambda: tf.center_crop(ev, SIZE, 3),
        lambda: tf.random_crop(ev, SIZE, 3, 0), lambda: tf.flip_lr(ev, SIZE),
        lambda: tf.flip_ud(ev, SIZE), lambda: tf.flip_polarity(ev, SIZE),
        lambda: tf.crop_time(ev, SIZE, 10, 500), lambda: tf.time_jitter(ev, SIZE, 5.0, 0),
        lambda: tf.time_skew(ev, SIZE, 2.0, 3), lambda: tf.time_reversal(ev, SIZE),
        lambda: tf.drop_event(ev, SIZE, 0.5, 0), lambda: tf.drop_by_time(ev, SIZE, 0.5, 0),
        lambda: tf.drop_by_area(ev, SIZE, 0.5, 0), lambda: tf.super_resolve(ev, SIZE, 2, 0),
    ]
    for call in calls:
        out = call()
        out = out[0] if isinstance(out, tuple) else out
        assert not np.shares_memory(out, ev)
        np.testing.assert_array_equal(ev, before)
    assert ev.dtype == EVENT_DTYPE

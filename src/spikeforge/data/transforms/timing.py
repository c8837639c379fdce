"""Timestamp transforms: crop in time, jitter, skew (affine time warp) and reversal.

All return a new stream sorted by ``t`` when the input was (jitter re-sorts, stably). Peers: Tonic
``CropTime``, ``TimeJitter``, ``TimeSkew``, ``RandomTimeReversal``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._common import EventsLike, RandomMixin, SeedLike, as_rng, check_prob, repack, unpack, validate

__all__ = ["crop_time", "time_jitter", "time_skew", "time_reversal", "CropTime", "TimeJitter",
           "TimeSkew", "RandomTimeReversal"]

Size = tuple[int, int, int]


def crop_time(events: np.ndarray, sensor_size: Size, t_min: int | None = None,
              t_max: int | None = None) -> np.ndarray:
    """Keep the events with ``t_min <= t < t_max`` (a ``None`` bound is open); timestamps unchanged."""
    events, _ = validate(events, sensor_size, "crop_time")
    t = events["t"]
    keep = np.ones(len(events), dtype=bool)
    if t_min is not None:
        keep &= t >= int(t_min)
    if t_max is not None:
        keep &= t < int(t_max)
    return events[keep]


def time_jitter(events: np.ndarray, sensor_size: Size, std: float, rng: SeedLike,
                drop_negative: bool = True, sort: bool = True) -> np.ndarray:
    """Add Gaussian noise to every timestamp: ``t' = t + round(ε)``, ``ε ~ N(0, std²)`` µs.

    Args:
        events: structured array ``[N]``.
        sensor_size: ``(W, H, 2)`` (only validated).
        std: standard deviation in µs (``>= 0``).
        rng: seed or ``numpy.random.Generator``.
        drop_negative: drop events whose jittered ``t`` is below 0.
        sort: re-sort by ``t'`` (stable), as jitter can reorder events.

    Returns:
        ``[M <= N]`` events.
    """
    events, _ = validate(events, sensor_size, "time_jitter")
    if not float(std) >= 0:
        raise ValueError(f"time_jitter: std must be >= 0 µs, got {std}")
    out = events.copy()
    noise = np.rint(as_rng(rng).normal(0.0, float(std), len(events))).astype(np.int64)
    out["t"] = events["t"] + noise
    if drop_negative:
        out = out[out["t"] >= 0]
    if sort:
        out = out[np.argsort(out["t"], kind="stable")]
    return out


def time_skew(events: np.ndarray, sensor_size: Size, coefficient: float,
              offset: float = 0.0) -> np.ndarray:
    """Affine time warp ``t' = round(a · t + b)`` with ``a > 0`` (order is kept).

    Args:
        events: structured array ``[N]``.
        sensor_size: ``(W, H, 2)`` (only validated).
        coefficient: ``a > 0`` (``a > 1`` slows the recording down).
        offset: ``b`` in µs.
    """
    events, _ = validate(events, sensor_size, "time_skew")
    a = float(coefficient)
    if not a > 0:
        raise ValueError(f"time_skew: coefficient must be > 0 (a negative one reverses time; use "
                         f"time_reversal), got {coefficient}")
    out = events.copy()
    out["t"] = np.rint(events["t"] * a + float(offset)).astype(np.int64)
    return out


def time_reversal(events: np.ndarray, sensor_size: Size, flip_polarity: bool = True) -> np.ndarray:
    """Play the stream backwards over the same interval: ``t' = t_min + t_max − t``, order reversed.

    A pixel that brightened, played backwards, darkens, so by default ``p' = 1 − p`` as well
    (Tonic ``RandomTimeReversal(flip_polarities=True)``).
    """
    events, _ = validate(events, sensor_size, "time_reversal")
    out = events[::-1].copy()
    if len(out):
        t = events["t"]
        out["t"] = (int(t.min()) + int(t.max())) - out["t"]
        if flip_polarity:
            out["p"] = 1 - out["p"].astype(np.int64)
    return out


def _uniform(value: float | tuple[float, float], g: np.random.Generator) -> float:
    if isinstance(value, tuple):
        lo, hi = value
        return float(g.uniform(lo, hi))
    return float(value)


@dataclass(frozen=True)
class CropTime:
    """:func:`crop_time` as a transform."""

    t_min: int | None = None
    t_max: int | None = None
    sensor_size: Size | None = None

    def __call__(self, sample: EventsLike) -> EventsLike:
        events, size = unpack(sample, self.sensor_size, "CropTime")
        return repack(sample, crop_time(events, size, self.t_min, self.t_max))


@dataclass(frozen=True)
class TimeJitter(RandomMixin):
    """:func:`time_jitter` as a transform."""

    std: float
    drop_negative: bool = True
    sort: bool = True
    sensor_size: Size | None = None
    seed: SeedLike = None

    def __call__(self, sample: EventsLike, rng: SeedLike = None) -> EventsLike:
        events, size = unpack(sample, self.sensor_size, "TimeJitter")
        return repack(sample, time_jitter(events, size, self.std, self._rng(rng),
                                          self.drop_negative, self.sort))


@dataclass(frozen=True)
class TimeSkew(RandomMixin):
    """:func:`time_skew`; a ``(low, high)`` tuple for ``coefficient`` or ``offset`` draws it
    uniformly per call."""

    coefficient: float | tuple[float, float]
    offset: float | tuple[float, float] = 0.0
    sensor_size: Size | None = None
    seed: SeedLike = None

    def __call__(self, sample: EventsLike, rng: SeedLike = None) -> EventsLike:
        events, size = unpack(sample, self.sensor_size, "TimeSkew")
        g = self._rng(rng)
        return repack(sample, time_skew(events, size, _uniform(self.coefficient, g),
                                        _uniform(self.offset, g)))


@dataclass(frozen=True)
class RandomTimeReversal(RandomMixin):
    """:func:`time_reversal` with probability ``p``."""

    p: float = 0.5
    flip_polarity: bool = True
    sensor_size: Size | None = None
    seed: SeedLike = None

    def __call__(self, sample: EventsLike, rng: SeedLike = None) -> EventsLike:
        events, size = unpack(sample, self.sensor_size, "RandomTimeReversal")
        if self._rng(rng).random() < check_prob(self.p, "p", "RandomTimeReversal"):
            return repack(sample, time_reversal(events, size, self.flip_polarity))
        validate(events, size, "RandomTimeReversal")
        return repack(sample, events.copy())

"""Dropout-style augmentations: drop events at random, in a time slice or in a box; drop frames.

Event droppers keep the surviving events in their original order. Peers: Tonic ``DropEvent``,
``DropEventByTime``, ``DropEventByArea`` (EventDrop, Gu et al., IJCAI 2021, arXiv 2106.05836);
SpikingJelly ``RandomTemporalDelete`` (SEW ResNet, Fang et al., NeurIPS 2021, arXiv 2102.04159).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from ._common import EventsLike, RandomMixin, SeedLike, as_rng, check_prob, repack, unpack, validate

__all__ = ["drop_event", "drop_by_time", "drop_by_area", "random_temporal_delete", "DropEvent",
           "DropEventByTime", "DropEventByArea", "RandomTemporalDelete"]

Size = tuple[int, int, int]
FramesT = TypeVar("FramesT", np.ndarray, torch.Tensor)


def drop_event(events: np.ndarray, sensor_size: Size, ratio: float, rng: SeedLike) -> np.ndarray:
    """Drop exactly ``round(ratio · N)`` events, chosen uniformly without replacement.

    Returns:
        ``[N − round(ratio·N)]`` events, in input order.
    """
    who = "drop_event"
    events, _ = validate(events, sensor_size, who)
    r = check_prob(ratio, "ratio", who)
    n = len(events)
    n_drop = int(round(r * n))
    keep = np.ones(n, dtype=bool)
    keep[as_rng(rng).choice(n, size=n_drop, replace=False)] = False
    return events[keep]


def drop_by_time(events: np.ndarray, sensor_size: Size, duration_ratio: float,
                 rng: SeedLike) -> np.ndarray:
    """Drop the events in one random time slice ``[s, s + d)``, ``d = round(r · (t_max − t_min))``.

    ``s`` is uniform in ``[t_min, t_max − d]``, so the slice lies inside the recording.
    """
    who = "drop_by_time"
    events, _ = validate(events, sensor_size, who)
    r = check_prob(duration_ratio, "duration_ratio", who)
    g = as_rng(rng)
    if len(events) == 0:
        return events.copy()
    t = events["t"]
    t_min, t_max = int(t.min()), int(t.max())
    d = int(round(r * (t_max - t_min)))
    start = int(g.integers(t_min, t_max - d + 1))
    return events[(t < start) | (t >= start + d)]


def drop_by_area(events: np.ndarray, sensor_size: Size, area_ratio: float,
                 rng: SeedLike) -> np.ndarray:
    """Drop the events inside one random box covering ``area_ratio`` of the sensor.

    The box is ``w = round(W·√r)`` by ``h = round(H·√r)`` pixels at a uniform position, so its area
    is ``≈ r·W·H`` (Tonic scales each side by ``r``, which covers only ``r²`` of the area).
    """
    who = "drop_by_area"
    events, (W, H, _) = validate(events, sensor_size, who)
    r = check_prob(area_ratio, "area_ratio", who)
    g = as_rng(rng)
    w, h = int(round(W * np.sqrt(r))), int(round(H * np.sqrt(r)))
    x0 = int(g.integers(0, W - w + 1))
    y0 = int(g.integers(0, H - h + 1))
    x, y = events["x"], events["y"]
    inside = (x >= x0) & (x < x0 + w) & (y >= y0) & (y < y0 + h)
    return events[~inside]


def random_temporal_delete(frames: FramesT, t_remain: int, rng: SeedLike) -> FramesT:
    """Keep ``t_remain`` of the ``T`` steps of a time-first sequence, chosen at random, in order.

    Args:
        frames: ``[T, ...]`` numpy array or torch tensor (e.g. ``[T, 2, H, W]`` frames).
        t_remain: steps to keep, ``0 <= t_remain <= T``.
        rng: seed or ``numpy.random.Generator``.

    Returns:
        ``[t_remain, ...]``, the same type as ``frames`` (a copy).
    """
    if not isinstance(frames, (np.ndarray, torch.Tensor)) or frames.ndim < 1:
        raise TypeError("random_temporal_delete: expected a time-first numpy array or torch tensor "
                        f"[T, ...], got {type(frames).__name__}")
    T = int(frames.shape[0])
    if not 0 <= int(t_remain) <= T:
        raise ValueError(f"random_temporal_delete: t_remain must be in [0, T={T}], got {t_remain}")
    idx = np.sort(as_rng(rng).choice(T, size=int(t_remain), replace=False))
    if isinstance(frames, torch.Tensor):
        return frames[torch.as_tensor(idx, dtype=torch.long, device=frames.device)]
    return frames[idx]


@dataclass(frozen=True)
class DropEvent(RandomMixin):
    """:func:`drop_event` as a transform."""

    ratio: float
    sensor_size: Size | None = None
    seed: SeedLike = None

    def __call__(self, sample: EventsLike, rng: SeedLike = None) -> EventsLike:
        events, size = unpack(sample, self.sensor_size, "DropEvent")
        return repack(sample, drop_event(events, size, self.ratio, self._rng(rng)))


@dataclass(frozen=True)
class DropEventByTime(RandomMixin):
    """:func:`drop_by_time` as a transform."""

    duration_ratio: float
    sensor_size: Size | None = None
    seed: SeedLike = None

    def __call__(self, sample: EventsLike, rng: SeedLike = None) -> EventsLike:
        events, size = unpack(sample, self.sensor_size, "DropEventByTime")
        return repack(sample, drop_by_time(events, size, self.duration_ratio, self._rng(rng)))


@dataclass(frozen=True)
class DropEventByArea(RandomMixin):
    """:func:`drop_by_area` as a transform."""

    area_ratio: float
    sensor_size: Size | None = None
    seed: SeedLike = None

    def __call__(self, sample: EventsLike, rng: SeedLike = None) -> EventsLike:
        events, size = unpack(sample, self.sensor_size, "DropEventByArea")
        return repack(sample, drop_by_area(events, size, self.area_ratio, self._rng(rng)))


@dataclass(frozen=True)
class RandomTemporalDelete(RandomMixin):
    """:func:`random_temporal_delete` as a frame transform (time-first ``[T, ...]``)."""

    t_remain: int
    seed: SeedLike = None

    def __call__(self, frames: FramesT, rng: SeedLike = None) -> FramesT:
        return random_temporal_delete(frames, self.t_remain, self._rng(rng))

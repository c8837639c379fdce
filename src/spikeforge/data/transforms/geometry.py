"""Spatial and temporal geometry of an event stream: downsampling, crops, flips (incl. polarity).

Conventions (``spikeforge.data.events``): x right, y down, ``p = 1`` is ON. Transforms that change
the sensor return ``(events, new_sensor_size)``; the others return the events only. None mutates
its input, and every output keeps the input's event order (so a sorted stream stays sorted).

Peers: Tonic ``Downsample``, ``CenterCrop``, ``RandomCrop``, ``RandomFlipLR/UD``,
``RandomFlipPolarity``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._common import (
    EventsLike,
    RandomMixin,
    SeedLike,
    as_rng,
    check_prob,
    check_sensor_size,
    repack,
    unpack,
    validate,
)

__all__ = ["downsample", "crop", "center_crop", "random_crop", "flip_lr", "flip_ud",
           "flip_polarity", "Downsample", "CenterCrop", "RandomCrop", "RandomFlipLR",
           "RandomFlipUD", "RandomFlipPolarity"]

Size = tuple[int, int, int]


def downsample(events: np.ndarray, sensor_size: Size, spatial_factor: int = 1,
               time_factor: int = 1) -> tuple[np.ndarray, Size]:
    """Coarsen pixels and timestamps; every event is kept.

        x' = ⌊x / s⌋,  y' = ⌊y / s⌋,  t' = ⌊t / r⌋ · r,  sensor (⌈W/s⌉, ⌈H/s⌉, 2)

    so a frame of the result is the ``s × s`` sum-pool of the input's frame. Timestamps stay in µs
    (``r`` quantises them to multiples of ``r`` µs rather than changing the unit, unlike Tonic's
    ``time_factor`` which rescales).

    Args:
        events: structured array ``[N]``.
        sensor_size: ``(W, H, 2)``.
        spatial_factor: integer ``s >= 1``.
        time_factor: integer ``r >= 1`` µs.

    Returns:
        ``(events [N], (⌈W/s⌉, ⌈H/s⌉, 2))``.
    """
    who = "downsample"
    events, (W, H, P) = validate(events, sensor_size, who)
    s, r = int(spatial_factor), int(time_factor)
    if s < 1 or r < 1:
        raise ValueError(f"{who}: spatial_factor and time_factor must be integers >= 1, got "
                         f"{spatial_factor}, {time_factor}")
    out = events.copy()
    out["x"] = events["x"] // s
    out["y"] = events["y"] // s
    if r > 1:
        out["t"] = (events["t"] // r) * r
    return out, (-(-W // s), -(-H // s), P)


def crop(events: np.ndarray, sensor_size: Size, x0: int, y0: int, width: int,
         height: int) -> tuple[np.ndarray, Size]:
    """Keep the events in the box ``x0 <= x < x0 + width, y0 <= y < y0 + height``, moved to 0, 0.

    Returns:
        ``(events [M <= N], (width, height, 2))``.
    """
    who = "crop"
    events, (W, H, P) = validate(events, sensor_size, who)
    x0, y0, width, height = int(x0), int(y0), int(width), int(height)
    if width < 1 or height < 1 or x0 < 0 or y0 < 0 or x0 + width > W or y0 + height > H:
        raise ValueError(f"{who}: box x0={x0}, y0={y0}, width={width}, height={height} must lie "
                         f"inside the sensor (W={W}, H={H}) with width, height >= 1")
    x = events["x"].astype(np.int64)
    y = events["y"].astype(np.int64)
    keep = (x >= x0) & (x < x0 + width) & (y >= y0) & (y < y0 + height)
    out = events[keep]  # boolean indexing copies
    out["x"] = x[keep] - x0
    out["y"] = y[keep] - y0
    return out, (width, height, P)


def _size_arg(size: int | tuple[int, int], who: str) -> tuple[int, int]:
    try:
        w, h = (size, size) if isinstance(size, (int, np.integer)) else size
        return int(w), int(h)
    except (TypeError, ValueError):
        raise ValueError(f"{who}: size must be an int or (width, height), got {size!r}") from None


def center_crop(events: np.ndarray, sensor_size: Size,
                size: int | tuple[int, int]) -> tuple[np.ndarray, Size]:
    """Crop the central ``size`` (``(width, height)`` or a square side) box; odd margins put the
    extra column/row on the right/bottom, as torchvision does."""
    W, H, _ = check_sensor_size(sensor_size, "center_crop")
    w, h = _size_arg(size, "center_crop")
    if not (1 <= w <= W and 1 <= h <= H):
        raise ValueError(f"center_crop: size ({w}, {h}) must fit the sensor (W={W}, H={H})")
    return crop(events, sensor_size, (W - w) // 2, (H - h) // 2, w, h)


def random_crop(events: np.ndarray, sensor_size: Size, size: int | tuple[int, int],
                rng: SeedLike) -> tuple[np.ndarray, Size]:
    """Crop a ``size`` box at a uniformly random position (every position equally likely)."""
    W, H, _ = check_sensor_size(sensor_size, "random_crop")
    w, h = _size_arg(size, "random_crop")
    if not (1 <= w <= W and 1 <= h <= H):
        raise ValueError(f"random_crop: size ({w}, {h}) must fit the sensor (W={W}, H={H})")
    g = as_rng(rng)
    x0 = int(g.integers(0, W - w + 1))
    y0 = int(g.integers(0, H - h + 1))
    return crop(events, sensor_size, x0, y0, w, h)


def flip_lr(events: np.ndarray, sensor_size: Size) -> np.ndarray:
    """Mirror left-right: ``x' = W − 1 − x``."""
    events, (W, _, _) = validate(events, sensor_size, "flip_lr")
    out = events.copy()
    out["x"] = (W - 1) - events["x"].astype(np.int64)
    return out


def flip_ud(events: np.ndarray, sensor_size: Size) -> np.ndarray:
    """Mirror top-bottom: ``y' = H − 1 − y``."""
    events, (_, H, _) = validate(events, sensor_size, "flip_ud")
    out = events.copy()
    out["y"] = (H - 1) - events["y"].astype(np.int64)
    return out


def flip_polarity(events: np.ndarray, sensor_size: Size) -> np.ndarray:
    """Swap ON and OFF: ``p' = 1 − p``."""
    events, _ = validate(events, sensor_size, "flip_polarity")
    out = events.copy()
    out["p"] = 1 - events["p"].astype(np.int64)
    return out


@dataclass(frozen=True)
class Downsample:
    """:func:`downsample` as a transform; an :class:`Events` input gets the new sensor size."""

    spatial_factor: int = 1
    time_factor: int = 1
    sensor_size: Size | None = None

    def __call__(self, sample: EventsLike) -> EventsLike:
        events, size = unpack(sample, self.sensor_size, "Downsample")
        out, new = downsample(events, size, self.spatial_factor, self.time_factor)
        return repack(sample, out, new)


@dataclass(frozen=True)
class CenterCrop:
    """:func:`center_crop` as a transform."""

    size: int | tuple[int, int]
    sensor_size: Size | None = None

    def __call__(self, sample: EventsLike) -> EventsLike:
        events, size = unpack(sample, self.sensor_size, "CenterCrop")
        out, new = center_crop(events, size, self.size)
        return repack(sample, out, new)


@dataclass(frozen=True)
class RandomCrop(RandomMixin):
    """:func:`random_crop` as a transform; ``rng`` in the call overrides the own ``seed``."""

    size: int | tuple[int, int]
    sensor_size: Size | None = None
    seed: SeedLike = None

    def __call__(self, sample: EventsLike, rng: SeedLike = None) -> EventsLike:
        events, size = unpack(sample, self.sensor_size, "RandomCrop")
        out, new = random_crop(events, size, self.size, self._rng(rng))
        return repack(sample, out, new)


@dataclass(frozen=True)
class _RandomFlip(RandomMixin):
    """Apply a flip with probability ``p`` (validated even when the flip is skipped)."""

    p: float = 0.5
    sensor_size: Size | None = None
    seed: SeedLike = None

    def _flip(self, events: np.ndarray, size: Size) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, sample: EventsLike, rng: SeedLike = None) -> EventsLike:
        name = type(self).__name__
        events, size = unpack(sample, self.sensor_size, name)
        prob = check_prob(self.p, "p", name)
        if self._rng(rng).random() < prob:
            return repack(sample, self._flip(events, size))
        validate(events, size, name)
        return repack(sample, events.copy())


class RandomFlipLR(_RandomFlip):
    """:func:`flip_lr` with probability ``p``."""

    def _flip(self, events: np.ndarray, size: Size) -> np.ndarray:
        return flip_lr(events, size)


class RandomFlipUD(_RandomFlip):
    """:func:`flip_ud` with probability ``p``."""

    def _flip(self, events: np.ndarray, size: Size) -> np.ndarray:
        return flip_ud(events, size)


class RandomFlipPolarity(_RandomFlip):
    """:func:`flip_polarity` with probability ``p``."""

    def _flip(self, events: np.ndarray, size: Size) -> np.ndarray:
        return flip_polarity(events, size)

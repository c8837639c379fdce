"""Shared plumbing for the event transforms: input validation, sample unpacking, random generators.

Every transform takes a structured ``EVENT_DTYPE``-like array plus ``sensor_size = (W, H, 2)``
(see :mod:`spikeforge.data.events`), never mutates it, and returns a new array. The dataclass
wrappers also accept an :class:`~spikeforge.data.events.Events` and then return one, with the
sensor size updated where the transform changes it (crops, downsampling, super-resolution).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..events import Events, check_events

__all__ = ["EventsLike", "SeedLike", "check_sensor_size", "validate", "as_rng", "unpack", "repack",
           "check_prob", "RandomMixin"]

EventsLike = np.ndarray | Events
SeedLike = int | np.random.Generator | None


def check_sensor_size(sensor_size: object, who: str) -> tuple[int, int, int]:
    """Return ``sensor_size`` as ``(W, H, 2)`` ints, or raise naming ``who`` and the expectation."""
    try:
        W, H, P = (int(v) for v in sensor_size)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise ValueError(f"{who}: sensor_size must be (W, H, 2), got {sensor_size!r}") from None
    if W < 1 or H < 1 or P != 2:
        raise ValueError(f"{who}: sensor_size must be (W, H, 2) with W, H >= 1 and 2 polarities, "
                         f"got {tuple(sensor_size)}")  # type: ignore[arg-type]
    return W, H, P


def validate(events: object, sensor_size: object, who: str,
             need_sorted: bool = False) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Check a stream against ``sensor_size`` and return ``(events, (W, H, 2))``.

    Raises ``TypeError``/``ValueError`` naming ``who``, the offending field and the expected value:
    not a 1-D structured array with fields ``t, x, y, p``; ``x >= W``; ``y >= H``; ``p`` not in
    {0, 1}; negative coordinates; and, if ``need_sorted``, timestamps that decrease.
    """
    if not isinstance(events, np.ndarray):
        raise TypeError(f"{who}: expected a numpy structured array of EVENT_DTYPE, got "
                        f"{type(events).__name__}")
    if events.ndim != 1:
        raise ValueError(f"{who}: expected a 1-D event array, got shape {events.shape}")
    size = check_sensor_size(sensor_size, who)
    check_events(events, size, source=who)
    for name in ("x", "y", "p"):
        col = events[name]
        if col.dtype.kind == "i" and len(col) and int(col.min()) < 0:
            i = int(np.argmin(col))
            raise ValueError(f"{who}: event {i} has {name}={col[i]}, expected {name} >= 0")
    if need_sorted and len(events) > 1:
        t = events["t"]
        bad = np.flatnonzero(t[1:] < t[:-1])
        if bad.size:
            i = int(bad[0]) + 1
            raise ValueError(f"{who}: timestamps must be non-decreasing, but event {i} has "
                             f"t={t[i]} < t={t[i - 1]} of event {i - 1}; sort with "
                             f"events[np.argsort(events['t'], kind='stable')]")
    return events, size


def as_rng(seed: SeedLike) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a seed, a generator (used as is) or ``None`` (entropy)."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, (int, np.integer)):
        return np.random.default_rng(seed)
    raise TypeError(f"expected an int seed, a numpy.random.Generator or None, got "
                    f"{type(seed).__name__}")


def check_prob(value: float, name: str, who: str) -> float:
    """Return ``value`` as a float in [0, 1] or raise naming the parameter."""
    v = float(value)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{who}: {name} must be in [0, 1], got {value}")
    return v


class RandomMixin:
    """Gives a dataclass wrapper its own generator, built once from its ``seed`` field.

    ``__call__(sample, rng=None)`` uses ``rng`` when given, else the wrapper's own generator. With a
    ``DataLoader`` and several workers, pass a per-worker generator (or seed each worker) — a copied
    generator repeats the same augmentations in every worker.
    """

    seed: SeedLike

    def _rng(self, rng: SeedLike) -> np.random.Generator:
        if rng is not None:
            return as_rng(rng)
        own = self.__dict__.get("_own_rng")
        if own is None:
            own = as_rng(self.seed)
            object.__setattr__(self, "_own_rng", own)
        return own


def unpack(sample: EventsLike, sensor_size: tuple[int, int, int] | None,
           who: str) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Split a wrapper's input into ``(array, sensor_size)``.

    An :class:`Events` brings its own sensor size; a raw array needs the wrapper's ``sensor_size``.
    """
    if isinstance(sample, Events):
        return sample.events, tuple(sample.sensor_size)  # type: ignore[return-value]
    if sensor_size is None:
        raise ValueError(f"{who}: got a raw event array but no sensor_size; pass an Events or set "
                         f"{who}(sensor_size=(W, H, 2))")
    return sample, sensor_size


def repack(sample: EventsLike, events: np.ndarray,
           sensor_size: tuple[int, int, int] | None = None) -> EventsLike:
    """Return ``events`` in the form the input came in: an :class:`Events` (new sensor size if
    given, a copy of ``meta``) for an :class:`Events`, else the bare array."""
    if isinstance(sample, Events):
        size = sensor_size if sensor_size is not None else sample.sensor_size
        W, H, P = (int(v) for v in size)
        return dataclasses.replace(sample, events=events, sensor_size=(W, H, P),
                                   meta=dict(sample.meta))
    return events

"""Events → frames ``[T, 2, H, W]`` of per-pixel counts, by time bins, event counts or windows.

Layout: time first, then polarity (channel 0 = OFF, ``p = 0``; channel 1 = ON, ``p = 1``), then
``y`` (row, top = 0) and ``x`` (column, left = 0); SpikingJelly's ``[T, 2, H, W]``, channel = p:

    F[j, p, y, x] = #{ i : bin(i) = j, p_i = p, y_i = y, x_i = x }

Splitting rules (N events, stream sorted by ``t``, T requested bins):

* ``split_by="number"`` (SpikingJelly): ``di = max(⌊N/T⌋, 1)``, ``bin(i) = min(⌊i / di⌋, T − 1)``.
* ``split_by="time"`` (SpikingJelly): ``ΔT = max(⌊(t_{N−1} − t_0)/T⌋, 1)``,
  ``bin(i) = min(⌊(t_i − t_0)/ΔT⌋, T − 1)``.
* windows (:func:`to_frames_by_duration`, :func:`to_frames_by_event_count`): window ``k`` covers the
  coordinate ``c`` (``t − t_start`` in µs, or the event index) in ``[k·s, k·s + w)`` with stride
  ``s = w − overlap``; an event lands in every window that covers it, and T is the smallest count
  whose windows cover every event, ``T = 1 + max(0, ⌈(L − w)/s⌉)`` (``L`` = span + 1 or N).

Where SpikingJelly is defined the two agree exactly; the ``max(·, 1)`` clamps are what make short
streams (N < T, or a span shorter than T µs) work: SpikingJelly raises on them, Tonic drops the
remainder or the last event (``neuromorphs/tonic#313``, ``#181``). Here every event is counted, T is
exactly what was asked, and bins may be empty.

Dtype: counts accumulate in ``uint32``; ``dtype="auto"`` returns the smallest of ``uint8``,
``uint16``, ``uint32`` that holds the largest count (lossless). An explicit ``uint8``/``uint16``
*saturates* (counts above the maximum are clipped to it); ``float32``/``float64`` are exact.

References: SpikingJelly ``datasets/utils.py`` (``cal_fixed_frames_number_segment_index``,
``integrate_events_by_fixed_duration``); Tonic ``ToFrame``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numba
import numpy as np

from ..events import EVENT_DTYPE, make_events
from ._common import EventsLike, check_sensor_size, unpack, validate

__all__ = ["FrameDType", "to_frames", "to_frames_by_duration", "to_frames_by_event_count",
           "ToFrames", "ToFramesByDuration", "ToFramesByEventCount"]

FrameDType = Literal["auto"] | type | np.dtype | str

_ERR_X, _ERR_Y, _ERR_P, _ERR_ORDER, _ERR_BEFORE = 1, 2, 3, 4, 5


@numba.njit(cache=True, nogil=True)
def _bad_event(ev, i, use_time, origin, H, W):  # pragma: no cover
    """The error code of event ``i`` (0 if it is fine), checked in the order x, y, p, t."""
    if ev[i].x >= W:
        return _ERR_X
    if ev[i].y >= H:
        return _ERR_Y
    if ev[i].p > 1:
        return _ERR_P
    if use_time and i > 0 and ev[i].t < ev[i - 1].t:
        return _ERR_ORDER
    if use_time and ev[i].t < origin:
        return _ERR_BEFORE
    return 0


@numba.njit(cache=True, nogil=True)
def _accumulate_disjoint(ev, use_time, origin, width, n_bins, H, W, out):  # pragma: no cover
    """Disjoint bins ``[origin + k·width, origin + (k+1)·width)`` of ``t`` (or of the event index),
    the last one open-ended.

    One pass, no division: the stream is sorted, so the bin index only moves forward. Counts go
    into ``out`` (flat ``[T, 2, H, W]`` uint32). Returns ``(error_code, event_index)``; 0 = success.
    """
    HW = H * W
    k = 0
    base = 0
    edge = origin + width
    prev = origin
    for i in range(ev.shape[0]):
        e = ev[i]
        xi = np.intp(e.x)
        yi = np.intp(e.y)
        pi = np.intp(e.p)
        c = np.int64(e.t) if use_time else np.int64(i)
        if xi >= W or yi >= H or pi > 1 or c < prev:
            return _bad_event(ev, i, use_time, origin, H, W), i
        prev = c
        while c >= edge and k < n_bins - 1:
            k += 1
            base += 2 * HW
            edge += width
        out[base + pi * HW + yi * W + xi] += 1
    return 0, -1


@numba.njit(cache=True, nogil=True)
def _accumulate_overlap(ev, use_time, origin, window, stride, n_bins, H, W,
                        out):  # pragma: no cover
    """Overlapping windows ``[origin + k·stride, origin + k·stride + window)``, k < n_bins.

    Each event is added to every window that covers it. Returns ``(error_code, event_index)``.
    """
    HW = H * W
    prev = origin
    for i in range(ev.shape[0]):
        e = ev[i]
        xi = np.intp(e.x)
        yi = np.intp(e.y)
        pi = np.intp(e.p)
        c = np.int64(e.t) if use_time else np.int64(i)
        if xi >= W or yi >= H or pi > 1 or c < prev:
            return _bad_event(ev, i, use_time, origin, H, W), i
        prev = c
        c -= origin
        pix = pi * HW + yi * W + xi
        k = c // stride
        while k >= 0 and c - k * stride < window:
            if k < n_bins:
                out[k * 2 * HW + pix] += 1
            k -= 1
    return 0, -1


def _raise(code: int, i: int, events: np.ndarray, W: int, H: int, who: str) -> None:
    if code == _ERR_X:
        raise ValueError(f"{who}: event {i} has x={events['x'][i]}, outside the sensor "
                         f"(expected x < {W})")
    if code == _ERR_Y:
        raise ValueError(f"{who}: event {i} has y={events['y'][i]}, outside the sensor "
                         f"(expected y < {H})")
    if code == _ERR_P:
        raise ValueError(f"{who}: event {i} has polarity p={events['p'][i]}, expected 0 or 1")
    if code == _ERR_ORDER:
        raise ValueError(f"{who}: timestamps must be non-decreasing, but event {i} has "
                         f"t={events['t'][i]} < t={events['t'][i - 1]} of event {i - 1}")
    if code == _ERR_BEFORE:
        raise ValueError(f"{who}: event {i} has t={events['t'][i]}, before t_start")


def _finish(counts: np.ndarray, dtype: FrameDType) -> np.ndarray:
    """Cast uint32 counts to the requested dtype (``"auto"`` = smallest lossless unsigned type)."""
    if isinstance(dtype, str) and dtype == "auto":
        peak = int(counts.max()) if counts.size else 0
        target: np.dtype = np.dtype(np.uint8 if peak <= 255 else np.uint16 if peak <= 65535
                                    else np.uint32)
    else:
        target = np.dtype(dtype)
    if target.kind == "u" or target.kind == "i":
        top = np.iinfo(target).max
        if counts.size and top < np.iinfo(np.uint32).max and int(counts.max()) > top:
            counts = np.minimum(counts, top)  # saturate, documented in the module docstring
    elif target.kind != "f":
        raise ValueError(f"frame dtype must be 'auto', an integer or a float dtype, got {target}")
    return counts.astype(target, copy=False)


def _check_struct(events: object, sensor_size: object, who: str) -> int:
    """Cheap structural check (the per-event checks run inside the kernel); returns N."""
    if not isinstance(events, np.ndarray) or events.dtype.names is None \
            or not {"t", "x", "y", "p"} <= set(events.dtype.names) or events.ndim != 1:
        validate(events, sensor_size, who)  # raises with the precise message
    check_sensor_size(sensor_size, who)
    return len(events)  # type: ignore[arg-type]


def _frames(events: np.ndarray, sensor_size: tuple[int, int, int], *, use_time: bool, origin: int,
            window: int, stride: int, n_bins: int, dtype: FrameDType,
            who: str) -> np.ndarray:
    W, H, _ = check_sensor_size(sensor_size, who)
    counts = np.zeros(n_bins * 2 * H * W, dtype=np.uint32)
    if events.dtype != EVENT_DTYPE:  # another layout (e.g. Tonic's int64 fields): check, repack
        validate(events, sensor_size, who)
        events = make_events(events["t"], events["x"], events["y"], events["p"])
    cols = (events, use_time, np.int64(origin))
    if window == stride:
        code, i = _accumulate_disjoint(*cols, np.int64(stride), np.int64(n_bins), np.int64(H),
                                       np.int64(W), counts)
    else:
        code, i = _accumulate_overlap(*cols, np.int64(window), np.int64(stride), np.int64(n_bins),
                                      np.int64(H), np.int64(W), counts)
    if code:
        _raise(int(code), int(i), events, W, H, who)
    return _finish(counts, dtype).reshape(n_bins, 2, H, W)


def to_frames(events: np.ndarray, sensor_size: tuple[int, int, int], n_bins: int,
              split_by: Literal["time", "number"] = "time",
              dtype: FrameDType = "auto") -> np.ndarray:
    """Count events into exactly ``n_bins`` frames, splitting the stream by time or by event count.

    ``split_by="time"``: ``ΔT = max(⌊(t_{N−1} − t_0)/T⌋, 1)``, ``bin = min(⌊(t − t_0)/ΔT⌋, T − 1)``.
    ``split_by="number"``: ``di = max(⌊N/T⌋, 1)``, ``bin(i) = min(⌊i/di⌋, T − 1)``.
    Both equal SpikingJelly's ``integrate_events_by_fixed_frames_number`` wherever it is defined,
    and keep every event (the last bin takes the remainder). ``split_by="time"`` needs sorted ``t``.

    Args:
        events: structured ``EVENT_DTYPE`` array ``[N]``.
        sensor_size: ``(W, H, 2)``.
        n_bins: T ≥ 1, the number of frames returned.
        split_by: ``"time"`` (equal durations) or ``"number"`` (equal event counts).
        dtype: ``"auto"`` (smallest lossless unsigned int), an int dtype (saturating) or a float.

    Returns:
        ``[T, 2, H, W]`` counts; channel 0 = OFF, 1 = ON; ``frames.sum() == N``.
    """
    who = "to_frames"
    if int(n_bins) < 1:
        raise ValueError(f"{who}: n_bins must be >= 1, got {n_bins}")
    n_bins = int(n_bins)
    n = _check_struct(events, sensor_size, who)
    if split_by == "time":
        t = events["t"] if n else None
        origin = int(t[0]) if t is not None else 0
        width = max((int(t[-1]) - origin) // n_bins, 1) if t is not None else 1
        use_time = True
    elif split_by == "number":
        origin, width, use_time = 0, max(n // n_bins, 1), False
    else:
        raise ValueError(f"{who}: split_by must be 'time' or 'number', got {split_by!r}")
    return _frames(events, sensor_size, use_time=use_time, origin=origin, window=width,
                   stride=width, n_bins=n_bins, dtype=dtype, who=who)


def _n_windows(length: int, window: int, stride: int) -> int:
    """Smallest T whose windows ``[k·s, k·s + w)``, k < T, cover the coordinates ``0..length−1``."""
    return 1 + max(0, -(-(length - window) // stride))


def _window_args(window: int, overlap: int, who: str, unit: str) -> tuple[int, int]:
    window, overlap = int(window), int(overlap)
    if window < 1:
        raise ValueError(f"{who}: {unit} must be >= 1, got {window}")
    if not 0 <= overlap < window:
        raise ValueError(f"{who}: overlap must be in [0, {unit}) = [0, {window}), got {overlap}")
    return window, window - overlap


def to_frames_by_duration(events: np.ndarray, sensor_size: tuple[int, int, int], duration: int,
                          overlap: int = 0, t_start: int | None = None,
                          dtype: FrameDType = "auto") -> np.ndarray:
    """Count events into windows of fixed ``duration`` µs; T varies with the stream's length.

    Window k covers ``t − t_start`` in ``[k·s, k·s + duration)``, stride ``s = duration − overlap``;
    ``T = 1 + max(0, ⌈(t_{N−1} − t_start + 1 − duration)/s⌉)``, so the last (possibly incomplete)
    window is kept and every event is counted (``overlap`` times more where windows overlap).
    Batch variable-T samples with :func:`spikeforge.data.collate.pad_collate`.

    Args:
        events: structured ``EVENT_DTYPE`` array ``[N]``, sorted by ``t``.
        sensor_size: ``(W, H, 2)``.
        duration: window length in µs (≥ 1).
        overlap: µs shared by consecutive windows, ``0 <= overlap < duration``.
        t_start: start of window 0 (default: the first event's ``t``); no event may precede it.
        dtype: as in :func:`to_frames`.

    Returns:
        ``[T, 2, H, W]`` counts (``T = 0`` for an empty stream with ``t_start=None``).
    """
    who = "to_frames_by_duration"
    window, stride = _window_args(duration, overlap, who, "duration")
    n = _check_struct(events, sensor_size, who)
    origin = int(events["t"][0]) if (t_start is None and n) else int(t_start or 0)
    n_bins = _n_windows(int(events["t"][-1]) - origin + 1, window, stride) if n else 0
    return _frames(events, sensor_size, use_time=True, origin=origin, window=window, stride=stride,
                   n_bins=n_bins, dtype=dtype, who=who)


def to_frames_by_event_count(events: np.ndarray, sensor_size: tuple[int, int, int],
                             event_count: int, overlap: int = 0,
                             dtype: FrameDType = "auto") -> np.ndarray:
    """Count events into frames of ``event_count`` consecutive events each; T varies with N.

    Frame k holds events ``[k·s, k·s + event_count)`` with stride ``s = event_count − overlap``;
    ``T = 1 + max(0, ⌈(N − event_count)/s⌉)``; the last frame may hold fewer events; none is lost.

    Args:
        events: structured ``EVENT_DTYPE`` array ``[N]``.
        sensor_size: ``(W, H, 2)``.
        event_count: events per frame (≥ 1).
        overlap: events shared by consecutive frames, ``0 <= overlap < event_count``.
        dtype: as in :func:`to_frames`.

    Returns:
        ``[T, 2, H, W]`` counts (``T = 0`` for an empty stream).
    """
    who = "to_frames_by_event_count"
    window, stride = _window_args(event_count, overlap, who, "event_count")
    n = _check_struct(events, sensor_size, who)
    n_bins = _n_windows(n, window, stride) if n else 0
    return _frames(events, sensor_size, use_time=False, origin=0, window=window, stride=stride,
                   n_bins=n_bins, dtype=dtype, who=who)


@dataclass(frozen=True)
class ToFrames:
    """``[T, 2, H, W]`` frames with exactly ``n_bins`` bins; see :func:`to_frames`."""

    n_bins: int
    split_by: Literal["time", "number"] = "time"
    sensor_size: tuple[int, int, int] | None = None
    dtype: FrameDType = "auto"

    def __call__(self, sample: EventsLike) -> np.ndarray:
        events, size = unpack(sample, self.sensor_size, "ToFrames")
        return to_frames(events, size, self.n_bins, self.split_by, self.dtype)


@dataclass(frozen=True)
class ToFramesByDuration:
    """``[T, 2, H, W]`` frames of fixed duration (variable T); see :func:`to_frames_by_duration`."""

    duration: int
    overlap: int = 0
    t_start: int | None = None
    sensor_size: tuple[int, int, int] | None = None
    dtype: FrameDType = "auto"

    def __call__(self, sample: EventsLike) -> np.ndarray:
        events, size = unpack(sample, self.sensor_size, "ToFramesByDuration")
        return to_frames_by_duration(events, size, self.duration, self.overlap, self.t_start,
                                     self.dtype)


@dataclass(frozen=True)
class ToFramesByEventCount:
    """``[T, 2, H, W]`` frames of a fixed event count (variable T).

    See :func:`to_frames_by_event_count`.
    """

    event_count: int
    overlap: int = 0
    sensor_size: tuple[int, int, int] | None = None
    dtype: FrameDType = "auto"

    def __call__(self, sample: EventsLike) -> np.ndarray:
        events, size = unpack(sample, self.sensor_size, "ToFramesByEventCount")
        return to_frames_by_event_count(events, size, self.event_count, self.overlap, self.dtype)

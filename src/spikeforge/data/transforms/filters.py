"""Event filters: background-activity denoising and a per-pixel refractory period.

Both are causal single passes over a time-sorted stream (numba), keep the survivors in order and
never mutate the input.

* :func:`denoise` — keep event i only if a neighbouring pixel (8- or 4-connected, either
  polarity) fired within the last ``filter_time`` µs: some earlier event j at a neighbour of i
  has ``t_i − t_j < filter_time``.
  (Tonic ``Denoise``, Delbruck's background-activity filter; Tonic uses the 4-neighbourhood and
  lets every event in the first ``filter_time`` µs through, which this version does not.)
* :func:`refractory` — drop an event if the same pixel emitted a *kept* event less than
  ``period`` µs before: keep i iff ``t_i − t_last_kept(x_i, y_i) >= period``, a dead time after
  each emitted event. (Tonic ``RefractoryPeriod`` restarts the period at every event, dropped ones
  included, so a pixel firing faster than the period stays silent for good.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from ._common import EventsLike, repack, unpack, validate

__all__ = ["denoise", "refractory", "Denoise", "Refractory"]

Size = tuple[int, int, int]
_NEVER = np.iinfo(np.int64).min // 2  # "never fired": so far back that t − _NEVER never overflows


@numba.njit(cache=True, nogil=True)
def _denoise_mask(t, x, y, W, H, filter_time, diagonal):  # pragma: no cover
    last = np.full((H + 2, W + 2), _NEVER, dtype=np.int64)  # 1-pixel border: no bounds checks
    keep = np.zeros(t.shape[0], dtype=np.bool_)
    for i in range(t.shape[0]):
        ti = t[i]
        r = np.intp(y[i]) + 1
        c = np.intp(x[i]) + 1
        newest = max(last[r - 1, c], last[r + 1, c], last[r, c - 1], last[r, c + 1])
        if diagonal:
            newest = max(newest, last[r - 1, c - 1], last[r - 1, c + 1], last[r + 1, c - 1],
                         last[r + 1, c + 1])
        keep[i] = ti - newest < filter_time
        last[r, c] = ti
    return keep


@numba.njit(cache=True, nogil=True)
def _refractory_mask(t, x, y, p, W, H, period, per_polarity):  # pragma: no cover
    last = np.full((2, H, W), _NEVER, dtype=np.int64)
    keep = np.zeros(t.shape[0], dtype=np.bool_)
    for i in range(t.shape[0]):
        q = np.intp(p[i]) if per_polarity else 0
        yi = np.intp(y[i])
        xi = np.intp(x[i])
        if t[i] - last[q, yi, xi] >= period:
            keep[i] = True
            last[q, yi, xi] = t[i]
    return keep


def _cols(events: np.ndarray) -> tuple[np.ndarray, ...]:
    return tuple(np.ascontiguousarray(events[k]) for k in ("t", "x", "y", "p"))


def denoise(events: np.ndarray, sensor_size: Size, filter_time: int,
            connectivity: int = 8) -> np.ndarray:
    """Background-activity filter: keep events supported by a recent neighbour.

    Keep event i iff some earlier event j at a neighbouring pixel (``connectivity`` 8: the 3×3 box
    without the centre; 4: up/down/left/right), of either polarity, has ``t_i − t_j < filter_time``.

    Args:
        events: structured array ``[N]`` sorted by ``t``.
        sensor_size: ``(W, H, 2)``.
        filter_time: support window in µs (``>= 0``; 0 drops everything).
        connectivity: 8 or 4.

    Returns:
        ``[M <= N]`` events, in input order.
    """
    events, (W, H, _) = validate(events, sensor_size, "denoise", need_sorted=True)
    if connectivity not in (4, 8):
        raise ValueError(f"denoise: connectivity must be 4 or 8, got {connectivity}")
    if int(filter_time) < 0:
        raise ValueError(f"denoise: filter_time must be >= 0 µs, got {filter_time}")
    t, x, y, _ = _cols(events)
    keep = _denoise_mask(t.astype(np.int64), x, y, W, H, np.int64(filter_time), connectivity == 8)
    return events[keep]


def refractory(events: np.ndarray, sensor_size: Size, period: int,
               per_polarity: bool = False) -> np.ndarray:
    """Per-pixel refractory period: after a kept event, the pixel is silent for ``period`` µs.

    Keep event i iff ``t_i − t_last_kept >= period`` at its pixel (and polarity, if
    ``per_polarity``). ``period = 0`` keeps everything.

    Args:
        events: structured array ``[N]`` sorted by ``t``.
        sensor_size: ``(W, H, 2)``.
        period: refractory period in µs (``>= 0``).
        per_polarity: track ON and OFF separately.

    Returns:
        ``[M <= N]`` events, in input order.
    """
    events, (W, H, _) = validate(events, sensor_size, "refractory", need_sorted=True)
    if int(period) < 0:
        raise ValueError(f"refractory: period must be >= 0 µs, got {period}")
    t, x, y, p = _cols(events)
    keep = _refractory_mask(t.astype(np.int64), x, y, p, W, H, np.int64(period), bool(per_polarity))
    return events[keep]


@dataclass(frozen=True)
class Denoise:
    """:func:`denoise` as a transform."""

    filter_time: int
    connectivity: int = 8
    sensor_size: Size | None = None

    def __call__(self, sample: EventsLike) -> EventsLike:
        events, size = unpack(sample, self.sensor_size, "Denoise")
        return repack(sample, denoise(events, size, self.filter_time, self.connectivity))


@dataclass(frozen=True)
class Refractory:
    """:func:`refractory` as a transform."""

    period: int
    per_polarity: bool = False
    sensor_size: Size | None = None

    def __call__(self, sample: EventsLike) -> EventsLike:
        events, size = unpack(sample, self.sensor_size, "Refractory")
        return repack(sample, refractory(events, size, self.period, self.per_polarity))

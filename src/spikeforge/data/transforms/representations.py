"""Dense event representations beyond counts: the voxel grid and the time surface.

* Voxel grid (Zhu, Yuan, Chaney, Daniilidis, CVPR 2019, arXiv 1812.08156, eq. 2): each event spreads
  its polarity ``±1`` over the two nearest of B time bins, linearly in normalised time,

      t*_i = (B − 1)(t_i − t_0)/(t_{N−1} − t_0),   V[b, y, x] = Σ_i p̂_i · max(0, 1 − |b − t*_i|),

  with ``p̂ = +1`` for ON, ``−1`` for OFF (``t*_i = 0`` when the span is 0).
* Time surface (Lagorce et al., HOTS, IEEE TPAMI 2017, eq. 3; evaluated on the whole sensor): for
  each pixel and polarity the exponentially decayed age of its latest event,

      S_j[p, y, x] = exp(−(t_ref_j − t_last_j[p, y, x]) / τ),   0 where the pixel never fired,

  read at the end of each of T bins (the bins of ``to_frames(split_by="time")``, width ΔT):
  ``t_ref_j = t_0 + (j+1)·ΔT − 1`` for ``j < T − 1`` and ``max(t_{N−1}, t_0 + T·ΔT − 1)`` for
  the last bin, which takes the remainder; ``t_last_j`` runs over the events of bins ``<= j``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from ._common import EventsLike, unpack, validate

__all__ = ["to_voxel_grid", "to_time_surface", "ToVoxelGrid", "ToTimeSurface"]

Size = tuple[int, int, int]
_NEVER = np.iinfo(np.int64).min


def to_voxel_grid(events: np.ndarray, sensor_size: Size, n_bins: int,
                  split_polarity: bool = False) -> np.ndarray:
    """Zhu et al.'s bilinear-in-time voxel grid.

    Args:
        events: structured array ``[N]`` sorted by ``t``.
        sensor_size: ``(W, H, 2)``.
        n_bins: B >= 1 time bins.
        split_polarity: if True, keep ON and OFF apart with unsigned weights (``[B, 2, H, W]``,
            channel = p) instead of the signed sum.

    Returns:
        ``[B, 1, H, W]`` float32 (or ``[B, 2, H, W]``); each event's weights sum to 1, so
        ``V.sum() == N_ON − N_OFF`` (``N`` with ``split_polarity``).
    """
    who = "to_voxel_grid"
    events, (W, H, _) = validate(events, sensor_size, who, need_sorted=True)
    B = int(n_bins)
    if B < 1:
        raise ValueError(f"{who}: n_bins must be >= 1, got {n_bins}")
    C = 2 if split_polarity else 1
    if len(events) == 0:
        return np.zeros((B, C, H, W), dtype=np.float32)
    t = events["t"].astype(np.int64)
    span = int(t[-1] - t[0])
    ts = (B - 1) * (t - t[0]) / span if span > 0 else np.zeros(len(t))
    b0 = np.minimum(np.floor(ts).astype(np.int64), B - 1)
    frac = ts - b0
    b1 = np.minimum(b0 + 1, B - 1)  # at t* = B − 1 the upper weight is 0 anyway
    p = events["p"].astype(np.int64)
    chan = p if split_polarity else np.zeros_like(p)
    sign = np.ones(len(t)) if split_polarity else 2.0 * p - 1.0
    pix = (chan * H + events["y"].astype(np.int64)) * W + events["x"].astype(np.int64)
    size = B * C * H * W
    grid = np.bincount(b0 * (C * H * W) + pix, weights=sign * (1.0 - frac), minlength=size)
    grid += np.bincount(b1 * (C * H * W) + pix, weights=sign * frac, minlength=size)
    return grid.reshape(B, C, H, W).astype(np.float32)


@numba.njit(cache=True, nogil=True)
def _last_times(t, x, y, p, origin, width, n_bins, H, W):  # pragma: no cover
    """``[T, 2, H, W]`` time of the latest event by each bin's end (``_NEVER`` if none)."""
    out = np.empty((n_bins, 2, H, W), dtype=np.int64)
    last = np.full((2, H, W), _NEVER, dtype=np.int64)
    k = 0
    edge = origin + width
    for i in range(t.shape[0]):
        while t[i] >= edge and k < n_bins - 1:
            out[k] = last
            k += 1
            edge += width
        last[np.intp(p[i]), np.intp(y[i]), np.intp(x[i])] = t[i]
    while k < n_bins:
        out[k] = last
        k += 1
    return out


def to_time_surface(events: np.ndarray, sensor_size: Size, tau: float,
                    n_bins: int = 1) -> np.ndarray:
    """Exponential time surface read at the end of each of ``n_bins`` equal-time bins.

    Args:
        events: structured array ``[N]`` sorted by ``t``.
        sensor_size: ``(W, H, 2)``.
        tau: decay time constant in µs (> 0).
        n_bins: T >= 1; bins as in ``to_frames(split_by="time")``.

    Returns:
        ``[T, 2, H, W]`` float32 in ``[0, 1]``; 1 where a pixel fired exactly at ``t_ref``.
    """
    who = "to_time_surface"
    events, (W, H, _) = validate(events, sensor_size, who, need_sorted=True)
    T = int(n_bins)
    if T < 1:
        raise ValueError(f"{who}: n_bins must be >= 1, got {n_bins}")
    if not float(tau) > 0:
        raise ValueError(f"{who}: tau must be > 0 µs, got {tau}")
    if len(events) == 0:
        return np.zeros((T, 2, H, W), dtype=np.float32)
    t = np.ascontiguousarray(events["t"], dtype=np.int64)
    origin = int(t[0])
    width = max((int(t[-1]) - origin) // T, 1)
    last = _last_times(t, np.ascontiguousarray(events["x"]), np.ascontiguousarray(events["y"]),
                       np.ascontiguousarray(events["p"]), np.int64(origin), np.int64(width),
                       np.int64(T), np.int64(H), np.int64(W))
    t_ref = origin + (np.arange(1, T + 1, dtype=np.int64) * width) - 1
    t_ref[-1] = max(int(t[-1]), int(t_ref[-1]))  # the last bin takes the remainder
    fired = last != _NEVER
    age = (t_ref[:, None, None, None] - np.where(fired, last, 0)).astype(np.float64)
    return np.where(fired, np.exp(-age / float(tau)), 0.0).astype(np.float32)


@dataclass(frozen=True)
class ToVoxelGrid:
    """:func:`to_voxel_grid` as a transform."""

    n_bins: int
    split_polarity: bool = False
    sensor_size: Size | None = None

    def __call__(self, sample: EventsLike) -> np.ndarray:
        events, size = unpack(sample, self.sensor_size, "ToVoxelGrid")
        return to_voxel_grid(events, size, self.n_bins, self.split_polarity)


@dataclass(frozen=True)
class ToTimeSurface:
    """:func:`to_time_surface` as a transform."""

    tau: float
    n_bins: int = 1
    sensor_size: Size | None = None

    def __call__(self, sample: EventsLike) -> np.ndarray:
        events, size = unpack(sample, self.sensor_size, "ToTimeSurface")
        return to_time_surface(events, size, self.tau, self.n_bins)

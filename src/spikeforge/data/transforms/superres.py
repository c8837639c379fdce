"""Event-stream super-resolution: a ``k×`` denser sensor with the same events, redistributed.

After Li, Li & Shi, "Super-resolution of spatiotemporal event-stream image captured by the
asynchronous temporal contrast vision sensor", arXiv 1802.02398 (Neurocomputing 2019). Two stages:

1. **How many events each new pixel gets.** The paper reconstructs the high-resolution count map by
   sparse-representation SR; we use the bilinear upsampling of the low-resolution count map
   ``C[p, y, x]`` as the intensity prior ``C̃`` (align-corners-false, edge-clamped), and share each
   low-resolution pixel's count among its ``k²`` children in proportion to ``C̃`` with largest-
   remainder rounding (ties to the lower child index). So the counts are integers and
   **sum-pooling the result by k returns C exactly**.
2. **When.** Each new pixel ``X`` fires as a non-homogeneous Poisson process whose rate follows the
   local rate, a spatial filter of its low-resolution neighbours' rates:

       λ_p(X, t) = Σ_j w_j(X) · r_{p,j}(t),

   with ``w_j`` the same bilinear weights over the 2×2 nearest low-resolution pixels ``j`` and
   ``r_{p,j}`` pixel j's event-rate histogram over ``n_time_bins`` equal bins of ``[t_0, t_max]``.
   Given its count ``n_X``, a Poisson process's event times are i.i.d. with density ``λ/∫λ``, so we
   draw them by inverse transform: pick neighbour j with probability ``∝ w_j · C_{p,j}``, a bin with
   probability ``r_{p,j}(b) / C_{p,j}`` (a uniformly chosen event of j, its bin), then a uniform
   time in that bin. This is the distribution the paper's thinning sampler targets, without
   rejections.

Polarity is kept; the output is sorted by ``t`` and has sensor size ``(k·W, k·H, 2)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..events import make_events
from ._common import EventsLike, RandomMixin, SeedLike, as_rng, repack, unpack, validate

__all__ = ["super_resolve", "SuperResolve"]

Size = tuple[int, int, int]


def _axis_weights(n: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps along one axis: for each of the ``k·n`` new coordinates, ``(lo, hi, a)`` with
    value ``(1 − a)·v[lo] + a·v[hi]`` (pixel centres, edge-clamped; as ``F.interpolate``'s
    ``align_corners=False``)."""
    u = (np.arange(k * n) + 0.5) / k - 0.5
    f = np.floor(u)
    lo = np.clip(f, 0, n - 1).astype(np.int64)
    hi = np.clip(f + 1, 0, n - 1).astype(np.int64)
    return lo, hi, u - f


def _apportion(total: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Split integer ``total[m]`` over the columns of ``prior[m, c]`` in proportion, exactly.

    Largest-remainder (Hamilton) rounding: floors, then +1 to the largest fractional parts.
    """
    norm = prior.sum(axis=1, keepdims=True)
    quota = np.divide(total[:, None] * prior, norm, out=np.zeros_like(prior), where=norm > 0)
    base = np.floor(quota).astype(np.int64)
    short = total - base.sum(axis=1)
    order = np.argsort(-(quota - base), axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(prior.shape[1])[None, :].repeat(len(prior), 0), axis=1)
    return base + (rank < short[:, None])


def super_resolve(events: np.ndarray, sensor_size: Size, factor: int, rng: SeedLike,
                  n_time_bins: int = 64) -> tuple[np.ndarray, Size]:
    """Upsample an event stream spatially by an integer ``factor`` (Li, Li & Shi, arXiv 1802.02398).

    Args:
        events: structured array ``[N]`` (any order).
        sensor_size: ``(W, H, 2)``.
        factor: k >= 1 (2 and 4 are the paper's).
        rng: seed or ``numpy.random.Generator`` for the event times.
        n_time_bins: bins of the low-resolution rate histograms (the temporal resolution of λ).

    Returns:
        ``(events [N], (k·W, k·H, 2))``, sorted by ``t``; sum-pooling its ``[2, kH, kW]`` counts by
        ``k`` gives the input's ``[2, H, W]`` counts exactly, and every ``t`` lies in
        ``[t_min, t_max]`` of the input.
    """
    who = "super_resolve"
    events, (W, H, _) = validate(events, sensor_size, who)
    k, B = int(factor), int(n_time_bins)
    if k < 1:
        raise ValueError(f"{who}: factor must be an integer >= 1, got {factor}")
    if B < 1:
        raise ValueError(f"{who}: n_time_bins must be >= 1, got {n_time_bins}")
    g = as_rng(rng)
    new_size = (k * W, k * H, 2)
    n = len(events)
    if n == 0:
        return events.copy(), new_size
    t = events["t"].astype(np.int64)
    p = events["p"].astype(np.int64)
    lr = (p * H + events["y"].astype(np.int64)) * W + events["x"].astype(np.int64)
    C = np.bincount(lr, minlength=2 * H * W).reshape(2, H, W)

    # Stage 1: high-resolution counts, exact under sum-pooling.
    ylo, yhi, ya = _axis_weights(H, k)
    xlo, xhi, xa = _axis_weights(W, k)
    Cf = C.astype(np.float64)
    rows = (1 - ya)[None, :, None] * Cf[:, ylo, :] + ya[None, :, None] * Cf[:, yhi, :]
    prior = (1 - xa) * rows[:, :, xlo] + xa * rows[:, :, xhi]  # [2, kH, kW]
    by_parent = prior.reshape(2, H, k, W, k).transpose(0, 1, 3, 2, 4).reshape(2 * H * W, k * k)
    counts = _apportion(C.reshape(-1), by_parent)
    hr_counts = counts.reshape(2, H, W, k, k).transpose(0, 1, 3, 2, 4).reshape(2, k * H, k * W)

    # Stage 2: one new event per unit of count, at pixel (P, Y, X) ...
    flat = np.repeat(np.arange(hr_counts.size), hr_counts.reshape(-1))
    P, rem = np.divmod(flat, k * H * k * W)
    Y, X = np.divmod(rem, k * W)
    # ... whose time comes from a neighbour j chosen with probability ∝ w_j · C[P, j] ...
    cand_y = np.stack([ylo[Y], ylo[Y], yhi[Y], yhi[Y]], axis=1)
    cand_x = np.stack([xlo[X], xhi[X], xlo[X], xhi[X]], axis=1)
    wy = np.stack([1 - ya[Y], 1 - ya[Y], ya[Y], ya[Y]], axis=1)
    wx = np.stack([1 - xa[X], xa[X], 1 - xa[X], xa[X]], axis=1)
    cand = (P[:, None] * H + cand_y) * W + cand_x  # [N, 4] low-resolution pixel ids
    w = np.cumsum(wy * wx * C.reshape(-1)[cand], axis=1)
    pick = (g.random(n) * w[:, -1])[:, None] >= w  # True for the candidates before the chosen one
    j = cand[np.arange(n), np.minimum(pick.sum(axis=1), 3)]
    # ... as one of j's events, drawn uniformly: its time bin, then a uniform time in the bin.
    order = np.argsort(lr, kind="stable")
    start = np.concatenate(([0], np.cumsum(C.reshape(-1))))[:-1]
    src = order[start[j] + np.floor(g.random(n) * C.reshape(-1)[j]).astype(np.int64)]
    t0, span = int(t.min()), int(t.max()) - int(t.min()) + 1
    b = ((t[src] - t0) * B) // span
    new_t = t0 + np.floor((b + g.random(n)) * span / B).astype(np.int64)
    new_t = np.clip(new_t, t0, t0 + span - 1)
    out = make_events(new_t, X, Y, P)
    return out[np.argsort(new_t, kind="stable")], new_size


@dataclass(frozen=True)
class SuperResolve(RandomMixin):
    """:func:`super_resolve` as a transform; an :class:`Events` input gets the new sensor size."""

    factor: int
    n_time_bins: int = 64
    sensor_size: Size | None = None
    seed: SeedLike = None

    def __call__(self, sample: EventsLike, rng: SeedLike = None) -> EventsLike:
        events, size = unpack(sample, self.sensor_size, "SuperResolve")
        out, new = super_resolve(events, size, self.factor, self._rng(rng), self.n_time_bins)
        return repack(sample, out, new)

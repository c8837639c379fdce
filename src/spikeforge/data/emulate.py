"""Static images → N-MNIST-style event streams: three saccades seen by an emulated DVS/ATIS pixel array.

N-MNIST was recorded by an ATIS sensor on a pan-tilt unit making three ~100 ms saccades, a triangle,
in front of an LCD showing each MNIST digit (Orchard et al. 2015). This module replays that offline:

1. **Motion.** The image (blurred by the optics, ``blur_px``) is shifted along the triangle path
   ``saccade_path`` with bilinear sub-pixel warping, sampled every ``step_us``. Each leg has a smooth
   (raised-cosine) velocity, ``s(u) = u − sin(2πu)/(2π)`` for ``u ∈ [0, 1]``, so the event rate
   peaks mid-saccade as in the real recordings.
2. **Log intensity.** ``I = 1 + (contrast − 1)·v`` for pixel value ``v ∈ [0, 1]`` (``v → 1 − v``
   when ``negative``), ``L = ln I``.
3. **Change detection** (ESIM, Rebecq et al. 2018; v2e, Hu et al. 2021). Each pixel keeps a
   reference ``L_ref``; it fires ON when ``L − L_ref ≥ C_on`` and OFF when ``L − L_ref ≤ −C_off``,
   at the crossing time interpolated linearly within the step. Thresholds have per-pixel mismatch,
   ``C ~ N(threshold, mismatch_sigma)`` clipped at ``min_threshold``, fixed for the emulated sensor
   (``mismatch_seed``), and ``L_ref`` starts at a random phase ``L_0 − U(−C_off, C_on)``.
4. **Refractory period.** After an event at ``t_e`` the pixel is held in reset until
   ``t_e + refractory_us`` and re-arms with ``L_ref = L(t_e + refractory_us)``: change during the
   reset is lost, as in the DVS pixel (Lichtsteiner et al. 2008).
5. **Noise.** Shot noise: Poisson events at ``noise_rate_hz`` per pixel over the recording,
   ``noise_on_fraction`` of them ON (the real sample's background events are ~90 % ON); Gaussian
   timestamp jitter ``jitter_us``.

Measured over 100 emulated digits (scikit-learn digits, seed 0) against the real sample: 4,192
events per sample (real 4,325), 51.1 % ON (49.6 %), 306 ms (311 ms), one rate peak per saccade at
45 / 155 / 255 ms (55 / 145 / 255 ms); about 4–5 ms per image in batches on one CPU core.

Orientation: x right, y down, ON = 1 (the package convention). The defaults reproduce the real
N-MNIST sample (``sample_nmnist.bin``: 4,325 events, 49.6 % ON, 311 ms): in it ON events trail the
motion of the strokes, i.e. the sensor saw a dark digit on a bright field, hence ``negative=True``;
the image moves down, then up-right, then left (read off that sample's event centroids).
Everything is vectorised over pixels and over the images of a batch; one loop runs over time.
Each image draws its own randomness from its own seed, so a sample is the same whether emulated
alone or in a batch.

References: Orchard, Jayawant, Cohen, Thakor (2015), Front. Neurosci. 9:437 (N-MNIST);
Rebecq, Gehrig, Scaramuzza (2018), CoRL (ESIM); Hu, Liu, Delbruck (2021), CVPRW (v2e).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .events import Events, make_events

__all__ = ["SaccadeParams", "saccade_path", "emulate_saccades", "emulate_image", "as_unit_images"]

Seed = int | Sequence[int]
_CHUNK = 64


@dataclass(frozen=True)
class SaccadeParams:
    """Parameters of the saccade emulator; defaults are tuned to the real N-MNIST sample.

    Attributes:
        sensor_size: output ``(W, H)`` in pixels; the image is centred in it.
        saccade_us: duration of each saccade (µs); N-MNIST made three.
        pause_us: still time between saccades (µs).
        amplitude_px: length of the two short legs of the triangle (pixels).
        legs: unit displacement of the image per saccade ``(dx, dy)`` (x right, y down), scaled by
            ``amplitude_px``; they must sum to zero (a closed triangle).
        step_us: emulation time step (µs); must not exceed ``refractory_us``.
        blur_px: Gaussian σ of the optics blur (pixels; 0 turns it off).
        contrast: bright / dark intensity ratio of the display (``ln contrast`` log-units).
        negative: show the image inverted (dark strokes on a bright field), as N-MNIST's polarity
            implies.
        threshold_on, threshold_off: mean contrast thresholds ``C_on``, ``C_off`` (log-units).
        mismatch_sigma: σ of the per-pixel threshold mismatch (log-units).
        min_threshold: thresholds are clipped below at this value.
        refractory_us: per-pixel refractory period (µs).
        noise_rate_hz: shot-noise events per pixel per second.
        noise_on_fraction: fraction of shot-noise events that are ON.
        jitter_us: σ of Gaussian timestamp jitter (µs).
        mismatch_seed: seed of the (fixed) per-pixel threshold mismatch of the emulated sensor.
    """

    sensor_size: tuple[int, int] = (34, 34)
    saccade_us: tuple[int, ...] = (100_000, 100_000, 100_000)
    pause_us: int = 5_000
    amplitude_px: float = 4.0
    legs: tuple[tuple[float, float], ...] = ((0.0, 1.0), (1.0, -1.0), (-1.0, 0.0))
    step_us: int = 1_000
    blur_px: float = 0.5
    contrast: float = 5.0
    negative: bool = True
    threshold_on: float = 0.15
    threshold_off: float = 0.15
    mismatch_sigma: float = 0.03
    min_threshold: float = 0.01
    refractory_us: int = 1_000
    noise_rate_hz: float = 0.35
    noise_on_fraction: float = 0.9
    jitter_us: float = 100.0
    mismatch_seed: int = 0

    def __post_init__(self) -> None:
        def bad(field: str, value: Any, need: str) -> ValueError:
            return ValueError(f"SaccadeParams.{field}={value!r}: {need}")

        if len(self.legs) != len(self.saccade_us):
            raise bad("legs", self.legs, f"one (dx, dy) per saccade ({len(self.saccade_us)})")
        if np.abs(np.sum(np.asarray(self.legs, dtype=float), axis=0)).max() > 1e-9:
            raise bad("legs", self.legs, "the displacements must sum to (0, 0) (a closed path)")
        if self.step_us <= 0 or any(d % self.step_us for d in self.saccade_us):
            raise bad("step_us", self.step_us, "must be > 0 and divide every saccade_us")
        if self.refractory_us < self.step_us:
            raise bad("refractory_us", self.refractory_us,
                      f"must be ≥ step_us ({self.step_us}); lower step_us for shorter periods")
        if self.contrast <= 1.0:
            raise bad("contrast", self.contrast, "must be > 1 (bright / dark)")
        if min(self.threshold_on, self.threshold_off, self.min_threshold) <= 0:
            raise bad("threshold_on/threshold_off/min_threshold",
                      (self.threshold_on, self.threshold_off, self.min_threshold), "must be > 0")
        if not 0.0 <= self.noise_on_fraction <= 1.0 or self.noise_rate_hz < 0:
            raise bad("noise_rate_hz/noise_on_fraction",
                      (self.noise_rate_hz, self.noise_on_fraction), "rate ≥ 0, fraction in [0, 1]")

    @property
    def duration_us(self) -> int:
        """Length of the recording: the saccades plus the pauses between them."""
        return int(sum(self.saccade_us) + self.pause_us * (len(self.saccade_us) - 1))


def saccade_path(params: SaccadeParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample times and image displacement along the triangle path.

    Returns:
        ``(t_us [K], dx [K], dy [K])``: float64 times and the image offset (pixels, relative to the
        start) at each emulation step, including the still pauses.
    """
    ts, xs, ys = [], [], []
    t0, pos = 0.0, np.zeros(2)
    for dur, leg in zip(params.saccade_us, params.legs):
        u = np.arange(dur // params.step_us + 1) / (dur // params.step_us)
        s = u - np.sin(2 * np.pi * u) / (2 * np.pi)
        d = np.asarray(leg, dtype=float) * params.amplitude_px
        ts.append(t0 + u * dur)
        xs.append(pos[0] + s * d[0])
        ys.append(pos[1] + s * d[1])
        t0 += dur + params.pause_us
        pos = pos + d
    return np.concatenate(ts), np.concatenate(xs), np.concatenate(ys)


def as_unit_images(images: Any) -> np.ndarray:
    """Images ``[N, H, W]`` (or one ``[H, W]``) as float32 in ``[0, 1]``; uint8 is divided by 255."""
    a = np.asarray(images)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"emulate: images must be [N, H, W] or [H, W], got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    a = a.astype(np.float32)
    if a.size and (a.min() < 0.0 or a.max() > 1.0):
        raise ValueError(f"emulate: float images must lie in [0, 1], got [{a.min()}, {a.max()}]; "
                         "divide by the maximum (e.g. 255 or 16) first")
    return a


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of ``[N, H, W]`` along H and W (zero padding)."""
    if sigma <= 0:
        return img
    r = int(np.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2).astype(np.float32)
    k /= k.sum()
    for axis in (1, 2):
        pad = [(0, 0)] * 3
        pad[axis] = (r, r)
        p = np.pad(img, pad)
        n = img.shape[axis]
        img = sum(k[i] * np.take(p, np.arange(i, i + n), axis=axis) for i in range(2 * r + 1))
    return img


def _thresholds(params: SaccadeParams) -> tuple[np.ndarray, np.ndarray]:
    """The sensor's fixed per-pixel ``C_on, C_off`` maps ``[H, W]``."""
    W, H = params.sensor_size
    rng = np.random.default_rng(params.mismatch_seed)
    c = rng.normal(0.0, params.mismatch_sigma, size=(2, H, W))
    c_on = np.maximum(params.threshold_on + c[0], params.min_threshold)
    c_off = np.maximum(params.threshold_off + c[1], params.min_threshold)
    return c_on.astype(np.float32), c_off.astype(np.float32)


class _Renderer:
    """Log intensity seen by the sensor for a batch at one image offset (bilinear shift)."""

    def __init__(self, images: np.ndarray, params: SaccadeParams, ox: np.ndarray, oy: np.ndarray):
        W, H = params.sensor_size
        _, hi, wi = images.shape
        v = _blur(images, params.blur_px)
        if params.negative:
            v = 1.0 - v
        # Centre the path's bounding box: the image's top-left sits at (bx + ox, by + oy).
        self.bx = (W - wi) / 2 - (ox.min() + ox.max()) / 2
        self.by = (H - hi) / 2 - (oy.min() + oy.max()) / 2
        reach = int(np.ceil(max(abs(self.bx) + np.abs(ox).max(), abs(self.by) + np.abs(oy).max())))
        self.m = reach + max(W, H) + 2
        bg = 1.0 if params.negative else 0.0
        canvas = np.pad(v, ((0, 0), (self.m, self.m), (self.m, self.m)), constant_values=bg)
        intensity = 1.0 + (params.contrast - 1.0) * canvas
        self.canvas = intensity.astype(np.float32)
        self.W, self.H = W, H

    def __call__(self, ox: float, oy: float) -> np.ndarray:
        """``ln I`` on the sensor, ``[N, H, W]``, with the image shifted by ``(ox, oy)``."""
        sx, sy = self.bx + ox, self.by + oy
        fx, fy = int(np.floor(sx)), int(np.floor(sy))
        ax, ay = np.float32(sx - fx), np.float32(sy - fy)
        c0, r0 = self.m - fx, self.m - fy  # canvas index of sensor pixel 0 at integer shift
        H, W = self.H, self.W
        top = (1 - ax) * self.canvas[:, r0:r0 + H, c0:c0 + W] + ax * self.canvas[:, r0:r0 + H,
                                                                                 c0 - 1:c0 - 1 + W]
        bot = (1 - ax) * self.canvas[:, r0 - 1:r0 - 1 + H, c0:c0 + W] + ax * self.canvas[
            :, r0 - 1:r0 - 1 + H, c0 - 1:c0 - 1 + W]
        return np.log((1 - ay) * top + ay * bot)


def _detect(images: np.ndarray, params: SaccadeParams, phases: np.ndarray) -> list[np.ndarray]:
    """Change detection with refractory reset; per image an ``[M, 4]`` float64 array (t, x, y, p).

    A pixel in its refractory period has ``L_ref = NaN``, so the dense comparisons never fire it;
    re-arming is sparse, scheduled at the step whose interval holds ``t_e + refractory_us``.
    """
    t, ox, oy = saccade_path(params)
    render = _Renderer(images, params, ox, oy)
    c_on, c_off = (np.broadcast_to(c, phases.shape).reshape(-1) for c in _thresholds(params))
    n_pix = int(np.prod(phases.shape[1:]))
    L_prev = render(ox[0], oy[0]).reshape(-1)
    ref = L_prev - phases.reshape(-1)
    mark = np.full(ref.shape, -1, dtype=np.int64)  # position of a pixel in this step's re-arm list
    pending: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for k in range(1, t.shape[0]):
        t0, t1 = t[k - 1], t[k]
        moved = ox[k] != ox[k - 1] or oy[k] != oy[k - 1]
        L = render(ox[k], oy[k]).reshape(-1) if moved else L_prev
        due = pending.pop(k, None)
        if due:
            r_idx = np.concatenate([d[0] for d in due])
            r_t = np.concatenate([d[1] for d in due])
            r_L = L_prev[r_idx] + ((r_t - t0) / (t1 - t0)) * (L[r_idx] - L_prev[r_idx])
            ref[r_idx] = r_L
            mark[r_idx] = np.arange(r_idx.size)
        d1 = L - ref
        idx = np.flatnonzero((d1 >= c_on) | (d1 <= -c_off))
        if idx.size:
            ts = np.full(idx.size, t0)
            L_s = L_prev[idx]
            if due:
                j = mark[idx]
                sel = j >= 0
                ts[sel], L_s[sel] = r_t[j[sel]], r_L[j[sel]]
            on = d1[idx] > 0
            a0, a1 = L_s - ref[idx], d1[idx]
            level = np.where(on, c_on[idx], -c_off[idx])
            den = a1 - a0  # 0 only for a pixel already past its threshold (float rounding)
            frac = np.divide(level - a0, den, out=np.zeros_like(den), where=den != 0)
            te = ts + np.clip(frac, 0.0, 1.0) * (t1 - ts)
            ref[idx] = np.nan
            found.append((idx, te, on))
            k_arm = np.searchsorted(t, te + params.refractory_us, side="left")
            for kk in np.unique(k_arm[k_arm < t.shape[0]]):
                m = k_arm == kk
                pending.setdefault(int(kk), []).append((idx[m], te[m] + params.refractory_us))
        if due:
            mark[r_idx] = -1
        L_prev = L
    W = params.sensor_size[0]
    if found:
        idx, te, on = (np.concatenate(c) for c in zip(*found))
    else:
        idx, te, on = np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool)
    b, pix = np.divmod(idx, n_pix)
    y, x = np.divmod(pix, W)
    out = []
    for i in range(images.shape[0]):
        m = b == i
        out.append(np.stack([te[m], x[m], y[m], on[m]], axis=1).astype(np.float64))
    return out


def emulate_saccades(images: Any, params: SaccadeParams | None = None,
                     seeds: Sequence[Seed] | None = None, seed: int = 0) -> list[Events]:
    """Emulate N-MNIST-style recordings of a batch of static images.

    Args:
        images: ``[N, H, W]`` uint8 (0..255) or float in ``[0, 1]``; bright strokes on black, as in
            MNIST (``params.negative`` decides how they are shown).
        params: emulator parameters (default :class:`SaccadeParams`).
        seeds: one seed per image (an int or a sequence of ints for
            :func:`numpy.random.default_rng`); default ``[(seed, i) for i in range(N)]``.
        seed: base seed used when ``seeds`` is not given.

    Returns:
        One :class:`Events` per image, sorted by ``t`` (µs, from 0), ``sensor_size = (W, H, 2)``,
        ``meta = {"source": "emulate_saccades", "params": {...}}``.
    """
    params = params or SaccadeParams()
    imgs = as_unit_images(images)
    n = imgs.shape[0]
    seeds = list(seeds) if seeds is not None else [(seed, i) for i in range(n)]
    if len(seeds) != n:
        raise ValueError(f"emulate_saccades: {len(seeds)} seeds for {n} images")
    W, H = params.sensor_size
    c_on, c_off = _thresholds(params)
    rngs = [np.random.default_rng(s) for s in seeds]
    phases = np.stack([r.uniform(-c_off, c_on).astype(np.float32) for r in rngs]) if n else \
        np.zeros((0, H, W), np.float32)
    signal: list[np.ndarray] = []
    for k in range(0, n, _CHUNK):  # chunks keep the per-step arrays in cache
        signal += _detect(imgs[k:k + _CHUNK], params, phases[k:k + _CHUNK])
    meta = {"source": "emulate_saccades", "params": asdict(params)}
    dur = params.duration_us
    out = []
    for ev, rng in zip(signal, rngs):
        k = rng.poisson(params.noise_rate_hz * 1e-6 * dur * W * H)
        noise = np.stack([rng.uniform(0, dur, k), rng.integers(0, W, k), rng.integers(0, H, k),
                          rng.random(k) < params.noise_on_fraction], axis=1)
        ev = np.concatenate([ev, noise]) if k else ev
        t = ev[:, 0] + (rng.normal(0.0, params.jitter_us, len(ev)) if params.jitter_us > 0 else 0)
        t = np.clip(np.rint(t), 0, dur).astype(np.int64)
        order = np.argsort(t, kind="stable")
        rec = make_events(t[order], ev[order, 1], ev[order, 2], ev[order, 3])
        out.append(Events(rec, (W, H, 2), dict(meta)))
    return out


def emulate_image(image: Any, params: SaccadeParams | None = None, seed: Seed = 0) -> Events:
    """Emulate one image ``[H, W]``; equal to its entry in a batch emulated with the same seed."""
    return emulate_saccades(np.asarray(image)[None], params, seeds=[seed])[0]

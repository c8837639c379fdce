"""Static tensors → spike trains, and decoders back.

Encoders take an input ``x [B, ...]`` (intensities in ``[0, 1]`` for rate and latency coding) and a
number of steps ``T`` and return a time-first train ``[T, B, ...]``; the latency encoder can instead
return spike *times* ``[B, ...]`` (float steps, ``inf`` = silent). Randomness goes through an explicit
``torch.Generator`` so a run is reproducible and resumable.

Example:
    >>> import torch
    >>> from spikeforge import encode
    >>> x = torch.tensor([[0.0, 0.5, 1.0]])
    >>> encode.latency(x, T=5, output="times").tolist()     # bright pixels fire first
    [[inf, 2.0, 0.0]]
    >>> encode.direct(x, T=2).shape
    torch.Size([2, 1, 3])
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

__all__ = ["direct", "rate", "latency", "times_to_train", "first_spike_time", "rate_decode", "count_decode"]


def _check_T(T: int) -> int:
    if int(T) != T or T < 1:
        raise ValueError(f"T must be a positive integer, got {T!r}")
    return int(T)


def _check_unit(name: str, x: Tensor) -> None:
    if not x.is_floating_point():
        raise TypeError(f"{name}: x must be a floating tensor of intensities in [0, 1], got {x.dtype}")
    if x.numel() and (bool((x < 0).any()) or bool((x > 1).any()) or bool(torch.isnan(x).any())):
        raise ValueError(f"{name}: x must lie in [0, 1] (normalise first); got min {x.min().item():.4g}, "
                         f"max {x.max().item():.4g}")


def direct(x: Tensor, T: int) -> Tensor:
    """Direct (analog) coding: the same input at every step, ``[B, ...] -> [T, B, ...]`` (a view)."""
    T = _check_T(T)
    return x.unsqueeze(0).expand(T, *x.shape)


def rate(x: Tensor, T: int, *, method: Literal["bernoulli", "poisson"] = "bernoulli", gain: float = 1.0,
         generator: torch.Generator | None = None) -> Tensor:
    """Rate coding: independent spikes at every step.

    * ``"bernoulli"``: ``P(spike) = gain·x`` per step (SpikingJelly's ``PoissonEncoder`` with ``gain=1``);
      ``gain·x`` must stay within ``[0, 1]``.
    * ``"poisson"``: a Poisson process of rate ``gain·x`` events per step, binarised: ``P(spike) =
      1 − exp(−gain·x)`` (at least one event in the step).

    Args:
        x: intensities ``[B, ...]`` in ``[0, 1]``.
        T: number of steps.
    Returns:
        binary ``[T, B, ...]`` in ``x``'s dtype.
    """
    T = _check_T(T)
    _check_unit("rate", x)
    if method == "bernoulli":
        p = x * gain
        if gain > 1 and bool((p > 1).any()):
            raise ValueError(f"rate: gain·x exceeds 1 (max {p.max().item():.4g}); a Bernoulli probability "
                             "must be <= 1 — lower gain or use method='poisson'")
    elif method == "poisson":
        p = 1.0 - torch.exp(-gain * x)
    else:
        raise ValueError(f"rate: method must be 'bernoulli' or 'poisson', got {method!r}")
    u = torch.rand((T, *x.shape), generator=generator, device=x.device, dtype=x.dtype)
    return (u < p).to(x.dtype)


def latency(x: Tensor, T: int, *, method: Literal["linear", "log"] = "linear", tau: float = 5.0,
            threshold: float = 0.01, output: Literal["train", "times"] = "train") -> Tensor:
    """Latency (time-to-first-spike) coding: one spike per input, earlier for larger values.

    * ``"linear"``: ``t = (1 − x)·(T − 1)``.
    * ``"log"``: ``t = τ·ln(x / (x − θ))`` (the RC-charging time of an LIF neuron to threshold ``θ``),
      clipped to ``T − 1``.

    Inputs ``x <= threshold`` never fire (``t = inf``).

    Returns:
        ``output="train"``: binary ``[T, B, ...]`` with the spike at step ``round(t)``;
        ``output="times"``: float times ``[B, ...]`` in steps, ``inf`` for silent inputs.
    """
    T = _check_T(T)
    _check_unit("latency", x)
    fires = x > threshold
    if method == "linear":
        t = (1.0 - x) * (T - 1)
    elif method == "log":
        safe = torch.where(fires, x, torch.ones_like(x))
        t = torch.clamp(tau * torch.log(safe / (safe - threshold)), max=T - 1)
    else:
        raise ValueError(f"latency: method must be 'linear' or 'log', got {method!r}")
    times = torch.where(fires, t, torch.full_like(t, math.inf))
    if output == "times":
        return times
    if output != "train":
        raise ValueError(f"latency: output must be 'train' or 'times', got {output!r}")
    return times_to_train(times, T)


def times_to_train(times: Tensor, T: int) -> Tensor:
    """Spike times ``[B, ...]`` (steps, ``inf`` = silent) → binary train ``[T, B, ...]`` (spike at ``round(t)``)."""
    T = _check_T(T)
    idx = torch.round(times)
    steps = torch.arange(T, device=times.device, dtype=times.dtype).view(T, *([1] * times.dim()))
    return (steps == idx.unsqueeze(0)).to(times.dtype if times.is_floating_point() else torch.float32)


def first_spike_time(spikes: Tensor) -> Tensor:
    """Decode ``[T, B, ...]`` → the index of each neuron's first spike ``[B, ...]`` (float, ``inf`` = silent)."""
    T = spikes.shape[0]
    fired = spikes > 0
    steps = torch.arange(T, device=spikes.device, dtype=torch.float32).view(T, *([1] * (spikes.dim() - 1)))
    t = torch.where(fired, steps, torch.full_like(steps, math.inf)).amin(dim=0)
    return t


def rate_decode(spikes: Tensor) -> Tensor:
    """Firing rate: the mean over the time axis, ``[T, B, ...] -> [B, ...]``."""
    return spikes.mean(dim=0)


def count_decode(spikes: Tensor) -> Tensor:
    """Spike count: the sum over the time axis, ``[T, B, ...] -> [B, ...]``."""
    return spikes.sum(dim=0)

"""Batch time-first samples into ``[T, B, ...]`` tensors, padding variable lengths with a mask.

A sample is ``frames`` or a tuple ``(frames, label, ...)``, where ``frames`` is a ``[T, ...]`` numpy
array or torch tensor (e.g. ``[T, 2, H, W]`` from :mod:`spikeforge.data.transforms`). Time stays
first after collation — ``[T, B, ...]`` — as every spikeforge layer expects.

* :func:`time_first_collate` stacks equal-length samples: ``(frames [T, B, ...], labels)``.
* :func:`pad_collate` pads to the longest: ``(frames [T_max, B, ...], mask [T_max, B], labels)``
  with ``mask[t, b] = t < T_b``; padding steps hold ``pad_value`` (SpikingJelly's
  ``pad_sequence_collate`` + ``padded_sequence_mask``, but time-first and in one call).

Labels (and any further tuple items) go through ``torch.utils.data.default_collate``; a batch of
bare frames gives ``labels = None``. Frames are cast to ``dtype`` (default ``float32``, as stored
counts are compact ``uint8``/``uint16``); ``dtype=None`` keeps the sample dtype.

For the named datasets (``DataBundle.kind``): :func:`batch_loader` picks the collation for a kind and
:func:`to_time_first` turns each batch into the model's input — the one path from a dataset to
``[T, B, ...]`` that training, evaluation and reports share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from .. import encode

__all__ = ["time_first_collate", "pad_collate", "padded_sequence_mask", "TimeFirstCollate",
           "PadCollate", "batch_loader", "to_time_first"]


def _split(batch: Sequence[Any], who: str) -> tuple[list[torch.Tensor], Any]:
    """Frames as tensors and the collated labels (``None`` for bare frames)."""
    if len(batch) == 0:
        raise ValueError(f"{who}: got an empty batch")
    tupled = [isinstance(item, (tuple, list)) for item in batch]
    if any(tupled) and not all(tupled):
        raise ValueError(f"{who}: mix of bare frames and (frames, label) tuples in one batch")
    frames_list = [item[0] for item in batch] if tupled[0] else list(batch)
    frames = []
    for b, f in enumerate(frames_list):
        if isinstance(f, np.ndarray):
            f = torch.from_numpy(np.ascontiguousarray(f))
        if not isinstance(f, torch.Tensor):
            raise TypeError(f"{who}: sample {b}: frames must be a numpy array or torch tensor "
                            f"[T, ...], got {type(f).__name__}")
        if f.ndim < 1:
            raise ValueError(f"{who}: sample {b}: frames must be time-first [T, ...], got a scalar")
        frames.append(f)
    for b, f in enumerate(frames[1:], 1):
        if f.shape[1:] != frames[0].shape[1:]:
            raise ValueError(f"{who}: sample {b} has frames of shape {tuple(f.shape)}, sample 0 "
                             f"{tuple(frames[0].shape)}; all but the time axis must match")
    labels = None
    if tupled[0]:
        rest = [tuple(item[1:]) for item in batch]
        if len({len(r) for r in rest}) != 1:
            raise ValueError(f"{who}: samples carry different numbers of items beside the frames")
        if len(rest[0]) == 1:
            labels = default_collate([r[0] for r in rest])
        elif len(rest[0]) > 1:
            labels = default_collate(rest)
    return frames, labels


def _common_dtype(frames: list[torch.Tensor], dtype: torch.dtype | None) -> torch.dtype:
    if dtype is not None:
        return dtype
    out = frames[0].dtype
    for f in frames[1:]:
        out = torch.promote_types(out, f.dtype)
    return out


def padded_sequence_mask(lengths: Sequence[int] | torch.Tensor, T_max: int | None = None,
                         device: torch.device | str | None = None) -> torch.Tensor:
    """``mask[t, b] = t < lengths[b]``, shape ``[T_max, B]`` bool (``T_max`` = longest by default).

    Args:
        lengths: ``[B]`` sequence lengths ``>= 0``.
        T_max: padded length (``>= max(lengths)``).
        device: where to build the mask.
    """
    lens = torch.as_tensor(lengths, dtype=torch.long, device=device)
    if lens.ndim != 1 or (lens.numel() and int(lens.min()) < 0):
        raise ValueError(f"padded_sequence_mask: lengths must be a 1-D list of ints >= 0, "
                         f"got {lengths!r}")
    longest = int(lens.max()) if lens.numel() else 0
    T = longest if T_max is None else int(T_max)
    if T < longest:
        raise ValueError(f"padded_sequence_mask: T_max={T} is shorter than the longest sequence "
                         f"({longest})")
    return torch.arange(T, device=lens.device)[:, None] < lens[None, :]


def time_first_collate(batch: Sequence[Any],
                       dtype: torch.dtype | None = torch.float32) -> tuple[torch.Tensor, Any]:
    """Stack equal-length samples time-first.

    Args:
        batch: B samples, each ``frames [T, ...]`` or ``(frames, label, ...)``.
        dtype: cast of the frames (``None`` keeps the common dtype).

    Returns:
        ``(frames [T, B, ...], labels)``; raises if the samples' T differ (use :func:`pad_collate`).
    """
    frames, labels = _split(batch, "time_first_collate")
    lengths = [int(f.shape[0]) for f in frames]
    if len(set(lengths)) > 1:
        raise ValueError(f"time_first_collate: samples have different lengths T = {lengths}; use "
                         f"pad_collate for variable-length samples (e.g. to_frames_by_duration)")
    out_dtype = _common_dtype(frames, dtype)
    return torch.stack([f.to(out_dtype) for f in frames], dim=1), labels


def pad_collate(batch: Sequence[Any], dtype: torch.dtype | None = torch.float32,
                pad_value: float = 0) -> tuple[torch.Tensor, torch.Tensor, Any]:
    """Pad variable-length samples to the longest and stack time-first, with a validity mask.

    Args:
        batch: B samples, each ``frames [T_b, ...]`` or ``(frames, label, ...)``.
        dtype: cast of the frames (``None`` keeps the common dtype).
        pad_value: value of the padded steps.

    Returns:
        ``(frames [T_max, B, ...], mask [T_max, B] bool, labels)``, ``mask[t, b] = t < T_b`` and
        ``frames[:T_b, b]`` equal to sample b.
    """
    frames, labels = _split(batch, "pad_collate")
    lengths = [int(f.shape[0]) for f in frames]
    T_max = max(lengths)
    out_dtype = _common_dtype(frames, dtype)
    out = torch.full((T_max, len(frames), *frames[0].shape[1:]), pad_value, dtype=out_dtype,
                     device=frames[0].device)
    for b, f in enumerate(frames):
        out[: lengths[b], b] = f.to(out_dtype)
    return out, padded_sequence_mask(lengths, T_max), labels


@dataclass(frozen=True)
class TimeFirstCollate:
    """:func:`time_first_collate` with fixed options, for ``DataLoader(collate_fn=...)``."""

    dtype: torch.dtype | None = torch.float32

    def __call__(self, batch: Sequence[Any]) -> tuple[torch.Tensor, Any]:
        return time_first_collate(batch, self.dtype)


@dataclass(frozen=True)
class PadCollate:
    """:func:`pad_collate` with fixed options, for ``DataLoader(collate_fn=...)``."""

    dtype: torch.dtype | None = torch.float32
    pad_value: float = 0

    def __call__(self, batch: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor, Any]:
        return pad_collate(batch, self.dtype, self.pad_value)


def batch_loader(dataset: Dataset, kind: str, **loader_kwargs: Any) -> DataLoader:
    """A ``DataLoader`` over a named dataset's split: event frames (``kind="frames"``) are collated time-first
    (:func:`time_first_collate`, float32), static images (``"static"``) as ``[B, C, H, W]``.

    ``loader_kwargs`` go to ``DataLoader`` (``batch_size``, ``batch_sampler``, ``num_workers``, ...)."""
    if kind not in ("frames", "static"):
        raise ValueError(f"batch_loader: kind must be 'frames' or 'static', got {kind!r}")
    collate = TimeFirstCollate() if kind == "frames" else None
    return DataLoader(dataset, collate_fn=collate, **loader_kwargs)


def to_time_first(x: torch.Tensor, kind: str, T: int, encoding: str,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """A batch from :func:`batch_loader` as the model wants it, ``[T, B, ...]`` float.

    Args:
        x: event frames ``[T, B, 2, H, W]`` (``kind="frames"``, already time-first: returned as they are)
            or static images ``[B, C, H, W]`` in ``[0, 1]`` (``kind="static"``: encoded over ``T`` steps).
        encoding: ``"direct"`` (the image at every step), ``"rate"`` (Bernoulli spikes, drawn from
            ``generator``) or ``"latency"`` (one spike per pixel, earlier for brighter).
    """
    if kind == "frames":
        return x
    if encoding == "direct":
        return encode.direct(x, T)
    if encoding == "rate":
        return encode.rate(x, T, generator=generator)
    if encoding == "latency":
        return encode.latency(x, T)
    raise ValueError(f"to_time_first: encoding must be 'direct', 'rate' or 'latency', got {encoding!r}")

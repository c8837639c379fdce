"""Plots: spike rasters and per-layer bars, written as PNG files (matplotlib, the ``[viz]`` extra)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core import atomic_write

__all__ = ["raster_png", "bars_png"]


def _plt():  # type: ignore[no-untyped-def]
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover
        raise ImportError("plots need matplotlib: pip install 'spikeforge[viz]'") from e
    return plt


def raster_png(spikes: Mapping[str, torch.Tensor], path: str | Path, max_neurons: int = 200,
               title: str = "spike raster") -> Path:
    """One panel per layer: neuron index against time step for one sample.

    Args:
        spikes: ``{layer name: spikes [T, ...]}`` (one sample; extra dims are flattened into neurons).
        max_neurons: at most this many neurons per layer, evenly spaced, are drawn.
    """
    plt = _plt()
    layers = list(spikes.items())
    fig, axes = plt.subplots(len(layers), 1, figsize=(7, 1.6 * len(layers) + 0.6), squeeze=False, sharex=True)
    for ax, (name, s) in zip(axes[:, 0], layers):
        s2 = s.detach().float().reshape(s.shape[0], -1).cpu().numpy()
        keep = np.linspace(0, s2.shape[1] - 1, min(max_neurons, s2.shape[1])).astype(int)
        t, n = np.nonzero(s2[:, keep] > 0)
        ax.scatter(t, n, s=2, marker="|", color="black")
        ax.set_ylabel(f"{name}\n({s2.shape[1]} n.)", fontsize=7)
        ax.set_ylim(-1, len(keep))
    axes[-1, 0].set_xlabel("time step")
    fig.suptitle(title, fontsize=9)
    return _save(plt, fig, path)


def bars_png(values: Mapping[str, float], path: str | Path, ylabel: str, title: str = "") -> Path:
    """A bar per layer (firing rate, energy …)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(values) + 2), 3))
    ax.bar(range(len(values)), list(values.values()), color="#4c72b0")
    ax.set_xticks(range(len(values)), list(values.keys()), rotation=45, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(plt, fig, path)


def _save(plt: Any, fig: Any, path: str | Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    try:     # the temp file's name ends in .tmp: the format comes from the target's suffix
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png"))
    finally:
        plt.close(fig)
    return path

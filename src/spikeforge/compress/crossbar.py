"""Crossbar tiling and crossbar-aware pruning (Liang et al., "Crossbar-aware neural network pruning",
IEEE Access 2018, arXiv 1807.10816).

A neuromorphic core holds a crossbar of ``R`` input rows × ``C`` output columns. A layer's weight,
unfolded to ``[C_in·k·k, C_out]`` (one row per input line, one column per output neuron), is laid on a
grid of such crossbars after **compaction**: rows and columns with no nonzero weight are dropped (the
remaining ones keep their order, a permutation the next layer follows by reading its inputs in the same
order; no reordering to cluster nonzeros into blocks is attempted), and the crossbars needed are the
grid's tiles that hold at least one nonzero weight. A 300×300 layer needs 2×2 = 4 crossbars of 256×256;
with 44 rows and 44 columns empty it fits in one.

Crossbar-aware pruning removes whole rows or columns of the compacted matrix, greedily, choosing at each
step the cut that frees a row or column of tiles for the least weight (L2 norm) removed, and prunes
between epochs so that the rest of training fine-tunes around the cuts (``CrossbarPrune``, ``--prune
crossbar:R=..,C=..@FRACTION``). Pruning an output column also masks that neuron's bias (for the rest of
training too), so a pruned
neuron receives nothing. The pruned weights are masked by a ``torch.nn.utils.parametrize``
parametrisation (``W·mask``), so checkpoints, ``--resume`` and ``torch.fx`` see an ordinary layer.
This module is the one tiling: the integer core simulator lays layers out with ``tile``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .base import COMPRESSORS, CompressionError, Compressor, applied

__all__ = ["Tiling", "tile", "unfold_weight", "crossbar_layers", "crossbar_counts", "dense_crossbars",
           "prune_crossbars",
           "CrossbarMask", "CrossbarPrune", "plain_weight_reason"]

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def unfold_weight(layer: nn.Module) -> Tensor:
    """A synaptic layer's weight as ``[C_in·k·k, C_out]`` (rows: input lines; columns: output neurons)."""
    w = cast(Tensor, layer.weight).detach()
    if isinstance(layer, nn.Linear):
        return w.t()
    if isinstance(layer, _LAYERS):
        return w.reshape(w.shape[0], -1).t()
    raise TypeError(f"cannot unfold the weight of {type(layer).__name__} (Linear or Conv expected)")


@dataclass(frozen=True)
class Tiling:
    """A matrix laid on ``R×C`` crossbars after compaction.

    Attributes:
        rows: indices of the kept (nonzero) rows, in order.
        cols: indices of the kept (nonzero) columns, in order.
        R: crossbar rows.
        C: crossbar columns.
        occupied: ``[ceil(rows/R), ceil(cols/C)]`` booleans: which tiles hold a nonzero weight.
    """

    rows: Tensor
    cols: Tensor
    R: int
    C: int
    occupied: Tensor

    @property
    def crossbars(self) -> int:
        """Crossbars needed: the tiles that hold at least one nonzero weight."""
        return int(self.occupied.sum())

    def tile_of(self, i: int, j: int) -> tuple[Tensor, Tensor]:
        """The original row and column indices laid on tile ``(i, j)``."""
        return self.rows[i * self.R:(i + 1) * self.R], self.cols[j * self.C:(j + 1) * self.C]


def tile(matrix: Tensor, R: int, C: int) -> Tiling:
    """Compact ``matrix`` ``[rows, cols]`` (drop all-zero rows and columns) and tile it on ``R×C`` crossbars."""
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in (R, C)):
        raise CompressionError(f"crossbar size must be integers R, C >= 1, got R={R!r}, C={C!r}")
    if matrix.dim() != 2:
        raise CompressionError(f"tile expects a 2-D [rows, cols] matrix, got shape {tuple(matrix.shape)}")
    nz = matrix != 0
    rows = torch.nonzero(nz.any(1)).flatten()
    cols = torch.nonzero(nz.any(0)).flatten()
    gr, gc = math.ceil(len(rows) / R), math.ceil(len(cols) / C)
    occ = torch.zeros(gr, gc, dtype=torch.bool)
    if gr and gc:
        sub = nz[rows][:, cols]
        pad = torch.zeros(gr * R, gc * C, dtype=torch.bool)
        pad[:sub.shape[0], :sub.shape[1]] = sub
        occ = pad.view(gr, R, gc, C).any(3).any(1)
    return Tiling(rows, cols, R, C, occ)


def crossbar_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The synaptic layers of ``model`` (Linear, Conv) by qualified name, in module order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, _LAYERS)}


def plain_weight_reason(model: nn.Module, needs: str) -> str | None:
    """Why ``model``'s synaptic weights cannot take a new weight parametrisation (none to take; one already
    parametrised, named with the compressions applied), else ``None``. ``needs`` ends the message: what the
    caller wants the plain weight for."""
    layers = crossbar_layers(model)
    if not layers:
        return "the model has no Linear or Conv layer"
    taken = [n for n, m in layers.items() if parametrize.is_parametrized(m, "weight")]
    if taken:
        by = ", ".join(f"--{k} {v}" for k, v in applied(model).items()) or "another parametrisation"
        return (f"the weight of layer {taken[0] or type(model).__name__!r} is already reparametrised (by {by}); "
                f"{needs}")
    return None


def crossbar_counts(model: nn.Module, R: int, C: int, skip: tuple[str, ...] = ()) -> dict[str, int]:
    """Crossbars needed per synaptic layer (the weight as the layer uses it: masks and other
    parametrisations applied), leaving out the layers named in ``skip``."""
    return {n: tile(unfold_weight(m), R, C).crossbars for n, m in crossbar_layers(model).items() if n not in skip}


class CrossbarMask(nn.Module):
    """Parametrisation ``W ↦ W·mask`` (the mask a buffer, saved with the model)."""

    mask: Tensor

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", torch.ones_like(weight, dtype=torch.bool))

    def forward(self, weight: Tensor) -> Tensor:
        return weight * self.mask.to(weight.dtype)


def _mask(layer: nn.Module, name: str = "weight") -> CrossbarMask:
    """The layer's ``CrossbarMask`` on ``name`` (``weight`` or ``bias``), registered on first use."""
    if parametrize.is_parametrized(layer, name):
        for p in getattr(layer.parametrizations, name):     # type: ignore[union-attr]
            if isinstance(p, CrossbarMask):
                return p
    m = CrossbarMask(cast(Tensor, getattr(layer, name)))
    parametrize.register_parametrization(layer, name, m)
    return m


def _cut(layer: nn.Module, R: int, C: int) -> tuple[float, str, Tensor] | None:
    """The cheapest cut that frees one row or column of tiles: (norm removed per crossbar freed, axis,
    original indices to remove), or ``None`` when the layer is a single crossbar."""
    m = unfold_weight(layer)
    t = tile(m, R, C)
    gr, gc = t.occupied.shape
    best: tuple[float, str, Tensor] | None = None
    for axis, kept, size, grid, other in (("row", t.rows, R, gr, gc), ("col", t.cols, C, gc, gr)):
        if grid <= 1:
            continue
        n = len(kept) - size * (grid - 1)            # remove this many to need one grid line fewer
        norms = (m[kept] if axis == "row" else m[:, kept].t()).norm(dim=1)
        order = torch.argsort(norms, stable=True)[:n]
        cost = float(norms[order].sum()) / max(other, 1)
        if best is None or cost < best[0]:
            best = (cost, axis, kept[order])
    return best


def dense_crossbars(layer: nn.Module, R: int, C: int) -> int:
    """Crossbars of the layer's full ``[C_in·k·k, C_out]`` layout, every weight nonzero."""
    rows, cols = unfold_weight(layer).shape
    return math.ceil(rows / R) * math.ceil(cols / C)


def prune_crossbars(model: nn.Module, R: int, C: int, fraction: float, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Greedily remove rows and columns until the layers not in ``skip`` need at most ``(1 − fraction)`` of
    the crossbars of their dense layout (so calling it again with a larger fraction continues, and with the
    same fraction does nothing). Returns ``{"before": {...}, "after": {...}}`` crossbars per layer."""
    if not 0 <= fraction < 1:
        raise CompressionError(f"crossbar pruning: the fraction of crossbars to remove must be in [0, 1), "
                               f"got {fraction}")
    layers = {n: m for n, m in crossbar_layers(model).items() if n not in skip}
    before = crossbar_counts(model, R, C, skip)
    goal = math.ceil(sum(dense_crossbars(m, R, C) for m in layers.values()) * (1 - fraction))
    total = sum(before.values())
    while total > goal:
        cuts = [(c, n) for n, m in layers.items() if (c := _cut(m, R, C)) is not None]
        if not cuts:
            break
        (_, axis, idx), name = min(cuts, key=lambda x: x[0][0])
        layer = layers[name]
        mask = _mask(layer)
        with torch.no_grad():
            flat = mask.mask.view(mask.mask.shape[0], -1)         # [C_out, C_in·k·k]
            if axis == "row":
                flat[:, idx] = False
            else:
                flat[idx] = False
                if getattr(layer, "bias", None) is not None:
                    _mask(layer, "bias").mask[idx] = False
        total = sum(crossbar_counts(model, R, C, skip).values())
    return {"before": before, "after": crossbar_counts(model, R, C, skip)}


class CrossbarPrune(Compressor):
    """``--prune crossbar:R=256,C=256@0.5``: remove half the crossbars, a share at the end of each of the
    first ``ramp`` of the epochs, fine-tuning in between (see the module docstring).

    Args:
        R: crossbar rows (input lines).
        C: crossbar columns (output neurons).
        target: fraction of the crossbars to remove, in [0, 1).
        ramp: fraction of the epochs over which the pruning is spread (the rest fine-tunes).
        first: also prune the first synaptic layer (it multiplies the model input, often off-chip).
    """

    name = "crossbar"
    flag = "prune"

    def __init__(self, R: int = 256, C: int = 256, target: float = 0.5, ramp: float = 0.5,
                 first: bool = False) -> None:
        for k, v in (("R", R), ("C", C)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"crossbar size {k} must be an integer >= 1, got {v!r}")
        if not isinstance(target, (int, float)) or not 0 <= target < 1:
            raise ValueError(f"target (the fraction of crossbars to remove) must be in [0, 1), got {target!r}")
        if not 0 < ramp <= 1:
            raise ValueError(f"ramp must be in (0, 1], got {ramp!r}")
        self.R, self.C, self.target, self.ramp, self.first = R, C, float(target), float(ramp), bool(first)
        self.skip: tuple[str, ...] = ()

    def spec(self) -> str:
        return f"crossbar:R={self.R},C={self.C},ramp={self.ramp},first={str(self.first).lower()}@{self.target}"

    def apply(self, model: nn.Module) -> nn.Module:
        layers = list(crossbar_layers(model))
        if not layers:
            raise CompressionError("--prune crossbar: the model has no Linear or Conv layer to lay on crossbars")
        self.skip = () if self.first else (layers[0],)
        for n, m in crossbar_layers(model).items():
            if n not in self.skip:
                _mask(m)
                if getattr(m, "bias", None) is not None:
                    _mask(m, "bias")
        self.model = model
        return self.mark(model)

    def callbacks(self) -> list[Any]:
        from ..training import Callback

        outer = self

        class _Prune(Callback):
            def on_epoch_end(self, trainer: Any, metrics: dict[str, Any]) -> None:
                epochs = max(int(trainer.epochs), 1)
                stop = max(1, round(outer.ramp * epochs))
                done = min(int(metrics["epoch"]), stop)
                prune_crossbars(trainer.model, outer.R, outer.C, outer.target * done / stop, outer.skip)

        return [_Prune()]

    def describe(self, model: nn.Module) -> dict[str, Any]:
        counts = crossbar_counts(model, self.R, self.C, self.skip)
        return {"crossbar": f"{self.R}x{self.C}", "crossbars": counts, "crossbars_total": sum(counts.values())}


COMPRESSORS.register("crossbar", CrossbarPrune, flag="prune",
                     summary="crossbar-aware pruning: whole rows/columns of R×C crossbar tiles, greedy, "
                             "fine-tuned between cuts (Liang et al. 2018)")

"""Callbacks: what sees every step without being the engine. Logs, progress, firing rates.

A callback overrides any of

* ``on_fit_start(trainer)``;
* ``on_batch_start(trainer, batch)``: before the forward; ``batch = (x_seq [T, B, ...], y [B])``;
* ``on_after_backward(trainer)``: the gradients are final — unscaled (AMP) and all-reduced (DDP) — and the
  optimiser has not stepped (gradient masks, rewiring, gradient statistics);
* ``on_step_end(trainer, info)``: ``info`` carries the step, the epoch, the learning rate, the loss, the
  batch size and the model;
* ``on_epoch_end(trainer, metrics)`` and ``on_fit_end(trainer)``.

Threshold schedules tied to the learning rate, pruning and rewiring, early stopping plug in here.
"""

from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..analysis.record import LayerRecord, SpikeRecorder
from ..core import atomic_write

__all__ = ["Callback", "StepInfo", "CSVLogger", "TensorBoardLogger", "ProgressBar", "FiringRates"]


@dataclass
class StepInfo:
    """What ``Callback.on_step_end`` sees after each optimiser step: the global step, epoch, learning rate,
    the batch's loss and accuracy, its size, the model, the step's seconds and the method's own numbers
    (``StepOutput.extra``, e.g. a rate penalty; their epoch means go to ``metrics.csv`` as ``train_<name>``)."""
    step: int
    epoch: int
    lr: float
    loss: float
    accuracy: float
    batch_size: int
    model: nn.Module
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)


class Callback:
    """Base class of the training hooks; override any subset. ``trainer`` is the running ``Trainer``.

    Order per batch: ``on_batch_start`` (before the forward), ``on_after_backward`` (gradients unscaled and
    all-reduced, before the optimiser steps), ``on_step_end``; then ``on_epoch_end`` with the epoch's
    metrics (``loss``, ``accuracy``, ``val_accuracy`` … as in ``metrics.csv``); ``on_fit_start`` and
    ``on_fit_end`` around the whole run.
    """

    def on_fit_start(self, trainer: Any) -> None: ...
    def on_batch_start(self, trainer: Any, batch: tuple[Any, Any]) -> None: ...
    def on_after_backward(self, trainer: Any) -> None: ...
    def on_step_end(self, trainer: Any, info: StepInfo) -> None: ...
    def on_epoch_end(self, trainer: Any, metrics: dict[str, Any]) -> None: ...
    def on_fit_end(self, trainer: Any) -> None: ...


class FiringRates(SpikeRecorder):
    """Summaries of every spiking layer's output while enabled (``spikeforge.analysis``'s recorder), with the
    mean over layers for the progress bar and a ``reset`` between epochs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)

    def mean(self) -> float:
        r = self.rates()
        return sum(r.values()) / len(r) if r else float("nan")

    def reset(self) -> None:
        self.records = {n: LayerRecord(n) for n in self.modules}


class CSVLogger(Callback):
    """One row per epoch in ``run_dir/metrics.csv``; on resume, rows after the checkpoint are dropped."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []

    def restore(self, n_rows: int) -> None:
        if not self.path.is_file():
            return
        with open(self.path, newline="") as f:
            self.rows = list(csv.DictReader(f))[:n_rows]
        self._write()

    def on_epoch_end(self, trainer: Any, metrics: dict[str, Any]) -> None:
        self.rows.append({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in metrics.items()})
        self._write()

    def _write(self) -> None:
        if not self.rows:
            return
        buf = io.StringIO()
        fields: dict[str, None] = {}
        for r in self.rows:       # epochs without evaluation have fewer columns
            fields.update(dict.fromkeys(r))
        w = csv.DictWriter(buf, fieldnames=list(fields), restval="")
        w.writeheader()
        w.writerows(self.rows)
        atomic_write(self.path, buf.getvalue())


class TensorBoardLogger(Callback):
    """Scalars per step (loss, lr) and per epoch (every metric) as TensorBoard event files in ``run_dir/tb``."""

    def __init__(self, log_dir: str | Path, every: int = 10) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:  # pragma: no cover
            raise ImportError("TensorBoard logs need tensorboard: pip install 'spikeforge[train]'") from e
        self.writer = SummaryWriter(str(log_dir))
        self.every = every

    def on_step_end(self, trainer: Any, info: StepInfo) -> None:
        if info.step % self.every == 0:
            self.writer.add_scalar("train/loss_step", info.loss, info.step)
            self.writer.add_scalar("train/lr", info.lr, info.step)
            for k, v in info.extra.items():
                self.writer.add_scalar(f"train/{k}", v, info.step)

    def on_epoch_end(self, trainer: Any, metrics: dict[str, Any]) -> None:
        for k, v in metrics.items():
            if isinstance(v, (int, float)) and k not in ("epoch", "step"):
                self.writer.add_scalar(f"epoch/{k}", v, metrics["epoch"])
        self.writer.flush()

    def on_fit_end(self, trainer: Any) -> None:
        self.writer.close()


class ProgressBar(Callback):
    """A tqdm bar per epoch with loss, accuracy, samples/s and the mean firing rate."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar: Any = None
        self.rates: FiringRates | None = None
        self._t0 = time.perf_counter()
        self._samples = 0

    def on_fit_start(self, trainer: Any) -> None:
        self.rates = FiringRates(trainer.model)

    def start_epoch(self, epoch: int, total: int, done: int) -> None:
        if not self.enabled:
            return
        from tqdm.auto import tqdm
        self.bar = tqdm(total=total, initial=done, desc=f"epoch {epoch + 1}", leave=False, dynamic_ncols=True)
        self._t0, self._samples = time.perf_counter(), 0
        if self.rates is not None:
            self.rates.reset()
            self.rates.__enter__()

    def on_step_end(self, trainer: Any, info: StepInfo) -> None:
        if self.bar is None:
            return
        self._samples += info.batch_size
        sps = self._samples / max(time.perf_counter() - self._t0, 1e-9)
        fr = self.rates.mean() if self.rates is not None else float("nan")
        self.bar.set_postfix(loss=f"{info.loss:.3f}", acc=f"{info.accuracy:.3f}", sps=f"{sps:.0f}", fr=f"{fr:.3f}",
                             refresh=False)
        self.bar.update(1)

    def end_epoch(self) -> None:
        if self.rates is not None:
            self.rates.__exit__()
        if self.bar is not None:
            self.bar.close()
            self.bar = None

"""The train workflow: from a ``TrainConfig`` to a finished run folder (what ``spikeforge train`` calls).

Everything is validated before the run folder is created, so a bad config writes nothing. The folder
holds ``config.json``/``config.yaml``, ``checkpoints/``, ``metrics.csv``, ``tb/`` (TensorBoard) and, when
the run ends, ``summary.json`` (accuracies, wall time, method, the files written) for scripts.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..core import atomic_write
from ..data import DataBundle, time_first_collate, to_time_first
from ..training import (
    FiringRates,
    FitResult,
    TensorBoardLogger,
    Trainer,
    constant,
    cosine_warmup,
    evaluate,
    get_loss,
    load_checkpoint,
    optimizer_factory,
)
from .build import data_from_config, model_from_config, validate
from .config import ConfigError, TrainConfig

__all__ = ["train", "layer_firing_rates", "sample_spikes", "threads"]


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[None]:
    """Run with ``torch.set_num_threads(n)`` (when ``n`` is given) and put the previous count back."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _run_dir(cfg: TrainConfig) -> Path:
    if cfg.run_dir:
        return Path(cfg.run_dir)
    return Path("runs") / f"{cfg.dataset}-{cfg.model}-seed{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def _init_distributed() -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def train(cfg: TrainConfig, resume: str | Path | None = None, callbacks: list[Any] | None = None,
          loss: Any = None, optimizer: Any = None, batch_transform: Any = None
          ) -> tuple[FitResult, nn.Module, DataBundle]:
    """Run a whole training; ``resume`` is a run folder to continue. Returns the result, model and data.

    ``cfg.threads`` sets torch's thread count for the run; the previous count is restored on return."""
    if resume is not None:
        rd = Path(resume)
        ck = rd / "checkpoints" / "last.safetensors"
        if not ck.is_file():
            raise ConfigError(f"resume: {rd} has no checkpoints/last.safetensors to continue from")
        saved = load_checkpoint(ck)["meta"]["config"]
        cfg = TrainConfig(**{k: v for k, v in saved.items() if k != "run_dir"}, run_dir=str(rd))
    validate(cfg)
    with threads(cfg.threads):
        return _train(cfg, resume, callbacks, loss, optimizer, batch_transform)


def _train(cfg: TrainConfig, resume: str | Path | None, callbacks: list[Any] | None, loss: Any, optimizer: Any,
           batch_transform: Any) -> tuple[FitResult, nn.Module, DataBundle]:
    t_start = time.perf_counter()
    _init_distributed()
    rank = dist.get_rank() if dist.is_initialized() else 0
    run_dir = _run_dir(cfg)
    if resume is None and run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"run_dir: {run_dir} already holds a run; pass --resume {run_dir} to continue it, "
                          "or choose another --run-dir")
    torch.manual_seed(cfg.seed)
    data = data_from_config(cfg)
    model = model_from_config(cfg, data)
    cfg.run_dir = str(run_dir)
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_config(run_dir, cfg)
    steps_per_epoch = -(-len(data.train) // cfg.batch_size)  # type: ignore[arg-type]
    total = cfg.max_steps or cfg.epochs * steps_per_epoch
    sched = (cosine_warmup(cfg.lr, total, int(cfg.warmup_epochs * steps_per_epoch)) if cfg.schedule == "cosine"
             else constant(cfg.lr))
    cbs: list[Any] = list(callbacks or [])
    if rank == 0:
        with contextlib.suppress(ImportError):
            cbs.append(TensorBoardLogger(run_dir / "tb"))
    trainer = Trainer(model, data, T=cfg.T, encoding=cfg.encoding, loss=loss or get_loss(cfg.loss),
                      optimizer=optimizer or optimizer_factory(cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay),
                      lr_schedule=sched, epochs=cfg.epochs, batch_size=cfg.batch_size, callbacks=cbs,
                      batch_transform=batch_transform, run_dir=run_dir, ckpt_every=cfg.ckpt_every,
                      grad_clip=cfg.grad_clip, amp=cfg.amp, skip_nonfinite=cfg.skip_nonfinite, seed=cfg.seed,
                      max_steps=cfg.max_steps, num_workers=cfg.num_workers, progress=cfg.progress,
                      config=cfg.to_dict(), eval_every=cfg.eval_every, method=cfg.method)
    if resume is not None:
        trainer.resume()
    result = trainer.fit()
    if rank == 0:
        _write_summary(run_dir, cfg, result, time.perf_counter() - t_start)
    return result, model, data


def _write_config(run_dir: Path, cfg: TrainConfig) -> None:
    atomic_write(run_dir / "config.json", cfg.dumps())
    try:
        import yaml
    except ImportError:  # pragma: no cover
        return
    atomic_write(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=True))


def _write_summary(run_dir: Path, cfg: TrainConfig, result: FitResult, seconds: float) -> None:
    """``summary.json``: the numbers a script wants from a finished run, without parsing the CSV."""
    last = result.history[-1] if result.history else {}
    files = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file() and "tb" not in p.parts)
    doc = {"test_accuracy": last.get("test_accuracy"), "best_val_accuracy":
           result.best_val if result.best_val != float("-inf") else None,
           "val_accuracy": last.get("val_accuracy"), "epochs": len(result.history), "steps": last.get("step"),
           "skipped_steps": result.skipped_steps, "wall_seconds": round(seconds, 3), "method": cfg.method,
           "model": cfg.model, "dataset": cfg.dataset, "T": cfg.T, "run_dir": str(run_dir),
           "files": [*files, "summary.json"]}
    atomic_write(run_dir / "summary.json", json.dumps(doc, indent=2))


def layer_firing_rates(model: nn.Module, data: DataBundle, cfg: TrainConfig, n: int = 256) -> dict[str, float]:
    """Mean spikes per neuron per step of every spiking layer on the first ``n`` test samples."""
    from torch.utils.data import Subset
    sub = Subset(data.test, list(range(min(n, len(data.test)))))  # type: ignore[arg-type]
    with FiringRates(model) as fr:
        evaluate(model, sub, data.kind, cfg.T, cfg.encoding)
    return fr.rates()


def sample_spikes(model: nn.Module, data: DataBundle, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """The spike trains of every spiking layer for the first test sample (for a raster plot)."""
    from ..analysis import record
    x, y = time_first_collate([data.test[0]]) if data.kind == "frames" else (data.test[0][0].unsqueeze(0), None)
    was = model.training
    model.eval()
    try:
        with torch.no_grad(), record(model, full=True) as rec:
            model(to_time_first(x, data.kind, cfg.T, cfg.encoding, torch.Generator().manual_seed(0)))
    finally:
        model.train(was)
    return {name: rec.spikes(name)[:, 0] for name in rec.rates()}

"""The train workflow: from a ``TrainConfig`` to a finished run folder (what ``spikeforge train`` calls).

Everything is validated before the run folder is created — the config, the folder itself, and one sample
through the model — so a bad input writes nothing. The run holds its folder's lock while it works
(``rundir``). The folder holds ``config.json``/``config.yaml``, ``checkpoints/``, ``metrics.csv``, ``tb/``
(TensorBoard) and, when the run ends, ``summary.json`` (accuracies, skipped steps, wall time, method, the
files written, and ``failed`` with the reason if the run stopped on a divergence) for scripts.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..core import FolderLock, atomic_write, check_free, eval_mode, keep_freed_memory
from ..data import DataBundle
from ..training import (
    METHODS,
    Augment,
    FiringRates,
    FitResult,
    RunFailed,
    TensorBoardLogger,
    Trainer,
    TrainStep,
    constant,
    cosine_warmup,
    evaluate,
    find_checkpoint,
    get_loss,
    optimizer_factory,
)
from .build import (
    check_input,
    compressors_of,
    data_from_config,
    first_input,
    method_from_config,
    model_from_config,
    validate,
)
from .config import ConfigError, TrainConfig
from .rundir import apply_changes, check_target, clear_run, default_run_dir, holds_run, saved_config

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


def _init_distributed() -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def train(cfg: TrainConfig | None = None, resume: str | Path | None = None, *, changes: dict[str, Any] | None = None,
          overwrite: bool = False, callbacks: list[Any] | None = None, loss: Any = None, optimizer: Any = None,
          batch_transform: Any = None) -> tuple[FitResult, nn.Module, DataBundle]:
    """Run a whole training. Returns the result (``result.config``: the run's effective config), model, data.

    Args:
        cfg: the run's config (not needed with ``resume``).
        resume: a run folder to continue with its saved config, from its newest valid checkpoint (or from
            the start, if it was stopped before writing one).
        changes: with ``resume``, config fields to change; only ``rundir.SAFE_ON_RESUME`` may differ from
            the saved values, any other difference raises ``ConfigError``.
        overwrite: start over in ``cfg.run_dir`` even if it holds a run (the run's own files are removed
            first; nothing else in the folder is touched).

    ``cfg.threads`` sets torch's thread count for the run; the previous count is restored on return.
    Raises ``ConfigError`` (and other ``UserError``s) before anything is written, ``RunFailed`` when the run
    stops on a non-finite or diverging loss or skips too many steps (``summary.json`` says so).
    """
    if resume is not None:
        rd = Path(resume)
        if not rd.is_dir() or not holds_run(rd):
            raise ConfigError(f"resume: {rd} holds no run (no config.json or checkpoints/ in it)")
        cfg = apply_changes(saved_config(rd), changes or {}, rd)
    elif cfg is None:
        raise ConfigError("train: give a config, or resume= a run folder")
    notes = [] if resume is not None else _method_settings(validate(cfg))
    validate(cfg)
    keep_freed_memory()        # before the run folder is made: a wrong SPIKEFORGE_MALLOC is a UserError
    with threads(cfg.threads):
        return _train(cfg, resume is not None, overwrite, callbacks, loss, optimizer, batch_transform, notes)


NEURON_FIELDS = ("neuron", "tau", "v_threshold", "surrogate", "alpha", "detach_reset", "memory")


def _method_settings(cfg: TrainConfig) -> list[str]:
    """Apply the run settings the learning method fixes (the ANN twins train at ``T = 1`` on direct input);
    returns the notes to print once the run starts, where they change what the config asked for."""
    factory = METHODS[cfg.method]
    notes = []
    if getattr(factory, "replaces_neurons", False):
        given = [f"--{k.replace('_', '-')}" for k in NEURON_FIELDS if getattr(cfg, k) != getattr(TrainConfig, k)]
        if given:
            notes.append(f"method {cfg.method} puts its own neurons in the model and ignores {', '.join(given)} "
                         "(its settings are --method-arg KEY=VALUE: `spikeforge list methods`)")
    fixed = {k: v for k, v in getattr(factory, "config", {}).items() if getattr(cfg, k) != v}
    if fixed:
        notes.append(f"method {cfg.method} trains with " + ", ".join(f"{k}={v}" for k, v in fixed.items())
                     + " (set by the method)")
        for k, v in fixed.items():
            setattr(cfg, k, v)
    return notes


def _train(cfg: TrainConfig, resume: bool, overwrite: bool, callbacks: list[Any] | None, loss: Any, optimizer: Any,
           batch_transform: Any, notes: list[str]) -> tuple[FitResult, nn.Module, DataBundle]:
    t_start = time.perf_counter()
    _init_distributed()
    rank = dist.get_rank() if dist.is_initialized() else 0
    run_dir = Path(cfg.run_dir) if cfg.run_dir else default_run_dir(cfg)
    check_target(run_dir)
    if rank == 0 and not resume and not overwrite and holds_run(run_dir):
        raise _holds_run(run_dir)
    torch.manual_seed(cfg.seed)
    data = data_from_config(cfg)
    method = method_from_config(cfg)
    model = model_from_config(cfg, data, method)
    check_input(model, data, cfg)                # a wrong shape fails here, before anything is written
    batch_transform = _augment(cfg, method, loss, batch_transform, data.img_size)
    if cfg.channels_last and not any(p.dim() == 4 for p in model.parameters()):
        notes.append(f"--channels-last: model {cfg.model} has no 4-d (convolution) weights; it runs as without it")
    for note in notes if rank == 0 else []:
        print(f"spikeforge: {note}", file=sys.stderr)
    cfg.run_dir = str(run_dir)
    lock: FolderLock | None = None
    try:
        checkpoint = None
        if rank == 0:
            try:
                run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(f"run_dir: cannot create {run_dir} ({e.strerror})") from None
            lock = FolderLock(run_dir, "run folder")
            if resume:
                checkpoint, unreadable = find_checkpoint(run_dir / "checkpoints")
                if unreadable:
                    print(f"spikeforge: warning: {'; '.join(unreadable)}", file=sys.stderr)
                if checkpoint is None:   # stopped before its first checkpoint: start over from its config
                    clear_run(run_dir)
                    print(f"spikeforge: {run_dir} has no checkpoint yet; starting the run over from its config",
                          file=sys.stderr)
            elif overwrite:
                clear_run(run_dir)
            elif holds_run(run_dir):     # a run finished here between the first check and the lock
                raise _holds_run(run_dir)
            _write_config(run_dir, cfg)
        trainer = _trainer(cfg, model, data, run_dir, rank, callbacks, loss, optimizer, batch_transform, method)
        if checkpoint is not None:
            trainer.resume(checkpoint)
        try:
            result = trainer.fit()
        except RunFailed as e:
            if rank == 0:
                _write_summary(run_dir, cfg, trainer.result(), time.perf_counter() - t_start, failed=str(e))
            raise
        result.config = cfg.to_dict()
        if rank == 0:
            _write_summary(run_dir, cfg, result, time.perf_counter() - t_start)
        return result, model, data
    finally:
        if lock is not None:
            lock.release()


def _holds_run(run_dir: Path) -> ConfigError:
    """The error for a folder that holds a run: ``LockHeld`` naming the process if one still works there."""
    check_free(run_dir, "run folder")
    return ConfigError(f"run_dir: {run_dir} already holds a run; pass --resume {run_dir} to continue it, "
                       "--overwrite to start it over, or choose another --run-dir")


def _trainer(cfg: TrainConfig, model: nn.Module, data: DataBundle, run_dir: Path, rank: int,
             callbacks: list[Any] | None, loss: Any, optimizer: Any, batch_transform: Any,
             method: TrainStep) -> Trainer:
    steps_per_epoch = -(-len(data.train) // cfg.batch_size)  # type: ignore[arg-type]
    total = cfg.max_steps or cfg.epochs * steps_per_epoch
    sched = (cosine_warmup(cfg.lr, total, int(cfg.warmup_epochs * steps_per_epoch)) if cfg.schedule == "cosine"
             else constant(cfg.lr))
    cbs: list[Any] = [cb for comp in compressors_of(model) for cb in comp.callbacks()] + list(callbacks or [])
    if rank == 0:
        with contextlib.suppress(ImportError):
            cbs.append(TensorBoardLogger(run_dir / "tb"))
    return Trainer(model, data, T=cfg.T, encoding=cfg.encoding, loss=loss or get_loss(cfg.loss),
                   optimizer=optimizer or optimizer_factory(cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay),
                   lr_schedule=sched, epochs=cfg.epochs, batch_size=cfg.batch_size, callbacks=cbs,
                   batch_transform=batch_transform, run_dir=run_dir, ckpt_every=cfg.ckpt_every,
                   grad_clip=cfg.grad_clip, amp=cfg.amp, skip_nonfinite=cfg.skip_nonfinite, seed=cfg.seed,
                   max_steps=cfg.max_steps, num_workers=cfg.num_workers, progress=cfg.progress,
                   config=cfg.to_dict(), eval_every=cfg.eval_every, method=method, max_skipped=cfg.max_skipped)


def _augment(cfg: TrainConfig, method: Any, loss: Any, batch_transform: Any, img_size: int | None) -> Any:
    """``batch_transform``, or ``--augment``'s ``Augment`` when the method, the loss and the data can take it."""
    if cfg.augment is None:
        return batch_transform
    if batch_transform is not None:
        raise ConfigError("augment: a batch_transform is passed too; give one or the other")
    if not getattr(method, "takes_batch_transform", False):
        raise ConfigError(f"augment: method {cfg.method} does not augment its batches (bptt and ttfs do)")
    if getattr(loss or get_loss(cfg.loss), "batch_transform", None) is not None:
        raise ConfigError(f"augment: loss {cfg.loss} makes its own augmented views")
    augment = Augment.parse(cfg.augment)
    if img_size and augment.shift and augment.shift >= img_size:
        raise ConfigError(f"augment: shift:{augment.shift} can move a {img_size}x{img_size} image of "
                          f"{cfg.dataset} wholly out of view; expected N < {img_size}")
    return augment


def _write_config(run_dir: Path, cfg: TrainConfig) -> None:
    atomic_write(run_dir / "config.json", cfg.dumps())
    try:
        import yaml
    except ImportError:  # pragma: no cover
        return
    atomic_write(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=True))


def _write_summary(run_dir: Path, cfg: TrainConfig, result: FitResult, seconds: float,
                   failed: str | None = None) -> None:
    """``summary.json``: the numbers a script wants from a run, without parsing the CSV."""
    last = result.history[-1] if result.history else {}
    files = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*")
                   if p.is_file() and "tb" not in p.parts and not p.name.startswith("."))
    doc = {"status": "failed" if failed else "finished", "failed": failed,
           "test_accuracy": last.get("test_accuracy"),
           "best_val_accuracy": result.best_val if result.best_val != float("-inf") else None,
           "val_accuracy": last.get("val_accuracy"), "epochs": len(result.history), "steps": result.steps,
           "skipped_steps": result.skipped_steps, "wall_seconds": round(seconds, 3), "method": cfg.method,
           "model": cfg.model, "dataset": cfg.dataset, "T": cfg.T, "run_dir": str(run_dir),
           "files": sorted({*files, "summary.json"})}
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
    with eval_mode(model), torch.no_grad(), record(model, full=True) as rec:
        model(first_input(data, cfg))
    return {name: rec.spikes(name)[:, 0] for name in rec.rates()}

"""From a ``TrainConfig`` to a finished run: what ``spikeforge train`` and ``spikeforge eval`` call.

Everything is validated before the run folder is created, so a bad config writes nothing.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..config import ConfigError, TrainConfig
from .callbacks import FiringRates, TensorBoardLogger
from .checkpoint import load_checkpoint
from .datasets import DATASETS, DataBundle, build_dataset, to_time_first
from .engine import FitResult, Trainer, evaluate
from .losses import get_loss
from .optim import constant, cosine_warmup, optimizer_factory

__all__ = ["validate", "make_neuron", "make_model", "train", "evaluate_checkpoint", "layer_firing_rates"]

EVENT_DATASETS = {"nmnist", "dvs128-gesture", "cifar10-dvs", "ncaltech101"}


def _registries() -> dict[str, list[str]]:
    from ..models import list_models
    from ..neurons import list_neurons
    from ..surrogate import SURROGATES
    scan = [n for n in list_neurons() if "psn" not in n]
    return {"models": list_models(), "datasets": sorted(DATASETS), "neurons": scan, "surrogates": sorted(SURROGATES)}


def validate(cfg: TrainConfig) -> TrainConfig:
    """Every check that can fail before any file is written."""
    cfg.validate(**_registries())
    if cfg.dataset in EVENT_DATASETS:
        if not cfg.data_root:
            raise ConfigError(f"data_root: dataset {cfg.dataset!r} reads the original release from --data-root")
        if not Path(cfg.data_root).is_dir():
            raise ConfigError(f"data_root: {cfg.data_root} is not a folder")
    return cfg


def make_neuron(cfg: TrainConfig) -> nn.Module:
    """The neuron template every layer copies, from the config's neuron name and options."""
    from ..neurons import NEURONS
    from ..surrogate import SURROGATES, get_surrogate
    cls = NEURONS[cfg.neuron]
    accepted = inspect.signature(cls).parameters
    has_alpha = "alpha" in {f.name for f in dataclasses.fields(SURROGATES[cfg.surrogate])}
    sg = get_surrogate(cfg.surrogate, alpha=cfg.alpha) if has_alpha else get_surrogate(cfg.surrogate)
    kw: dict[str, Any] = {"surrogate": sg, "detach_reset": cfg.detach_reset, "v_threshold": cfg.v_threshold}
    if "tau" in accepted:
        kw["tau"] = cfg.tau
    elif "init_tau" in accepted:
        kw["init_tau"] = cfg.tau
    return cls(**kw)


def make_model(cfg: TrainConfig, data: DataBundle) -> nn.Module:
    from ..models import create_model
    base = dict(in_channels=data.in_channels, num_classes=data.num_classes, img_size=data.img_size, T=cfg.T,
                neuron=make_neuron(cfg))
    try:
        return create_model(cfg.model, **{**base, **cfg.model_args})
    except TypeError as e:
        if cfg.model_args and "argument" in str(e):
            raise ConfigError(f"model_args: {cfg.model_args} not accepted by model {cfg.model!r} ({e})") from None
        raise


def _run_dir(cfg: TrainConfig) -> Path:
    if cfg.run_dir:
        return Path(cfg.run_dir)
    return Path("runs") / f"{cfg.dataset}-{cfg.model}-seed{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def _init_distributed() -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)


def train(cfg: TrainConfig, resume: str | Path | None = None, callbacks: list[Any] | None = None,
          loss: Any = None, optimizer: Any = None, batch_transform: Any = None) -> tuple[FitResult, nn.Module,
                                                                                          DataBundle]:
    """Run a whole training; ``resume`` is a run folder to continue. Returns the result, model and data."""
    if resume is not None:
        rd = Path(resume)
        ck = rd / "checkpoints" / "last.safetensors"
        if not ck.is_file():
            raise ConfigError(f"resume: {rd} has no checkpoints/last.safetensors to continue from")
        saved = load_checkpoint(ck)["meta"]["config"]
        cfg = TrainConfig(**{k: v for k, v in saved.items() if k != "run_dir"}, run_dir=str(rd))
    validate(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    _init_distributed()
    rank = dist.get_rank() if dist.is_initialized() else 0
    run_dir = _run_dir(cfg)
    if resume is None and run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"run_dir: {run_dir} already holds a run; pass --resume {run_dir} to continue it, "
                          "or choose another --run-dir")
    torch.manual_seed(cfg.seed)
    data = build_dataset(cfg)
    model = make_model(cfg, data)
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
        try:
            cbs.append(TensorBoardLogger(run_dir / "tb"))
        except ImportError:
            pass
    trainer = Trainer(model, data, T=cfg.T, encoding=cfg.encoding, loss=loss or get_loss(cfg.loss),
                      optimizer=optimizer or optimizer_factory(cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay),
                      lr_schedule=sched, epochs=cfg.epochs, batch_size=cfg.batch_size, callbacks=cbs,
                      batch_transform=batch_transform, run_dir=run_dir, ckpt_every=cfg.ckpt_every,
                      grad_clip=cfg.grad_clip, amp=cfg.amp, skip_nonfinite=cfg.skip_nonfinite, seed=cfg.seed,
                      max_steps=cfg.max_steps, num_workers=cfg.num_workers, progress=cfg.progress,
                      config=cfg.to_dict(), eval_every=cfg.eval_every)
    if resume is not None:
        trainer.resume()
    return trainer.fit(), model, data


def _write_config(run_dir: Path, cfg: TrainConfig) -> None:
    tmp = run_dir / "config.json.tmp"
    tmp.write_text(cfg.dumps())
    os.replace(tmp, run_dir / "config.json")
    try:
        import yaml
        (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=True))
    except ImportError:  # pragma: no cover
        pass


def layer_firing_rates(model: nn.Module, data: DataBundle, cfg: TrainConfig, n: int = 256) -> dict[str, float]:
    """Mean spikes per neuron per step of every spiking layer on the first ``n`` test samples."""
    from torch.utils.data import Subset
    sub = Subset(data.test, list(range(min(n, len(data.test)))))  # type: ignore[arg-type]
    with FiringRates(model) as fr:
        evaluate(model, sub, data.kind, cfg.T, cfg.encoding)
    return fr.rates()


def evaluate_checkpoint(path: str | Path, dataset: str | None = None, data_root: str | None = None) -> dict[str, Any]:
    """Rebuild the model a checkpoint was trained with and evaluate it on the test split."""
    ck = load_checkpoint(path)
    saved = dict(ck["meta"]["config"])
    if dataset is not None:
        saved["dataset"] = dataset
    if data_root is not None:
        saved["data_root"] = data_root
    cfg = validate(TrainConfig(**saved))
    cfg.progress = False
    data = build_dataset(cfg)
    model = make_model(cfg, data)
    model.load_state_dict(ck["model"])
    res = evaluate(model, data.test, data.kind, cfg.T, cfg.encoding, loss=get_loss(cfg.loss))
    return {"dataset": cfg.dataset, "model": cfg.model, "test_loss": res["loss"], "test_accuracy": res["accuracy"],
            "test_samples": len(data.test), "step": ck["meta"]["step"]}  # type: ignore[arg-type]


def sample_spikes(model: nn.Module, data: DataBundle, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    """The spike trains of every spiking layer for the first test sample (for a raster plot)."""
    from ..analysis import record
    x, _ = data.test[0]
    was = model.training
    model.eval()
    try:
        with torch.no_grad(), record(model, full=True) as rec:
            model(to_time_first(x.unsqueeze(0), data.kind, cfg.T, cfg.encoding, torch.Generator().manual_seed(0)))
    finally:
        model.train(was)
    return {name: rec.spikes(name)[:, 0] for name in rec.rates()}


def summary_json(result: FitResult) -> str:
    last = result.history[-1] if result.history else {}
    return json.dumps({"last_epoch": last, "best_val_accuracy": result.best_val, "skipped_steps": result.skipped_steps})

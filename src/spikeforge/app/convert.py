"""The convert workflow: the run of an ANN twin (``--method ann`` or ``qcfs``) → one SNN checkpoint per ``T``
and ``conversion.json`` (what ``spikeforge convert`` calls).

::

    RUN/convert-max/            (or convert-p99.99, convert-clip; --out chooses another folder)
      T4.safetensors  T8.safetensors  ...    checkpoints that eval, report and rebuild take
      conversion.json                        ANN accuracy, SNN accuracy and per-layer error at each T

Thresholds come from at most ``batches`` training batches (shuffled with the run's seed), never from test
data. Every check runs before anything is written; an existing output is refused without ``overwrite``;
every file is written atomically.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..core import FolderLock, UnknownNameError, UserError, atomic_write, first_line
from ..data import batch_loader, to_time_first
from ..learning import NORMS, convert, layer_errors, threshold_statistics
from ..training import evaluate, get_loss, load_checkpoint, save_checkpoint
from .build import rebuild
from .config import TrainConfig
from .rundir import RUN_FILES, holds_run, run_checkpoint

__all__ = ["convert_run", "TWIN_METHODS", "default_convert_dir"]

TWIN_METHODS = ("ann", "qcfs")
"""The methods whose runs ``convert_run`` takes."""

DEFAULT_PERCENTILE = 99.99


def _checkpoint(path: Path) -> Path:
    """A run folder's best checkpoint (else its last), or ``path`` itself."""
    path = run_checkpoint(path, " (give a run folder of `spikeforge train --method ann` or `--method qcfs`)")
    if not path.exists():
        raise UserError(f"{path}: no such run folder or checkpoint")
    return path


def _tag(norm: str, percentile: float | None, shift: float, default_shift: float) -> str:
    tag = f"p{percentile:g}" if norm == "percentile" else norm
    return tag if shift == default_shift else f"{tag}-shift{shift:g}"


def default_convert_dir(checkpoint: str | Path, tag: str) -> Path:
    """``<run>/convert-<tag>`` for a run's checkpoint, ``<name>-convert-<tag>`` beside any other file."""
    ck = Path(checkpoint)
    if ck.parent.name == "checkpoints":
        return ck.parent.parent / f"convert-{tag}"
    return ck.with_name(f"{ck.stem}-convert-{tag}")


def _steps(T: Sequence[int] | int) -> list[int]:
    values = [T] if isinstance(T, int) else list(T)
    if not values:
        raise UserError("--T: give at least one number of time steps")
    for t in values:
        if isinstance(t, bool) or not isinstance(t, int) or t < 1:
            raise UserError(f"--T: every number of time steps must be an integer >= 1, got {t!r}")
    return sorted(set(values))


def _options(method: str, method_args: dict[str, Any], norm: str | None, percentile: float | None,
             shift: float | None) -> tuple[str, float | None, float, float]:
    """The checked ``(norm, percentile, shift, the method's shift)``."""
    default_shift = float(method_args.get("shift", 0.5)) if method == "qcfs" else 0.0
    norm = norm if norm is not None else ("clip" if method == "qcfs" else "max")
    if norm not in NORMS:
        raise UnknownNameError("--norm", norm, list(NORMS))
    if norm == "clip" and method != "qcfs":
        raise UserError("--norm clip reads the trained clip of a --method qcfs run; this run was trained with "
                        f"--method {method} (use --norm max or --norm percentile)")
    if percentile is not None and norm != "percentile":
        raise UserError(f"--percentile applies to --norm percentile, not --norm {norm}")
    if norm == "percentile":
        percentile = DEFAULT_PERCENTILE if percentile is None else float(percentile)
        if not 0 < percentile <= 100:
            raise UserError(f"--percentile: must be in (0, 100], got {percentile:g}")
    shift = default_shift if shift is None else float(shift)
    if not 0 <= shift < 1:
        raise UserError(f"--shift: the initial membrane as a fraction of the threshold must be in [0, 1), "
                        f"got {shift:g}")
    return norm, percentile, shift, default_shift


def convert_run(run: str | Path, T: Sequence[int] | int = (4, 8, 16, 32, 64), norm: str | None = None,
                percentile: float | None = None, *, shift: float | None = None, batches: int = 10,
                out_dir: str | Path | None = None, overwrite: bool = False, data_root: str | None = None,
                val: bool = False) -> dict[str, Any]:
    """Convert an ANN twin's run to SNN checkpoints, one per ``T``, and write ``conversion.json``.

    Args:
        run: a run folder of ``--method ann`` or ``qcfs`` (its best checkpoint, else its last), or a checkpoint.
        T: the time steps to convert for (each ``>= 1``).
        norm: ``"max"``, ``"percentile"`` or ``"clip"`` (the trained QCFS clip); default ``clip`` for a
            ``qcfs`` run, ``max`` for an ``ann`` run.
        percentile: with ``norm="percentile"``, in ``(0, 100]`` (default 99.99).
        shift: the IF neurons' initial membrane as a fraction of ``θ`` (``α = 1 − shift``), in ``[0, 1)``;
            default the QCFS run's ``φ`` (0.5), 0 for an ``ann`` run.
        batches: training batches the thresholds are measured on (the run's batch size, seeded shuffle).
        out_dir: the output folder (default ``<run>/convert-<norm>``).
        overwrite: replace an existing conversion in ``out_dir``.
        data_root: the dataset's folder, if it moved since training.
        val: also measure the accuracy on the validation split (``val_accuracy``; for choosing settings
            such as the percentile without looking at the test split).

    Returns:
        What ``conversion.json`` holds: the ANN's test accuracy, the SNN's at each ``T``, the thresholds, the
        per-layer error ``mean |r·θ − clamp(z, 0, θ)|/θ`` on a training batch at each ``T``, and the files.

    Raises ``UserError`` (nothing written) for bad settings, a run not trained with ``ann``/``qcfs``, event
    data, or an existing output without ``overwrite``.
    """
    steps = _steps(T)
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise UserError(f"--batches: must be an integer >= 1, got {batches!r}")
    source = _checkpoint(Path(run))
    ck = load_checkpoint(source)
    meta: dict[str, Any] = ck["meta"] if isinstance(ck["meta"], dict) else {}
    saved: dict[str, Any] = meta["config"] if isinstance(meta.get("config"), dict) else {}
    if "conversion" in ck["extra"]:
        raise UserError(f"{source} is already a converted SNN; convert the run of its ANN twin "
                        f"({ck['extra']['conversion'].get('source', 'its source')})")
    method = saved.get("method", "bptt")
    if method not in TWIN_METHODS:
        raise UserError(f"{source} was trained with --method {method}; spikeforge convert takes a run trained with "
                        "--method ann or --method qcfs (its ANN twin)")
    norm, percentile, shift, default_shift = _options(method, dict(saved.get("method_args") or {}), norm,
                                                      percentile, shift)
    out = Path(out_dir) if out_dir is not None else default_convert_dir(source, _tag(norm, percentile, shift,
                                                                                      default_shift))
    if out.exists() and not out.is_dir():
        raise UserError(f"--out: {out} is a file, not a folder")
    if holds_run(out) or (out.name in RUN_FILES and holds_run(out.parent)):
        raise UserError(f"--out: {out} belongs to a training run (its checkpoints would mix with the run's); "
                        "give a folder of its own")
    targets = {t: out / f"T{t}.safetensors" for t in steps}
    report = out / "conversion.json"
    existing = [p.name for p in (report, *targets.values()) if p.exists()]
    if existing and not overwrite:
        raise UserError(f"{out} already holds a conversion ({', '.join(existing)}); pass --overwrite to replace it "
                        "or --out another folder")
    rb = rebuild(source, progress=False, data_root=data_root)
    cfg, data, ann = rb.cfg, rb.data, rb.model
    if data.kind != "static":
        raise UserError(f"dataset {cfg.dataset} gives event frames: conversion needs static inputs, which the SNN "
                        "sees at every step as the ANN saw them once")
    loss = get_loss(cfg.loss)
    ann_acc = evaluate(ann, data.test, data.kind, cfg.T, cfg.encoding, loss=loss)["accuracy"]
    ann_val = None
    if val:
        if data.val is None:
            raise UserError(f"val: the run has no validation split (it was trained with val_fraction="
                            f"{cfg.val_fraction})")
        ann_val = evaluate(ann, data.val, data.kind, cfg.T, cfg.encoding, loss=loss)["accuracy"]
    loader = batch_loader(data.train, data.kind, batch_size=cfg.batch_size, shuffle=True,
                          generator=torch.Generator().manual_seed(cfg.seed))
    dev = next(ann.parameters()).device
    xs = []
    for i, (x, _) in enumerate(loader):
        if i >= (1 if norm == "clip" else batches):
            break
        xs.append(x.to(dev))
    try:
        thresholds = threshold_statistics(ann, [to_time_first(x, data.kind, cfg.T, "direct") for x in xs], norm,
                                          percentile if percentile is not None else 100.0)
    except ValueError as e:
        raise UserError(f"{source}: {first_line(e)}") from None
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = FolderLock(out, "conversion folder")
    except OSError as e:
        raise UserError(f"--out: cannot write in {out} ({e.strerror})") from None
    try:
        return _write(source, ck, cfg, data, ann, thresholds, steps, targets, report, overwrite,
                      dict(norm=norm, percentile=percentile, shift=shift, batches=0 if norm == "clip" else len(xs),
                           ann_acc=ann_acc, ann_val=ann_val, val=val, x=xs[0]))
    finally:
        lock.release()


def _write(source: Path, ck: dict[str, Any], cfg: TrainConfig, data: Any, ann: torch.nn.Module,
           thresholds: dict[str, float], steps: list[int], targets: dict[int, Path], report: Path, overwrite: bool,
           s: dict[str, Any]) -> dict[str, Any]:
    alpha = 1.0 - s["shift"]
    loss = get_loss(cfg.loss)
    acc: dict[str, float] = {}
    val: dict[str, float] = {}
    errors: dict[str, dict[str, float]] = {}
    tied: dict[str, float] = {}
    for t in steps:
        snn = convert(copy.deepcopy(ann), thresholds, alpha=alpha, T=t)
        tied = {n: float(m.v_threshold) for n, m in snn.named_modules() if n in thresholds}
        acc[str(t)] = evaluate(snn, data.test, data.kind, t, "direct", loss=loss)["accuracy"]
        if s["val"]:
            val[str(t)] = evaluate(snn, data.val, data.kind, t, "direct", loss=loss)["accuracy"]
        errors[str(t)] = layer_errors(snn, ann, s["x"], t)
        cfg_t = TrainConfig(**{**cfg.to_dict(), "T": t, "encoding": "direct", "run_dir": None})
        record = {"source": str(source), "norm": s["norm"], "percentile": s["percentile"], "shift": s["shift"],
                  "alpha": alpha, "batches": s["batches"], "T": t}
        try:
            save_checkpoint(targets[t], model={k: v.detach().clone() for k, v in snn.state_dict().items()},
                            meta={"step": ck["meta"].get("step", 0), "config": cfg_t.to_dict(), "method": "conversion",
                                  "source": str(source)},
                            extra={"conversion": record}, overwrite=overwrite)
        except FileExistsError:
            raise UserError(f"{targets[t]} appeared while converting; pass --overwrite to replace it") from None
    result = {"source": str(source), "dataset": cfg.dataset, "model": cfg.model, "method": cfg.method,
              "norm": s["norm"], "percentile": s["percentile"], "shift": s["shift"], "batches": s["batches"],
              "ann_test_accuracy": s["ann_acc"], "T": steps, "test_accuracy": acc, "thresholds": tied,
              "layer_error": errors, "checkpoints": {str(t): str(p) for t, p in targets.items()},
              "file": str(report)}
    if s["val"]:
        result.update(ann_val_accuracy=s["ann_val"], val_accuracy=val)
    try:
        atomic_write(report, json.dumps(result, indent=2), overwrite=overwrite)
    except FileExistsError:
        raise UserError(f"{report} appeared while converting; pass --overwrite to replace it") from None
    return result

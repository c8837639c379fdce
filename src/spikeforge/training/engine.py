"""The training loop: ``fit(model, data, loss=..., optimizer=..., callbacks=..., method=...)``.

The loop owns the order of batches, the optimiser step, checkpoints and hooks; how one batch becomes
gradients is the train-step strategy's (``steps.py``: BPTT by default, ``--method`` picks another).

What it guarantees:

* **Exact resume.** The order of samples is a pure function of ``(seed, epoch)`` and the position in
  the epoch is a counter, so resuming skips straight to the next batch; every RNG stream (torch, numpy,
  Python, the encoder's generator — dropout draws from torch's) is saved in the checkpoint. A run
  killed at any step and resumed ends with weights ``torch.equal`` to an uninterrupted run's.
* **Nothing lost.** Checkpoints every ``ckpt_every`` steps and at every epoch end (``last``) plus the
  best on the *validation* split (``best``), written atomically (``checkpoint.py``).
* **Divergence is never success.** A non-finite loss or gradient stops the run naming the step and the
  first layer that produced it (or, with ``skip_nonfinite``, the step is skipped and counted); a loss that
  stays far above its starting value (``diverge_factor`` for ``diverge_steps`` steps) stops it too; a run
  that skipped more than ``max_skipped`` of its steps ends with ``TooManySkipped``. All are ``RunFailed``.
* **Data parallel** through PyTorch's DDP when launched by ``torchrun`` (each rank takes its slice of
  every global batch; only rank 0 writes).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import Dataset

from ..core import eval_mode, first_line, keep_freed_memory
from ..data import DataBundle, batch_loader, to_time_first
from .callbacks import Callback, CSVLogger, ProgressBar, StepInfo
from .checkpoint import load_checkpoint, save_checkpoint
from .losses import accuracy, count_correct, get_loss, mean_ce, prepare_loss
from .steps import NonFiniteLoss, StepContext, TrainStep, autocast, get_method, prepared_by

__all__ = ["fit", "Trainer", "FitResult", "RunFailed", "NonFiniteError", "DivergedError", "TooManySkipped", "evaluate"]

LossFn = Callable[[Tensor, Tensor, dict[str, Any]], Tensor]


class RunFailed(Exception):
    """The run could not train to the end; the message (one line) says at which step and why."""


class NonFiniteError(RunFailed, FloatingPointError):
    """A loss or gradient became NaN/Inf; the message names the step and the first layer."""


class DivergedError(RunFailed):
    """The loss stayed far above its starting value; the message names the step and the first layer whose
    output exploded."""


class TooManySkipped(RunFailed):
    """More than the allowed share of steps were skipped as non-finite."""


@dataclass
class FitResult:
    """What ``fit`` returns: per-epoch ``history`` (the rows of ``metrics.csv``), the best validation
    accuracy, the number of skipped non-finite steps, the run folder (``None`` without one), the steps taken
    and the resolved config."""
    history: list[dict[str, Any]]
    best_val: float
    skipped_steps: int
    run_dir: Path | None
    steps: int = 0
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainState:
    step: int = 0
    epoch: int = 0
    pos: int = 0                       # batches done in the current epoch
    best_val: float = -math.inf
    skipped: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    # the running epoch averages, so that a run resumed mid-epoch reports the same epoch metrics
    ep_losses: list[float] = field(default_factory=list)
    ep_accs: list[float] = field(default_factory=list)
    ep_seen: int = 0
    loss0: float | None = None         # the loss of the first step (before any update), for divergence
    high: int = 0                      # consecutive steps with the loss above diverge_factor × loss0
    ep_extra: dict[str, list[float]] = field(default_factory=dict)   # a method's per-step numbers (StepOutput.extra)


def _rank() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled order of epoch ``epoch``: a pure function of (n, seed, epoch)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


class _Batches:
    """A batch sampler over fixed index lists (so a DataLoader with workers still follows our order)."""

    def __init__(self, batches: list[list[int]]) -> None:
        self.batches = batches

    def __iter__(self) -> Any:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def evaluate(model: nn.Module, dataset: Dataset, kind: str, T: int, encoding: str, batch_size: int = 256,
             loss: LossFn = mean_ce, seed: int = 12345, num_workers: int = 0,
             amp: str = "off") -> dict[str, float]:
    """Loss and top-1 accuracy of the time-averaged output on ``dataset`` (eval mode, under
    ``torch.inference_mode``: no autograd bookkeeping, and the neurons keep nothing for backward)."""
    gen = torch.Generator().manual_seed(seed)
    total, correct, loss_sum = 0, 0, 0.0
    loader = batch_loader(dataset, kind, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                          generator=torch.Generator().manual_seed(seed))
    dev = next(model.parameters()).device
    with eval_mode(model), torch.inference_mode(), autocast(amp, dev.type):
        for x, y in loader:
            x_seq = to_time_first(x.to(dev), kind, T, encoding, gen if dev.type == "cpu" else None)
            out = model(x_seq)
            y = y.to(dev)
            loss_sum += float(loss(out, y, {})) * len(y)
            correct += count_correct(out, y)
            total += len(y)
    return {"loss": loss_sum / max(total, 1), "accuracy": correct / max(total, 1)}


def _first_bad_layer(model: nn.Module, x_seq: Tensor, limit: float = math.inf) -> str:
    """Re-run the forward with hooks: the first module (in call order) whose output is not finite or exceeds
    ``limit`` in magnitude, with the value; else the module with the largest output magnitude."""
    found: list[str] = []
    largest: list[tuple[float, str]] = []
    handles = []
    for name, m in model.named_modules():
        def hook(mod: nn.Module, inp: Any, out: Any, name: str = name) -> None:
            t = out[0] if isinstance(out, tuple) else out
            if found or not isinstance(t, Tensor) or not t.is_floating_point() or not t.numel():
                return
            label = name or type(mod).__name__
            if not bool(torch.isfinite(t).all()):
                found.append(f"first non-finite output in layer '{label}'")
                return
            big = float(t.detach().abs().max())
            if big > limit:
                found.append(f"first output beyond {limit:.0e} in layer '{label}' (|x| up to {big:.3g})")
            largest.append((big, label))
        handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x_seq)
    finally:
        for h in handles:
            h.remove()
    if found:
        return found[0]
    if math.isinf(limit):
        return "no non-finite output in the forward pass"
    big, label = max(largest) if largest else (0.0, "none")
    return f"largest output in layer '{label}' (|x| up to {big:.3g})"


class Trainer:
    """Holds the model, the optimiser, the data and the state; ``fit`` drives it.

    ``loss`` and ``method`` take a function or object, or a registered name (``LOSSES``, ``METHODS``).
    A method that changes the model (``TrainStep.prepare``) does so here, in place, before the optimiser
    sees its parameters, unless the model was prepared for it already.
    """

    def __init__(self, model: nn.Module, data: DataBundle, *, T: int, encoding: str = "rate",
                 loss: LossFn | str = mean_ce,
                 optimizer: Callable[[Iterable[Any]], torch.optim.Optimizer] | None = None,
                 lr_schedule: Callable[[int], float] | None = None, epochs: int = 1, batch_size: int = 64,
                 callbacks: Sequence[Callback] = (), batch_transform: Callable[..., Any] | None = None,
                 run_dir: str | Path | None = None, ckpt_every: int | None = None, grad_clip: float | None = None,
                 amp: str = "off", skip_nonfinite: bool = False, seed: int = 0, max_steps: int | None = None,
                 num_workers: int = 0, progress: bool = True, config: dict[str, Any] | None = None,
                 eval_every: int = 1, method: str | TrainStep = "bptt", max_skipped: float = 0.1,
                 diverge_factor: float | None = 50.0, diverge_steps: int = 5) -> None:
        self.rank, self.world = _rank()
        self.method = get_method(method)
        if prepared_by(model) != self.method.name:
            reason = self.method.check(model)
            if reason is not None:
                raise ValueError(f"method {self.method.name!r} cannot train this model: {reason}")
            model = self.method.prepare(model)
        self.loss = get_loss(loss)
        model = prepare_loss(self.loss, model)    # a loss's own parts (TCL's head): before DDP and the optimiser
        self.model = model
        self.ddp_model: nn.Module = model
        if self.world > 1:
            self.ddp_model = nn.parallel.DistributedDataParallel(model)
        self.data, self.T, self.encoding = data, T, encoding
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = (optimizer or (lambda ps: torch.optim.AdamW(ps, lr=1e-3)))(params)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.lr_schedule = lr_schedule
        self.epochs, self.batch_size = epochs, batch_size
        self.batch_transform = batch_transform
        if batch_transform is None:         # a loss that contrasts views (STCL) brings the transform making them
            self.batch_transform = getattr(self.loss, "batch_transform", None)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.ckpt_every, self.grad_clip, self.amp = ckpt_every, grad_clip, amp
        self.skip_nonfinite, self.seed, self.max_steps = skip_nonfinite, seed, max_steps
        self.num_workers, self.config, self.eval_every = num_workers, config or {}, eval_every
        self.max_skipped, self.diverge_factor, self.diverge_steps = max_skipped, diverge_factor, diverge_steps
        self.stop = False          # a callback may set it: the run ends after the current step
        self._extra: dict[str, float] = {}
        self.encoder_gen = torch.Generator().manual_seed(seed + 17)
        self.state = TrainState()
        self.progress = ProgressBar(progress and self.rank == 0)
        if self.run_dir is not None and self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.csv = CSVLogger(self.run_dir / "metrics.csv") if self.run_dir is not None and self.rank == 0 else None
        self.callbacks = [self.progress, *([self.csv] if self.csv else []), *callbacks]
        self.device = next(model.parameters()).device
        # AMP's loss scaling: only fp16 needs it (bf16 has float32's range); disabled it is a pass-through
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp == "fp16")

    # -- checkpoints -------------------------------------------------------------------------------------
    def ckpt_path(self, name: str) -> Path:
        assert self.run_dir is not None
        return self.run_dir / "checkpoints" / f"{name}.safetensors"

    def save(self, name: str) -> None:
        if self.run_dir is None or self.rank != 0:
            return
        s = self.state
        rng = {"torch": torch.get_rng_state(), "encoder": self.encoder_gen.get_state(),
               "numpy": _np_state(), "python": _py_state()}
        meta = {"step": s.step, "epoch": s.epoch, "pos": s.pos, "best_val": s.best_val, "skipped": s.skipped,
                "history": s.history, "ep_losses": s.ep_losses, "ep_accs": s.ep_accs, "ep_seen": s.ep_seen,
                "ep_extra": s.ep_extra, "loss0": s.loss0, "high": s.high,
                "csv_rows": len(self.csv.rows) if self.csv else 0, "config": self.config,
                "method": self.method.name, "scaler": self.scaler.state_dict()}
        save_checkpoint(self.ckpt_path(name), model=self.model.state_dict(), optimizer=self.optimizer.state_dict(),
                        rng=rng, meta=meta, extra={"method": self.method.state_dict()})

    def resume(self, path: str | Path | None = None) -> bool:
        """Continue from ``last`` (or ``path``); returns False when there is nothing to resume."""
        p = Path(path) if path is not None else self.ckpt_path("last")
        for stale in p.parent.glob(".*.tmp"):      # a write that was killed before its rename
            stale.unlink()
        if not p.is_file():
            return False
        ck = load_checkpoint(p)
        self.model.load_state_dict(ck["model"])
        if ck["optimizer"] is not None:
            self.optimizer.load_state_dict(ck["optimizer"])
        r = ck["rng"]
        torch.set_rng_state(r["torch"])
        self.encoder_gen.set_state(r["encoder"])
        np.random.set_state(_np_unstate(r["numpy"]))  # noqa: NPY002  (the legacy global stream, see _np_state)
        random.setstate(_py_unstate(r["python"]))
        m = ck["meta"]
        if m.get("method", self.method.name) != self.method.name:
            raise ValueError(f"checkpoint {p} was trained with method {m['method']!r}, not {self.method.name!r}")
        self.method.load_state_dict(ck["extra"].get("method", {}))
        if m.get("scaler"):
            self.scaler.load_state_dict(m["scaler"])
        self.state = TrainState(m["step"], m["epoch"], m["pos"], m["best_val"], m["skipped"], m["history"],
                                m["ep_losses"], m["ep_accs"], m["ep_seen"], m.get("loss0"), m.get("high", 0),
                                m.get("ep_extra", {}))
        if self.csv is not None:
            self.csv.restore(m["csv_rows"])
        return True

    # -- one step --------------------------------------------------------------------------------------
    def _batches(self, epoch: int) -> list[list[int]]:
        order = epoch_order(len(self.data.train), self.seed, epoch)  # type: ignore[arg-type]
        B = self.batch_size
        batches = [order[i:i + B] for i in range(0, len(order), B)]
        return [b[self.rank::self.world] for b in batches] if self.world > 1 else batches

    def _set_lr(self) -> float:
        if self.lr_schedule is None:
            return float(self.optimizer.param_groups[0]["lr"])
        lr = self.lr_schedule(self.state.step)
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = lr * base / self.base_lrs[0]
        return lr

    def hooks(self, name: str, *args: Any) -> None:
        """Call ``name`` on every callback (``on_batch_start``, ``on_after_backward``, ...)."""
        for cb in self.callbacks:
            getattr(cb, name)(self, *args)

    def train_step(self, x: Tensor, y: Tensor) -> tuple[float, float, bool]:
        x, y = x.to(self.device), y.to(self.device)
        x_seq = to_time_first(x, self.data.kind, self.T, self.encoding, self.encoder_gen)
        batch = (x_seq, y)
        self.hooks("on_batch_start", batch)
        ddp = self.ddp_model if self.world > 1 else None
        ctx = StepContext(self.loss, self.optimizer, self.scaler, self.hooks, ddp, self.model, self.amp,
                          self.state.step, self.batch_transform)
        self.optimizer.zero_grad(set_to_none=True)
        try:
            out = self.method(self.ddp_model, batch, ctx)
        except NonFiniteLoss as e:
            return self._nonfinite(str(e), x_seq)
        self.scaler.unscale_(self.optimizer)
        if not self.scaler.is_enabled():      # under fp16 the scaler skips overflowing steps by design
            bad = [n for n, p in self.model.named_parameters()
                   if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
            if bad:
                return self._nonfinite(f"gradient of {bad[0]} is not finite", x_seq)
        self.hooks("on_after_backward")
        if self.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        try:
            self.scaler.step(self.optimizer)
        except RuntimeError as e:             # e.g. an update that overflows float32 (--lr 1e38)
            raise RunFailed(f"step {self.state.step}: the optimiser step failed ({first_line(e)}); the learning rate "
                            f"{self.optimizer.param_groups[0]['lr']:.3g} is likely far too large") from None
        self.scaler.update()
        self._extra = dict(out.extra)
        loss = float(out.loss)
        self._watch_divergence(loss, x_seq)
        return loss, accuracy(out.outputs, y), True

    def _watch_divergence(self, loss: float, x_seq: Tensor) -> None:
        """Stop the run when the loss has stayed above ``diverge_factor`` × its starting value (the first
        step's, at least 1) for ``diverge_steps`` steps in a row."""
        s = self.state
        if self.diverge_factor is None:
            return
        if s.loss0 is None:
            s.loss0 = loss
            return
        if loss <= self.diverge_factor * max(s.loss0, 1.0):
            s.high = 0
            return
        s.high += 1
        if s.high >= self.diverge_steps:
            where = _first_bad_layer(self.model, x_seq, limit=1e6)
            raise DivergedError(f"step {s.step}: the loss ({loss:.3g}) has stayed above {self.diverge_factor:g}× its "
                                f"starting value ({s.loss0:.3g}) for {s.high} steps; {where} (lower --lr, or set "
                                "--grad-clip)")

    def _nonfinite(self, what: str, x_seq: Tensor) -> tuple[float, float, bool]:
        self.optimizer.zero_grad(set_to_none=True)
        if self.skip_nonfinite:
            self.state.skipped += 1
            return math.nan, math.nan, False
        where = _first_bad_layer(self.model, x_seq)
        raise NonFiniteError(f"step {self.state.step}: {what}; {where} "
                             "(rerun with --skip-nonfinite to skip such steps and count them)")

    # -- the loop --------------------------------------------------------------------------------------
    def fit(self) -> FitResult:
        keep_freed_memory()       # a step's freed memory serves the next step (no page faults); core.allocator
        for cb in self.callbacks:
            cb.on_fit_start(self)
        s = self.state
        while s.epoch < self.epochs and not (self.max_steps is not None and s.step >= self.max_steps):
            batches = self._batches(s.epoch)
            # the loader's own generator: creating an iterator must not draw from torch's global RNG
            loader = batch_loader(self.data.train, self.data.kind, batch_sampler=_Batches(batches[s.pos:]),
                                  num_workers=self.num_workers,
                                  generator=torch.Generator().manual_seed(self.seed + s.epoch))
            self.progress.start_epoch(s.epoch, len(batches), s.pos)
            t0 = time.perf_counter()
            for x, y in loader:
                lr = self._set_lr()
                t_step = time.perf_counter()
                loss, acc, ok = self.train_step(x, y)
                s.step += 1
                s.pos += 1
                s.ep_seen += len(y)
                extra = self._extra if ok else {}
                if ok:
                    s.ep_losses.append(loss)
                    s.ep_accs.append(acc)
                    for k, v in extra.items():
                        s.ep_extra.setdefault(k, []).append(float(v))
                info = StepInfo(s.step, s.epoch, lr, loss, acc, len(y), self.model, time.perf_counter() - t_step,
                                extra)
                for cb in self.callbacks:
                    cb.on_step_end(self, info)
                if self.ckpt_every and s.step % self.ckpt_every == 0:
                    self.save("last")
                if self.stop or (self.max_steps is not None and s.step >= self.max_steps):
                    break
            self.progress.end_epoch()
            metrics = self._epoch_metrics(s.ep_losses, s.ep_accs, s.ep_seen, time.perf_counter() - t0)
            partial = s.pos < len(batches)
            if partial:
                # stopped inside the epoch (--max-steps, or a callback's stop): the checkpoints keep the
                # position in the epoch, so --resume continues it; the partial epoch is reported, not logged
                # in the checkpoint's history (the resumed run writes the epoch's row when it ends)
                self._save_best_and_last(metrics)
            s.history.append(metrics)
            for cb in self.callbacks:
                cb.on_epoch_end(self, metrics)
            if partial:
                break
            s.epoch += 1
            s.pos, s.ep_losses, s.ep_accs, s.ep_seen, s.ep_extra = 0, [], [], 0, {}
            self._save_best_and_last(metrics)
            if self.stop or (self.max_steps is not None and s.step >= self.max_steps):
                break
        for cb in self.callbacks:
            cb.on_fit_end(self)
        if s.step and s.skipped / s.step > self.max_skipped:
            raise TooManySkipped(f"{s.skipped} of {s.step} steps were skipped as non-finite, more than the allowed "
                                 f"{self.max_skipped:.0%} (--max-skipped); the run did not train")
        return self.result()

    def _save_best_and_last(self, metrics: dict[str, Any]) -> None:
        """``best`` when the validation accuracy improved, then ``last``."""
        if "val_accuracy" in metrics and metrics["val_accuracy"] > self.state.best_val:
            self.state.best_val = metrics["val_accuracy"]
            self.save("best")
        self.save("last")

    def result(self) -> FitResult:
        """What the run has produced so far."""
        s = self.state
        return FitResult(s.history, s.best_val, s.skipped, self.run_dir, s.step, dict(self.config))

    def _epoch_metrics(self, losses: list[float], accs: list[float], seen: int, seconds: float) -> dict[str, Any]:
        s = self.state
        m: dict[str, Any] = {"epoch": s.epoch + 1, "step": s.step,
                             "lr": float(self.optimizer.param_groups[0]["lr"]),
                             "train_loss": float(np.mean(losses)) if losses else math.nan,
                             "train_accuracy": float(np.mean(accs)) if accs else math.nan}
        m.update({f"train_{k}": float(np.mean(v)) for k, v in s.ep_extra.items() if v})     # a method's numbers
        final = self.stop or s.epoch + 1 >= self.epochs or (self.max_steps is not None and s.step >= self.max_steps)
        if not final and (s.epoch + 1) % self.eval_every:
            m["skipped_steps"] = s.skipped
            m["seconds"], m["samples_per_s"] = seconds, seen * self.world / max(seconds, 1e-9)
            return m
        if self.data.val is not None:
            v = evaluate(self.model, self.data.val, self.data.kind, self.T, self.encoding, loss=self.loss,
                         amp=self.amp)
            m["val_loss"], m["val_accuracy"] = v["loss"], v["accuracy"]
        t = evaluate(self.model, self.data.test, self.data.kind, self.T, self.encoding, loss=self.loss, amp=self.amp)
        m["test_loss"], m["test_accuracy"] = t["loss"], t["accuracy"]
        m["skipped_steps"] = s.skipped
        m["seconds"], m["samples_per_s"] = seconds, seen * self.world / max(seconds, 1e-9)
        return m


def _np_state() -> list[Any]:
    # numpy's legacy global generator: user code (augmentations, samplers) may draw from it, so it is saved
    name, keys, pos, has_gauss, cached = np.random.get_state()  # type: ignore[misc]  # noqa: NPY002
    return [name, np.asarray(keys).tolist(), int(pos), int(has_gauss), float(cached)]


def _np_unstate(s: list[Any]) -> Any:
    return (s[0], np.array(s[1], dtype=np.uint32), s[2], s[3], s[4])


def _py_state() -> list[Any]:
    v, st, g = random.getstate()
    return [v, list(st), g]


def _py_unstate(s: list[Any]) -> Any:
    return (s[0], tuple(s[1]), s[2])


def fit(model: nn.Module, data: DataBundle, *, T: int, resume: bool = False, **kwargs: Any) -> FitResult:
    """Train ``model`` on ``data``; see ``Trainer`` for the keywords. ``resume`` continues ``run_dir``."""
    tr = Trainer(model, data, T=T, **kwargs)
    if resume:
        if tr.run_dir is None:
            raise ValueError("resume=True needs run_dir")
        tr.resume()
    return tr.fit()

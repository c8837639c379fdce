"""Soft-threshold pruning with learning-rate-adapted threshold schedules (Chen et al., "A Unified Framework
for Soft Threshold Pruning", ICLR 2023, arXiv 2302.13019; official code ``Yanqi-Chen/LATS``).

Every synaptic weight (Linear and Conv) is reparametrised by a latent ``θ`` the optimiser trains::

    w = S_d(θ) = sign(θ)·max(|θ| − d, 0)

with a **straight-through** gradient: the ``max(·, 0)`` passes the gradient unchanged (the official
``PseudoRelu``), so ``∂w/∂θ = 1`` wherever ``θ ≠ 0`` and a pruned weight (``|θ| ≤ d``) keeps learning
through its ``θ``. With plain SGD this is ISTA on ``L(w) + λ‖w‖₁``: a weight that stays active with the
same sign moves as ``w_{k+1} = S_{Δd}(w_k − η_k·g_k)``, with ``λ_k = Δd_k/η_k`` (``Δd_k = d_{k+1} − d_k``).
A pruned weight does not: its ``θ`` hides anywhere in ``[−d, d]`` and moves by the gradient alone, so it
comes back only once ``|θ|`` passes ``d`` (the proximal step would re-start it from 0).

The threshold after ``k`` optimiser steps is ``d_k = D·f(k)`` (``lats_schedule``), updated after each
step as in the official trainer, with ``D`` the final threshold:

* ``constant``: ``f = 1``; ``θ`` starts at ``sign(w)(|w| + D)`` as in the official code, so the first
  forward is the dense init (``shift=false`` keeps ``θ = w``: the weights below ``D`` are pruned at once);
* ``linear``: ``f(x) = x`` with ``x = k/N`` (``N``: the run's ``--epochs`` × steps per epoch);
* ``slats`` (S-LATS, the default): ``f(x) = sin(πx)/π + x``, the integral of ``1 + cos(πx)``, so the
  threshold rises in proportion to a cosine learning rate (``λ`` constant);
* ``lats`` (the per-epoch, "low-frequency" form): after batch ``b`` of ``n_b`` in epoch ``e`` of ``E``,
  ``f = base(e) + b·(1 + cos(πe/E))/(n_b(E + 1))`` with
  ``base(e) = (1 + 2e + sin(π(e − ½)/E)/sin(π/(2E)))/(2(E + 1))``; ``base(0) = 0`` and ``base(E) = 1``.

``--prune lats:D=0.05`` gives ``D``; ``--prune lats@0.9`` calibrates it at initialisation as the 0.9
quantile of ``|θ|`` over all pruned weights (the final sparsity differs: the run's ``metrics.csv`` logs
``train_lats_sparsity`` and ``spikeforge report`` prints it). ``D`` and the current ``d`` are buffers of
each layer's ``SoftThreshold``, saved with the model, so ``eval``, ``report`` and ``--resume`` rebuild them.
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .base import COMPRESSORS, CompressionError, Compressor, applied, log_epoch_value
from .crossbar import crossbar_layers, plain_weight_reason

__all__ = ["LATS_SCHEDULES", "soft_threshold", "lats_schedule", "SoftThreshold", "LATSPrune", "lats_sparsity"]

LATS_SCHEDULES = ("constant", "linear", "slats", "lats")
"""The threshold schedules of ``--prune lats:schedule=NAME`` (see the module docstring)."""


class _SoftThreshold(torch.autograd.Function):
    """``θ − clamp(θ, −d, d)`` forward (the same value as ``sign(θ)·max(|θ| − d, 0)``, with no multiply for the
    model's operation audit to see), ``sign(θ)²·grad`` backward (the official ``PseudoRelu`` composition)."""

    @staticmethod
    def forward(ctx: Any, theta: Tensor, d: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(theta)
        return theta - theta.clamp(-d, d)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (theta,) = ctx.saved_tensors
        return grad * (theta != 0), None


def soft_threshold(theta: Tensor, d: Tensor | float) -> Tensor:
    """``S_d(θ) = sign(θ)·max(|θ| − d, 0)`` with the straight-through gradient ``∂w/∂θ = sign(θ)²`` (1, and 0
    only at ``θ = 0``), as the official ``sign(θ)·PseudoRelu(|θ| − d)``; a pruned weight is ``+0.0``.

    Args:
        theta: latent weights, any shape.
        d: threshold ``>= 0``, a float or a scalar tensor (no gradient flows to it).

    Returns:
        The weights ``w``, shaped like ``theta``.
    """
    dt = torch.as_tensor(d, dtype=theta.dtype, device=theta.device)
    return cast(Tensor, _SoftThreshold.apply(theta, dt))  # type: ignore[no-untyped-call]


def lats_schedule(schedule: str, step: int, steps_per_epoch: int, epochs: int) -> float:
    """The fraction ``f`` of the final threshold ``D`` applied after ``step`` optimiser steps.

    Args:
        schedule: one of ``LATS_SCHEDULES``.
        step: optimiser steps taken (0 before the first).
        steps_per_epoch: batches per epoch ``n_b``.
        epochs: epochs of the run ``E``; the ramp ends at ``N = E·n_b`` steps (``f = 1`` from there on).

    Returns:
        ``f`` in ``[0, 1]`` (see the module docstring for the four forms).
    """
    if schedule not in LATS_SCHEDULES:
        raise ValueError(f"unknown LATS schedule {schedule!r}; choose one of {', '.join(LATS_SCHEDULES)}")
    if schedule == "constant":
        return 1.0
    nb, E = max(int(steps_per_epoch), 1), max(int(epochs), 1)
    x = min(max(step / (nb * E), 0.0), 1.0)
    if schedule == "linear":
        return x
    if schedule == "slats":
        return math.sin(math.pi * x) / math.pi + x
    if step <= 0:
        return 0.0
    e = (step - 1) // nb                     # the epoch of this step, and the batches done in it
    if e >= E:
        return 1.0
    b = step - e * nb
    base = 0.5 * (1.0 + 2 * e + math.sin(math.pi * (e - 0.5) / E) / math.sin(math.pi * 0.5 / E)) / (E + 1.0)
    return base + b * (1.0 + math.cos(math.pi * e / E)) / nb / (1.0 + E)


class SoftThreshold(nn.Module):
    """Parametrisation ``θ ↦ S_d(θ)`` of a layer's weight (``torch.nn.utils.parametrize``).

    Buffers (saved with the model): ``threshold``, the current ``d`` (a scalar), and ``final``, the final
    threshold ``D``.

    Args:
        weight: the layer's weight (for the dtype and device of the buffers).
        final: the final threshold ``D >= 0``.
        threshold: the initial ``d``.
    """

    threshold: Tensor
    final: Tensor

    def __init__(self, weight: Tensor, final: float, threshold: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("threshold", torch.tensor(float(threshold), dtype=weight.dtype, device=weight.device))
        self.register_buffer("final", torch.tensor(float(final), dtype=weight.dtype, device=weight.device))

    def forward(self, theta: Tensor) -> Tensor:
        """``S_d(θ)`` (``theta``: the latent weight, the layer's ``parametrizations.weight.original``)."""
        return soft_threshold(theta, self.threshold)


def _thresholds(model: nn.Module) -> list[tuple[nn.Module, SoftThreshold]]:
    """(layer, parametrisation) of every soft-thresholded weight in ``model``."""
    out = []
    for m in model.modules():
        if parametrize.is_parametrized(m, "weight"):
            out += [(m, p) for p in cast(Any, m).parametrizations.weight if isinstance(p, SoftThreshold)]
    return out


def lats_sparsity(model: nn.Module) -> tuple[int, int]:
    """``(zeros, total)`` over the soft-thresholded weights of ``model`` (the weights as the layers use them)."""
    zeros = total = 0
    with torch.no_grad():
        for layer, _ in _thresholds(model):
            w = cast(Tensor, layer.weight)
            zeros += int((w == 0).sum())
            total += w.numel()
    return zeros, total


class LATSPrune(Compressor):
    """``--prune lats:D=0.05`` / ``--prune lats:schedule=linear@0.9``: soft-threshold pruning of every
    Linear and Conv weight with a scheduled threshold (see the module docstring).

    Args:
        D: final threshold ``>= 0`` (give it, or ``target``).
        target: sparsity in ``[0, 1)`` to calibrate ``D`` for: the ``target`` quantile of ``|θ|`` over the
            pruned weights at initialisation.
        schedule: ``constant``, ``linear``, ``slats`` or ``lats``.
        shift: with ``constant``, start from ``θ = sign(w)(|w| + D)`` (the official code's init; the first
            forward is then dense); ``false`` starts from ``θ = w``. The ramped schedules start at ``d = 0``.
    """

    name = "lats"
    flag = "prune"

    def __init__(self, D: float | None = None, target: float | None = None, schedule: str = "slats",
                 shift: bool = True) -> None:
        if (D is None) == (target is None):
            raise ValueError("give the final threshold D (lats:D=0.05) or a target sparsity to calibrate it for "
                             "(lats@0.9)" + (", not both" if D is not None else ""))
        if D is not None and (isinstance(D, bool) or not isinstance(D, (int, float)) or not math.isfinite(D)
                              or D < 0):
            raise ValueError(f"D (the final threshold) must be a finite number >= 0, got {D!r}")
        if target is not None and (isinstance(target, bool) or not isinstance(target, (int, float))
                                   or not 0 <= target < 1):
            raise ValueError(f"the target sparsity must be in [0, 1), got {target!r}")
        if schedule not in LATS_SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(LATS_SCHEDULES)}, got {schedule!r}")
        self.D = None if D is None else float(D)
        self.target = None if target is None else float(target)
        if not isinstance(shift, bool):
            raise ValueError(f"shift must be true or false, got {shift!r}")
        if not shift and schedule != "constant":
            raise ValueError(f"shift=false applies to schedule=constant only (schedule {schedule} starts at d = 0)")
        self.schedule, self.shift = schedule, shift

    def spec(self) -> str:
        """``lats:schedule=S,D=..`` or ``lats:schedule=S@TARGET`` (the calibrated ``D`` is in ``describe``)."""
        opts = f"schedule={self.schedule}" + ("" if self.shift else ",shift=false")
        if self.target is not None:
            return f"lats:{opts}@{self.target!r}"
        return f"lats:{opts},D={self.D!r}"

    def check(self, model: nn.Module) -> str | None:
        """Why ``model`` cannot be pruned this way (no synaptic layer; weights already reparametrised)."""
        if crossbar_layers(model) and "rewire" in applied(model):
            return f"its weights are rewired by {applied(model)['rewire']!r}; LATS and rewiring do not combine"
        return plain_weight_reason(model, "LATS needs the plain weight as its latent θ")

    def calibrate(self, model: nn.Module) -> float:
        """The ``D`` for ``target``: the ``target`` quantile of ``|w|`` over every Linear and Conv weight."""
        assert self.target is not None
        with torch.no_grad():
            mags = torch.cat([cast(Tensor, m.weight).detach().abs().flatten().float()
                              for m in crossbar_layers(model).values()])
        k = round(self.target * mags.numel())
        return 0.0 if k == 0 else float(torch.kthvalue(mags, k).values)

    def apply(self, model: nn.Module) -> nn.Module:
        """Reparametrise every Linear and Conv weight ``w = S_d(θ)`` with ``θ = w`` (``constant``: ``d = D``
        and, unless ``shift=false``, ``θ = sign(w)(|w| + D)``), then record the compression on ``model``."""
        if self.flag in applied(model):
            self.mark(model)                    # raises: a second --prune of the same model
        why = self.check(model)
        if why is not None:
            raise CompressionError(f"--prune {self.spec()}: {why}")
        D = self.calibrate(model) if self.target is not None else cast(float, self.D)
        self.final = D
        for layer in crossbar_layers(model).values():
            w = cast(Tensor, layer.weight)
            const = self.schedule == "constant"
            parametrize.register_parametrization(layer, "weight", SoftThreshold(w, D, D if const else 0.0))
            if const and self.shift:
                with torch.no_grad():
                    theta = cast(Tensor, cast(Any, layer).parametrizations.weight.original)
                    theta.copy_(torch.sign(theta) * (theta.abs() + D))
        return self.mark(model)

    def callbacks(self) -> list[Any]:
        """The threshold schedule: after every optimiser step, ``d = D·lats_schedule(...)`` on every layer,
        and ``train_lats_threshold`` / ``train_lats_sparsity`` in the epoch's metrics."""
        from ..training import Callback

        schedule = self.schedule

        class _Threshold(Callback):
            def on_step_end(self, trainer: Any, info: Any) -> None:
                nb = -(-len(trainer.data.train) // trainer.batch_size)
                f = lats_schedule(schedule, int(info.step), nb, int(trainer.epochs))
                d = 0.0
                for _, p in _thresholds(trainer.model):
                    p.threshold.copy_(p.final * f)
                    d = float(p.threshold)
                zeros, total = lats_sparsity(trainer.model)
                log_epoch_value(trainer, "lats_threshold", d)
                log_epoch_value(trainer, "lats_sparsity", zeros / max(total, 1))

        return [_Threshold()]

    def describe(self, model: nn.Module) -> dict[str, Any]:
        """The schedule, ``D``, the current threshold and the sparsity of the pruned weights."""
        ps = _thresholds(model)
        zeros, total = lats_sparsity(model)
        out: dict[str, Any] = {"schedule": self.schedule}
        if ps:
            out["D"] = float(f"{float(ps[0][1].final):.6g}")
            out["threshold"] = float(f"{float(ps[0][1].threshold):.6g}")
        out.update({"sparsity": round(zeros / max(total, 1), 4), "zero_weights": zeros, "weights": total})
        return out


COMPRESSORS.register("lats", LATSPrune, flag="prune",
                     summary="soft-threshold pruning w = sign(θ)·max(|θ|−d, 0) with a learning-rate-adapted "
                             "threshold schedule (S-LATS, LATS, linear, constant; Chen et al. 2023)")

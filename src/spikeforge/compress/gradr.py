"""Gradient Rewiring (Grad R): pruning by a sign-constrained hidden parameter and a Laplace prior (Chen et al.,
"Pruning of Deep Spiking Neural Networks through Gradient Rewiring", IJCAI 2021; official code
``Yanqi-Chen/Gradient-Rewiring``, ``gradrewire.py``).

Every synapse keeps the sign ``s`` of its initial weight and a hidden strength ``θ`` (initially ``|w|``)::

    w = s·ReLU(θ)        (connected while θ > 0, pruned while θ ≤ 0)

and the gradient is **redefined** to pass through pruned synapses, ``∂L/∂θ := s·∂L/∂w`` (so a pruned
synapse whose gradient keeps pointing outward regrows). The update is Adam's, bias-corrected, plus the
gradient of a Laplace prior ``p(θ) ∝ exp(−α|θ − μ|)`` centred at ``μ = ln(2(1 − s_target))/α`` (so that
``P(θ < 0) = s_target``)::

    θ ← θ − η_t·m̂/(√v̂ + ε) − α·η_t·sign(θ − μ),    η_t = lr/(1 − β₁ᵗ)

— both terms use the official code's step size ``lr/(1 − β₁ᵗ)`` and the prior's sign is taken at ``θ``
before the step. Here the parametrisation ``SignedReLU`` computes ``w`` with that gradient, the run's own
Adam (``--optimizer adamw``, weight decay 0) does the Adam part on ``θ``, and ``GradRPrior`` adds the
prior through the optimiser's step hooks (``register_step_pre_hook`` / ``register_step_post_hook``), so a
step the optimiser skips (AMP overflow) skips the prior too.

Each epoch's ``metrics.csv`` row (and TensorBoard) gets ``train_gradr_connectivity`` (the fraction of
connected synapses), ``train_gradr_regrown`` and ``train_gradr_pruned``: synapses connected now but not
at the start of the epoch, and the reverse — the official script's per-epoch counts.
"""

from __future__ import annotations

import math
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .base import COMPRESSORS, CompressionError, Compressor, applied, log_epoch_value
from .crossbar import crossbar_layers, plain_weight_reason

__all__ = ["gradr_center", "SignedReLU", "GradRPrior", "GradRewire", "gradr_connectivity"]


def gradr_center(s: float, alpha: float) -> float:
    """The prior's centre ``μ = ln(2(1 − s))/α``: below 0 for a target sparsity ``s > 0.5``.

    Args:
        s: target sparsity in ``[0.5, 1)``.
        alpha: the prior's rate ``α > 0``.
    """
    return math.log(2.0 * (1.0 - s)) / alpha


class _SignedReLU(torch.autograd.Function):
    """``s·max(θ, 0)`` forward; ``s·grad`` backward, also where ``θ ≤ 0`` (Grad R's redefined gradient)."""

    @staticmethod
    def forward(ctx: Any, theta: Tensor, sign: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(sign)
        return theta.clamp(min=0.0).mul(sign)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (sign,) = ctx.saved_tensors
        return grad * sign, None


class SignedReLU(nn.Module):
    """Parametrisation ``θ ↦ s·ReLU(θ)`` of a layer's weight, with ``∂w/∂θ := s`` everywhere.

    Buffers (saved with the model): ``sign``, the fixed sign ``s`` of each synapse (``sign(w_init)``; a weight
    that starts at exactly 0 has ``s = 0`` and stays 0, as in the official code), and ``alive``, which
    synapses were connected at the start of the current epoch (for the regrowth counts).

    Args:
        weight: the layer's initial weight ``w``; ``right_inverse`` turns it into ``θ = s·w = |w|``.
    """

    sign: Tensor
    alive: Tensor

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.register_buffer("sign", torch.sign(weight.detach()))
        self.register_buffer("alive", weight.detach() != 0)

    def forward(self, theta: Tensor) -> Tensor:
        """``w = s·ReLU(θ)`` (``theta``: the layer's ``parametrizations.weight.original``)."""
        return cast(Tensor, _SignedReLU.apply(theta, self.sign))  # type: ignore[no-untyped-call]

    def right_inverse(self, weight: Tensor) -> Tensor:
        """``θ = s·w``: ``|w|`` for a weight of sign ``s`` (assigning ``layer.weight`` sets ``θ`` so)."""
        return weight * self.sign

    def connected(self, theta: Tensor) -> Tensor:
        """Which synapses are connected (``θ > 0`` and ``s ≠ 0``)."""
        return (theta > 0) & (self.sign != 0)


def _rewired(model: nn.Module) -> list[tuple[Tensor, SignedReLU]]:
    """(θ, parametrisation) of every rewired weight in ``model``."""
    out = []
    for m in model.modules():
        if parametrize.is_parametrized(m, "weight"):
            plist = cast(Any, m).parametrizations.weight
            out += [(cast(Tensor, plist.original), p) for p in plist if isinstance(p, SignedReLU)]
    return out


def gradr_connectivity(model: nn.Module) -> tuple[int, int]:
    """``(connected, total)`` synapses over the rewired weights of ``model``."""
    on = total = 0
    with torch.no_grad():
        for theta, p in _rewired(model):
            on += int(p.connected(theta).sum())
            total += theta.numel()
    return on, total


class GradRPrior:
    """The Laplace prior's step ``θ ← θ − α·lr/(1 − β₁ᵗ)·sign(θ_before − μ)`` on the hidden ``θ`` of every
    rewired weight, attached to an Adam or AdamW optimiser (weight decay 0) that trains them.

    Args:
        model: a model ``GradRewire`` has reparametrised.
        s: target sparsity in ``[0.5, 1)``.
        alpha: the prior's rate ``α >= 0``; ``α`` not above the optimiser's ``eps`` switches the prior off
            (as the official code does).
    """

    def __init__(self, model: nn.Module, s: float, alpha: float) -> None:
        if not 0.5 <= s < 1 or not alpha >= 0:
            raise CompressionError(f"Grad R: the target sparsity must be in [0.5, 1) and alpha >= 0, got s={s!r}, "
                                   f"alpha={alpha!r}")
        self.thetas = [t for t, _ in _rewired(model)]
        if not self.thetas:
            raise CompressionError("Grad R: the model has no rewired weight (apply GradRewire first)")
        self.s, self.alpha = s, alpha
        self._before: dict[int, tuple[Tensor, int]] = {}

    def attach(self, optimizer: torch.optim.Optimizer) -> list[Any]:
        """Check ``optimizer`` and register the prior as its step hooks; returns the hook handles.

        Raises:
            CompressionError: not Adam/AdamW, weight decay not 0, ``maximize``, or a ``θ`` it does not train.
        """
        if not isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
            raise CompressionError(f"--rewire gradr: Grad R's update is Adam's; train with --optimizer adamw "
                                   f"(the optimiser is {type(optimizer).__name__})")
        groups = {id(p): g for g in optimizer.param_groups for p in g["params"]}
        for theta in self.thetas:
            g = groups.get(id(theta))
            if g is None:
                raise CompressionError("--rewire gradr: the optimiser does not train a rewired layer's hidden θ "
                                       "(build it after applying Grad R)")
            if g.get("weight_decay", 0) != 0:
                raise CompressionError(f"--rewire gradr: Grad R's prior is its regulariser; train with "
                                       f"--weight-decay 0 (got {g['weight_decay']})")
            if g.get("maximize", False):
                raise CompressionError("--rewire gradr: the optimiser maximises; Grad R minimises the loss")
        self.groups = groups
        return [optimizer.register_step_pre_hook(self._pre), optimizer.register_step_post_hook(self._post)]

    def _step_of(self, optimizer: torch.optim.Optimizer, theta: Tensor) -> int:
        st = optimizer.state.get(theta, {})
        return int(st["step"]) if "step" in st else 0

    def _pre(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        with torch.no_grad():
            self._before = {}
            for theta in self.thetas:
                g = self.groups[id(theta)]
                if self.alpha > g["eps"]:
                    mu = gradr_center(self.s, self.alpha)
                    self._before[id(theta)] = (torch.sign(theta - mu), self._step_of(optimizer, theta))

    def _post(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        with torch.no_grad():
            for theta in self.thetas:
                if id(theta) not in self._before:
                    continue
                direction, step0 = self._before[id(theta)]
                t = self._step_of(optimizer, theta)
                if t == step0:                  # the optimiser did not update this θ (no gradient)
                    continue
                g = self.groups[id(theta)]
                step_size = g["lr"] / (1 - g["betas"][0] ** t)
                theta.add_(direction, alpha=-self.alpha * step_size)
            self._before = {}


class GradRewire(Compressor):
    """``--rewire gradr:s=0.9,alpha=1e-3`` (or ``gradr@0.9``): Grad R on every Linear and Conv weight (see
    the module docstring).

    Args:
        s: target sparsity in ``[0.5, 1)`` (``ValueError`` below 0.5, as the official optimiser).
        alpha: the prior's rate ``α >= 0`` (the official MNIST script's default ``1e-3``).
        target: the same as ``s`` (``gradr@0.9``).
    """

    name = "gradr"
    flag = "rewire"

    def __init__(self, s: float | None = None, alpha: float = 1e-3, target: float | None = None) -> None:
        if s is None and target is None:
            raise ValueError("give the target sparsity: gradr:s=0.9 (or gradr@0.9)")
        if s is not None and target is not None and s != target:
            raise ValueError(f"two target sparsities: s={s!r} and @{target!r}; give one")
        s = s if s is not None else target
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s):
            raise ValueError(f"the target sparsity s must be a number in [0.5, 1), got {s!r}")
        if s < 0.5:
            raise ValueError(f"invalid target sparsity: {s}, must be larger than or equal to 0.5 (below it the "
                             "prior's centre ln(2(1 - s))/alpha would be above 0)")
        if s >= 1:
            raise ValueError(f"the target sparsity s must be below 1 (ln(2(1 - s)) is undefined at 1), got {s}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha < 0:
            raise ValueError(f"alpha (the prior's rate) must be a finite number >= 0, got {alpha!r}")
        self.s, self.alpha = float(s), float(alpha)

    def spec(self) -> str:
        """``gradr:s=S,alpha=A``."""
        return f"gradr:s={self.s!r},alpha={self.alpha!r}"

    def check_config(self, cfg: Any) -> str | None:
        """Why a run config cannot train Grad R (an optimiser other than ``adamw``, a weight decay), so that a
        caller can refuse it before it writes anything (``callbacks()`` refuses it again at the start of ``fit``).

        Args:
            cfg: an object with ``optimizer`` and ``weight_decay`` (``spikeforge.app.TrainConfig``).
        """
        if getattr(cfg, "optimizer", "adamw") != "adamw":
            return f"Grad R's update is Adam's; train with --optimizer adamw (got {cfg.optimizer})"
        if getattr(cfg, "weight_decay", 0.0):
            return f"Grad R's prior is its regulariser; train with --weight-decay 0 (got {cfg.weight_decay})"
        return None

    def check(self, model: nn.Module) -> str | None:
        """Why ``model`` cannot be rewired (no synaptic layer; pruned or reparametrised weights)."""
        if crossbar_layers(model) and "prune" in applied(model):
            return f"it is pruned by {applied(model)['prune']!r}; Grad R prunes by itself and does not combine"
        return plain_weight_reason(model, "Grad R needs the plain weight to take its sign and strength")

    def apply(self, model: nn.Module) -> nn.Module:
        """Reparametrise every Linear and Conv weight ``w = s·ReLU(θ)``, ``s = sign(w)``, ``θ = |w|``."""
        if self.flag in applied(model):
            self.mark(model)                    # raises: a second --rewire of the same model
        why = self.check(model)
        if why is not None:
            raise CompressionError(f"--rewire {self.spec()}: {why}")
        for layer in crossbar_layers(model).values():
            parametrize.register_parametrization(layer, "weight", SignedReLU(cast(Tensor, layer.weight)))
        return self.mark(model)

    def callbacks(self) -> list[Any]:
        """The prior (attached to the run's optimiser at the start of ``fit``) and the connectivity logs."""
        from ..training import Callback

        outer = self

        class _Rewire(Callback):
            def __init__(self) -> None:
                self.handles: list[Any] = []

            def on_fit_start(self, trainer: Any) -> None:
                self.handles = GradRPrior(trainer.model, outer.s, outer.alpha).attach(trainer.optimizer)

            def on_batch_start(self, trainer: Any, batch: Any) -> None:
                if trainer.state.pos == 0:          # an epoch starts: remember who is connected
                    with torch.no_grad():
                        for theta, p in _rewired(trainer.model):
                            p.alive.copy_(p.connected(theta))

            def on_step_end(self, trainer: Any, info: Any) -> None:
                on = regrown = pruned = total = 0
                with torch.no_grad():
                    for theta, p in _rewired(trainer.model):
                        now = p.connected(theta)
                        on += int(now.sum())
                        regrown += int((now & ~p.alive).sum())
                        pruned += int((p.alive & ~now).sum())
                        total += theta.numel()
                log_epoch_value(trainer, "gradr_connectivity", on / max(total, 1))
                log_epoch_value(trainer, "gradr_regrown", regrown)
                log_epoch_value(trainer, "gradr_pruned", pruned)

            def on_fit_end(self, trainer: Any) -> None:
                for h in self.handles:
                    h.remove()
                self.handles = []

        return [_Rewire()]

    def describe(self, model: nn.Module) -> dict[str, Any]:
        """The target, ``α``, ``μ`` and the connectivity of the rewired weights."""
        on, total = gradr_connectivity(model)
        mu = gradr_center(self.s, self.alpha) if self.alpha > 0 else float("nan")
        return {"s": self.s, "alpha": self.alpha, "mu": float(f"{mu:.6g}"),
                "connectivity": round(on / max(total, 1), 4), "connected": on, "synapses": total}


COMPRESSORS.register("gradr", GradRewire, flag="rewire",
                     summary="Gradient Rewiring: w = s·ReLU(θ) with the gradient passed through pruned synapses, "
                             "Adam plus a Laplace prior (Chen et al. 2021)")

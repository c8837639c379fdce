"""``--method ttfs``: a zoo MLP trained on exact spike times (``ttfs.py``), as Göltz et al. 2021 (official code
``JulianGoeltz/fastAndDeep``, the 2021 version of ``src/utils.py`` and ``src/training.py``) and, with
``max_spikes > 1``, the relaxed multi-spike version of Bacho & Chu 2023.

**The model.** ``prepare`` turns every ``Linear → neuron`` stage of the MLP into an ``ExactLIF`` layer and the
head into one more (the label neurons), in place: the input stage (``SpikeTimesInput``) reads the latency-coded
train ``[T, B, C, H, W]`` as spike times — step ``s`` is time ``s·t_max/(T − 1)``, in units of ``τ_s`` — and
the readout (``FirstSpikeReadout``) returns ``[1, B, K]`` holding ``−min(t, horizon)/(ξτ_s)``, ``t`` the first
spike of each label neuron. That fits the engine's ``[T, B, K]`` convention: the mean over its one step, then
argmax, is the earliest spike (the prediction), and ``ce`` on it is the cross-entropy of the official loss.
A label neuron that never fires (or fires after ``horizon``) counts as firing at ``horizon``.

**The loss** (official ``LossFunction``, 2021): per sample, with ``t`` the label neurons' first spikes::

    L = CE(softmax(−t/(ξτ_s)), y) + α·exp(t_y/(βτ_s)),      L = 100 (no gradient) when t_y = +inf,

averaged over the batch (defaults ξ = 0.2, α = 0.005, β = 1 of the official MNIST config). ``--loss`` does not
apply to the training step (evaluation reports ``--loss`` on the readout, i.e. the cross-entropy part). A
``batch_transform`` (augmentation) is applied and its first view trained on.

**Weight bumping** (official ``check_bump_weights``): when the fraction of silent neurons (over the batch and the
layer) of a hidden layer — checked first to last, then the label layer — exceeds ``max_missing``, the step adds
``bump`` to the incoming weights (and bias) of the neurons of the first such layer that were silent for some
sample, and takes no gradient step; consecutive bumps of the same layer double ``bump``. The running value is
the method's state (checkpointed). ``bump = 0`` turns it off.

**Initialisation**: ``w ~ N(μ, σ²)·w₁/√N_in`` with ``w₁ = ϑ′/max_s κ(s)`` (one input alone just reaches the
threshold) and ``(μ, σ) = (init_mean, init_std)``; the official code sets a mean and a std per layer instead.

Logged per step (``StepOutput.extra`` → ``train_<name>`` in ``metrics.csv``): ``clipped`` (spikes whose gradient
was clipped as grazing), ``bumped`` (1 when the step bumped weights instead), ``hidden_spikes`` (spikes per
hidden neuron per sample), ``silent_labels`` (fraction of samples whose label neuron did not fire).

Left out from the official training: input-time noise during training, the StepLR schedule (the engine's),
hardware-in-the-loop.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..layers import ToSequence
from ..layers.attention import SpikingSelfAttention
from ..layers.fold import TimeFold
from ..neurons import SpikingNeuron
from ..training import METHODS, StepContext, StepOutput, TrainStep, mark_prepared, prepared_by
from .ttfs import CubaParams, ExactLIF

__all__ = ["TTFS", "SpikeTimesInput", "FirstSpikeReadout", "ttfs_loss", "to_exact_time", "exact_compatible"]


class SpikeTimesInput(nn.Module):
    """The input stage of a ``ttfs`` model: a 0/1 spike train ``[T, B, C, H, W]`` → the times of its spikes
    ``[B, C·H·W, K_in]`` (step ``s`` at ``s·t_max/(T − 1)``, ``+inf`` after an input's last spike; ``K_in`` the
    most spikes of any input, 1 for the latency code). A static batch ``[B, C, H, W]`` in ``[0, 1]`` is
    latency-coded exactly: ``t = (1 − x)·t_max``, no spike for ``x ≤ 0.01`` (``encode.latency``'s threshold).

    Args:
        t_max: the time of the last step (of ``x = 0``), in units of ``τ_s``.
    """

    def __init__(self, t_max: float = 2.0) -> None:
        super().__init__()
        self.t_max = float(t_max)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 4:
            t = torch.where(x > 0.01, (1 - x) * self.t_max, torch.full_like(x, math.inf))
            return t.flatten(1)[..., None]
        if x.dim() != 5:
            raise ValueError(f"ttfs input: expected a spike train [T, B, C, H, W] or images [B, C, H, W], got "
                             f"shape {tuple(x.shape)}")
        off = (x != 0) & (x != 1)
        if bool(off.any()):
            v = float(x[tuple(int(i) for i in torch.nonzero(off)[0])])
            raise ValueError(f"ttfs takes 0/1 spike trains (the latency code, --encoding latency); got the value {v}")
        T = x.shape[0]
        dt = self.t_max / (T - 1) if T > 1 else 0.0
        steps = torch.arange(T, dtype=torch.float32, device=x.device).view(T, 1, 1) * dt
        t = torch.where(x.flatten(2) > 0, steps, torch.full((), math.inf, device=x.device))   # [T, B, N]
        k = max(int((x.flatten(2) > 0).sum(0).max()), 1)
        return torch.sort(t.permute(1, 2, 0), dim=-1).values[..., :k].contiguous()

    def extra_repr(self) -> str:
        return f"t_max={self.t_max}"


class FirstSpikeReadout(nn.Module):
    """``[B, K, S]`` spike times of the label neurons → ``[1, B, K]`` holding ``−min(t_first, horizon)/(ξτ_s)``
    (the logits whose softmax the official loss uses; argmax = the earliest spike).

    Args:
        xi: ``ξ``, the loss's temperature in units of ``τ_s``.
        tau_syn: ``τ_s``.
        horizon: a label neuron silent (or later) until then counts as firing then.
    """

    def __init__(self, xi: float = 0.2, tau_syn: float = 1.0, horizon: float = 10.0) -> None:
        super().__init__()
        self.xi, self.tau_syn, self.horizon = float(xi), float(tau_syn), float(horizon)

    def forward(self, times: Tensor) -> Tensor:
        first = times[..., 0].clamp(max=self.horizon)
        return (-first / (self.xi * self.tau_syn)).unsqueeze(0)

    def extra_repr(self) -> str:
        return f"xi={self.xi}, tau_syn={self.tau_syn}, horizon={self.horizon}"


def ttfs_loss(first: Tensor, y: Tensor, xi: float = 0.2, alpha: float = 0.005, beta: float = 1.0,
              tau_syn: float = 1.0) -> Tensor:
    """The official TTFS loss (module docstring), averaged over the batch.

    Args:
        first: the label neurons' first spike times ``[B, K]`` (``+inf``: silent).
        y: labels ``[B]``.
        xi, alpha, beta: ``ξ``, ``α``, ``β``.
        tau_syn: ``τ_s``.

    Returns:
        A scalar; a sample whose label neuron is silent adds the constant 100 (no gradient), others'
        silent neurons add nothing to the softmax.
    """
    ty = first.gather(1, y.view(-1, 1)).squeeze(1)
    dead = ~torch.isfinite(ty)
    logits = torch.where(dead[:, None], torch.zeros_like(first), -first / (xi * tau_syn))
    ce = torch.logsumexp(logits, 1) - logits.gather(1, y.view(-1, 1)).squeeze(1)
    reg = alpha * torch.exp(torch.where(dead, torch.zeros_like(ty), ty) / (beta * tau_syn))
    return torch.where(dead, torch.full_like(ty, 100.0), ce + reg).mean()


def _kernel_peak(p: CubaParams) -> float:
    return 0.25 if p.tau_ratio == 2 else math.exp(-1.0)     # max_s κ(s): at s = 2τ_s·ln 2, resp. s = τ_s


def _linear_of(m: nn.Module) -> nn.Linear | None:
    """The ``Linear`` of a ``TimeFold([Flatten,] Linear)`` or a bare ``Linear``, else ``None``."""
    if isinstance(m, nn.Linear):
        return m
    if isinstance(m, TimeFold):
        parts = list(m)
        if parts and isinstance(parts[-1], nn.Linear) and all(isinstance(q, nn.Flatten) for q in parts[:-1]):
            return parts[-1]
    return None


def exact_compatible(model: nn.Module) -> str | None:
    """``None`` when ``model`` is an MLP ``ttfs`` can rebuild (an input stage, ``[Flatten →] Linear → neuron``
    stages and a ``Linear`` head), else the first reason it is not (naming the module)."""
    for name, m in model.named_modules():
        if isinstance(m, SpikingSelfAttention):
            return (f"{name} is spiking self-attention: exact spike-time layers replace the Linear → neuron stages "
                    "of an MLP only (e.g. spiking_mlp_tiny)")
    head = getattr(model, "head", None)
    if not isinstance(head, nn.Module) or _linear_of(head) is None:
        return "it has no Linear head (model.head) to become the label layer"
    found = False
    for name, parent in model.named_children():
        if isinstance(parent, (ToSequence, SpikingNeuron, nn.Flatten, nn.Identity)) or _linear_of(parent) is not None:
            found = found or isinstance(parent, SpikingNeuron)
            continue
        inner = [type(q).__name__ for q in parent.modules() if not isinstance(q, (TimeFold, nn.Linear, nn.Flatten))]
        what = f"holds a {inner[0]}" if isinstance(parent, TimeFold) and inner else f"is a {type(parent).__name__}"
        return (f"{name} {what}: exact spike-time layers replace the [Flatten →] Linear → neuron stages of an MLP "
                "only (e.g. spiking_mlp_tiny without bn)")
    return None if found else "it has no spiking neuron to replace"


def to_exact_time(model: nn.Module, max_spikes: int = 1, params: CubaParams | None = None, t_max: float = 2.0,
                  xi: float = 0.2, eps: float = 1e-3, init_mean: float = 0.5, init_std: float = 1.0) -> list[str]:
    """Rebuild an MLP (``exact_compatible``) in place for exact spike times: the input stage becomes
    ``SpikeTimesInput``, each ``Linear`` an ``ExactLIF`` (freshly initialised, module docstring), each neuron an
    ``Identity``, the head ``ExactLIF`` + ``FirstSpikeReadout`` (``params``: the neurons', default
    ``CubaParams()``). Returns the names of the ``ExactLIF`` layers."""
    params = params or CubaParams()
    w1 = params.theta / _kernel_peak(params)
    done: list[str] = []

    def exact(lin: nn.Linear, k: int) -> ExactLIF:
        layer = ExactLIF(lin.in_features, lin.out_features, lin.bias is not None, k, params, eps)
        with torch.no_grad():
            layer.weight.normal_(init_mean, init_std).mul_(w1 / math.sqrt(lin.in_features))
        return layer.to(lin.weight.device)

    for name, child in list(model.named_children()):
        lin = _linear_of(child)
        if name == "head" and lin is not None:
            model.head = nn.Sequential(exact(lin, max_spikes), FirstSpikeReadout(xi, params.tau_syn))
            done.append("head.0")
        elif lin is not None:
            setattr(model, name, exact(lin, max_spikes))
            done.append(name)
        elif isinstance(child, SpikingNeuron):
            setattr(model, name, nn.Identity())
        elif isinstance(child, ToSequence):
            setattr(model, name, SpikeTimesInput(t_max))
    return done


def _exact_layers(model: nn.Module) -> list[ExactLIF]:
    return [m for m in model.modules() if isinstance(m, ExactLIF)]


class TTFS(TrainStep):
    """``--method ttfs``: exact spike times (``ExactLIF``) in place of the MLP's LIF stages, the official
    first-spike loss, weight bumping (module docstring). Trains on latency-coded inputs (``config``).

    Args:
        max_spikes: ``K``, spikes per neuron (1: TTFS, Göltz et al. 2021; ``> 1``: relaxed, Bacho & Chu 2023).
        tau_ratio: ``τ_m/τ_s``, 2 or 1.
        threshold: ``ϑ`` (``E_L = 0``, ``g_L = τ_s/τ_m``).
        t_max: the time of the last input step, in units of ``τ_s``.
        xi, alpha, beta: the loss's ``ξ``, ``α``, ``β``.
        grad_eps: the grazing threshold ``ε`` (``ttfs.exact_spike_times``).
        bump: the initial weight bump (0: no bumping).
        max_missing: the fraction of silent neurons of a layer that triggers a bump.
        init_mean, init_std: the initial weights' ``μ``, ``σ`` (in ``w₁/√N_in``).
    """

    name = "ttfs"
    takes_batch_transform = True
    config: ClassVar[dict[str, Any]] = {"encoding": "latency"}
    replaces_neurons: ClassVar[bool] = True

    def __init__(self, max_spikes: int = 1, tau_ratio: int = 2, threshold: float = 1.0, t_max: float = 2.0,
                 xi: float = 0.2, alpha: float = 0.005, beta: float = 1.0, grad_eps: float = 1e-3,
                 bump: float = 5e-4, max_missing: float = 0.5, init_mean: float = 0.5, init_std: float = 1.0) -> None:
        if isinstance(max_spikes, bool) or not isinstance(max_spikes, int) or max_spikes < 1:
            raise ValueError(f"max_spikes must be an integer >= 1 (1: TTFS), got {max_spikes!r}")
        for key, v in (("threshold", threshold), ("t_max", t_max), ("xi", xi), ("beta", beta)):
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{key} must be a finite number > 0, got {v}")
        for key, v in (("alpha", alpha), ("grad_eps", grad_eps), ("bump", bump), ("init_std", init_std)):
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{key} must be a finite number >= 0, got {v}")
        if not 0 <= max_missing <= 1:
            raise ValueError(f"max_missing is a fraction and must be in [0, 1], got {max_missing}")
        self.params = CubaParams(tau_ratio=tau_ratio, threshold=threshold)      # checks tau_ratio
        self.max_spikes, self.t_max, self.xi, self.alpha, self.beta = max_spikes, float(t_max), float(xi), \
            float(alpha), float(beta)
        self.grad_eps, self.bump, self.max_missing = float(grad_eps), float(bump), float(max_missing)
        self.init_mean, self.init_std = float(init_mean), float(init_std)
        self.bump_val, self.last_bumped = self.bump, -2          # the official running bump and its layer

    def options(self) -> dict[str, Any]:
        return {"max_spikes": self.max_spikes, "tau_ratio": self.params.tau_ratio, "threshold": self.params.threshold,
                "t_max": self.t_max, "xi": self.xi, "alpha": self.alpha, "beta": self.beta, "grad_eps": self.grad_eps,
                "bump": self.bump, "max_missing": self.max_missing, "init_mean": self.init_mean,
                "init_std": self.init_std}

    def check(self, model: nn.Module) -> str | None:
        return exact_compatible(model)

    def prepare(self, model: nn.Module) -> nn.Module:
        if prepared_by(model) == self.name:
            return model
        to_exact_time(model, self.max_spikes, self.params, self.t_max, self.xi, self.grad_eps, self.init_mean,
                      self.init_std)
        return mark_prepared(model, self.name)

    def __call__(self, model: nn.Module, batch: tuple[Tensor, Tensor], ctx: StepContext) -> StepOutput:
        x_seq, y = batch
        if ctx.batch_transform is not None:          # an augmentation: the first view is trained on
            views = ctx.batch_transform(x_seq, y)
            x_seq = views[0] if isinstance(views, (list, tuple)) else views
        layers = _exact_layers(ctx.module)
        times: list[Tensor] = []
        handles = [m.register_forward_hook(lambda mod, inp, out: times.append(out)) for m in layers]
        try:
            out = model(x_seq)
        finally:
            for h in handles:
                h.remove()
        first = times[-1][..., 0]
        loss = ttfs_loss(first, y, self.xi, self.alpha, self.beta, self.params.tau_syn)
        silent = [~torch.isfinite(t).any(-1) for t in times]                     # [B, N] per layer
        bumped = self._bump(layers, silent) if self.bump > 0 else -2
        if bumped == -2:
            ctx.backward(loss)
        hidden = torch.cat([torch.isfinite(t).sum(-1).flatten(1) for t in times[:-1]], 1) if len(times) > 1 else None
        extra = {"clipped": float(sum(m.clipped for m in layers)), "bumped": float(bumped != -2),
                 "hidden_spikes": float(hidden.float().mean()) if hidden is not None else 0.0,
                 "silent_labels": float(silent[-1].gather(1, y.view(-1, 1)).float().mean())}
        return StepOutput(loss.detach(), out.detach(), extra)

    @torch.no_grad()
    def _bump(self, layers: list[ExactLIF], silent: list[Tensor]) -> int:
        """The official ``check_bump_weights``: bump the first layer with too many silent neurons; returns its
        index (``-1``: the label layer), or ``-2`` when none was bumped."""
        which = -2
        for i, s in enumerate(silent):
            if float(s.float().mean()) > self.max_missing:
                which = i if i < len(silent) - 1 else -1
                break
        if which == -2:
            self.last_bumped = -2
            return -2
        self.bump_val = self.bump_val * 2 if which == self.last_bumped else self.bump
        self.last_bumped = which
        layer, rows = layers[which], silent[which].any(0)
        layer.weight[rows] += self.bump_val
        if layer.bias is not None:
            layer.bias[rows] += self.bump_val
        return which

    def state_dict(self) -> dict[str, Any]:
        return {"bump_val": self.bump_val, "last_bumped": self.last_bumped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bump_val = float(state.get("bump_val", self.bump))
        self.last_bumped = int(state.get("last_bumped", -2))


METHODS.register("ttfs", TTFS, summary="exact spike times of current-based LIF layers (TTFS, max_spikes=1: Göltz et "
                                       "al. 2021; relaxed multi-spike, max_spikes>1: Bacho & Chu 2023); latency input")

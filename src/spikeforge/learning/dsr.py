"""DSR: differentiation on spike representation (Meng et al., CVPR 2022; official code ``qymeng94/DSR``).

The forward pass is an ordinary spiking simulation; the backward pass is not BPTT but the derivative of
the closed-form map from a layer's input rate to its output rate. A ``RateNeuron`` (soft reset, spike at
``α·V_th``, a learnable threshold per layer clamped from below) carries ``DSRRule`` as its gradient rule.

**IF.** With input ``x[t]``, rate ``r = (1/T) Σ_t x[t]`` and spike value ``V_th·S``, the output rate
``a = (V_th/T) Σ_t S[t]`` approximates ``clamp(r, 0, V_th)``. Bounds: after ``T`` steps
``V[T] = T·r − V_th·N`` (``N`` spikes, ``V[0] = 0``); for ``0 ≤ r ≤ V_th`` the membrane stays in
``[(α − 1)·V_th, α·V_th)``, so ``|a − r| = |V[T]|/T ≤ max(α, 1 − α)·V_th/T`` — ``V_th/T`` for ``α = 1`` and
``V_th/(2T)`` for ``α = 0.5``. Backward (as the official ``IFFunction``), with ``g = Σ_t ∂L/∂(V_th·S[t])``::

    ∂L/∂x[t] = (g/T)·1[0 ≤ r ≤ V_th]          ∂L/∂V_th = Σ_neurons g·1[r > V_th]

**Euler LIF** (``H = V + λ(X − V)``, ``β = 1 − λ``, ``λ = dt/τ``). The weighted rates use
``w_t = β^{T−t}`` (``t = 1..T``, later steps weigh more), ``S_w = Σ_t w_t = (1 − β^T)/λ``:
``r = Σ_t w_t x[t] / S_w`` and ``a = V_th Σ_t w_t S[t] / S_w``. Unrolling,
``V[T] = λ·S_w·r − S_w·a``, so ``a = λr − V[T]/S_w`` approximates ``clamp(λr, 0, V_th)`` with error
``≤ max(α, 1 − α)·V_th/S_w``. Backward, with ``g = T·Σ_t w_t ∂L/∂(V_th·S[t]) / S_w``::

    ∂L/∂x[t] = (g·λ/T)·1[0 < r < V_th/λ]      ∂L/∂V_th = Σ_neurons g·1[r > V_th/λ]

The official ``LIFFunction`` uses ``β = exp(−Δt/τ)`` and emits ``V_th·S/Δt``, so its factors are ``1/τ``
and ``Δt``; with ``dt = 1`` and Euler's ``β`` the two are the same formulas (ours carries the value
``V_th·S``, so the spike-driven audit and the rate readout need no ``1/Δt``).

**Spikes stay 0/1.** The value ``V_th·S`` is made by folding ``V_th`` into the weights of the synaptic
layers the spikes reach (``neurons.fold_thresholds``); the threshold enters there detached, so its
gradient is DSR's. Neurons whose spikes cannot be folded (a plain Spiking ResNet's identity path, where
spikes are added to a BN output) emit ``V_th·S``. SEW ADD neurons summed together share one threshold.

Differences from the official code, kept on purpose: the readout is the zoo's linear head on the last
layer's spikes (the mean over ``T`` of its logits is a linear map of the rate) rather than a BN1d and a
DSR neuron after the FC; per-step spikes are 0/1 with the threshold in the next weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..training import BPTT, METHODS, mark_prepared
from .base import rate_compatible, replace_neurons
from .neurons import RateNeuron, RateParams, fold_thresholds

__all__ = ["DSR", "DSRRule", "weighted_rate"]


def weighted_rate(x: Tensor, beta: float | None) -> Tensor:
    """``Σ_t β^{T−t} x[t] / Σ_t β^{T−t}`` over the time axis of ``x [T, ...]`` (``β = None``: the mean)."""
    if beta is None:
        return x.mean(0)
    T = x.shape[0]
    w = torch.tensor([beta ** (T - t) for t in range(1, T + 1)], dtype=x.dtype, device=x.device)
    w = w.view(T, *([1] * (x.dim() - 1)))
    return (w * x).sum(0) / w.sum()


@dataclass(frozen=True)
class DSRRule:
    """The DSR backward of a ``RateNeuron`` (see the module docstring): a ``GradientRule`` that keeps only
    the input's (weighted) rate ``[B, ...]`` for backward, so a layer's saved state does not grow with ``T``."""

    def summarize(self, x_seq: Tensor, spikes: Tensor, params: RateParams) -> tuple[Tensor]:
        """The input rate ``r`` (``[B, ...]``), all the backward needs of the forward."""
        return (weighted_rate(x_seq, None if params.leak is None else 1.0 - params.leak),)

    def __call__(self, grad_spikes: Tensor, saved: tuple[Tensor, ...], x_shape: Any, state: Any,
                 params: RateParams) -> tuple[Tensor, dict[str, Tensor]]:
        """``(∂L/∂x [T, B, ...], {"v_threshold": ∂L/∂V_th})`` from ``∂L/∂S`` and the input rate ``saved``
        (``neurons.call_rule`` calls it from the input and spike trains)."""
        (r,) = saved
        T = int(x_shape[0])
        vth = torch.as_tensor(params.v_threshold, dtype=r.dtype, device=r.device).detach()
        grad_value = grad_spikes if params.emit else grad_spikes / vth     # ∂L/∂(V_th·S)
        lam = params.leak
        if lam is None:
            g = grad_value.sum(0)
            inside, above, gain = (r >= 0) & (r <= vth), r > vth, 1.0
        else:
            g = T * weighted_rate(grad_value, 1.0 - lam)
            top = vth / lam
            inside, above, gain = (r > 0) & (r < top), r > top, lam
        gx = (g * inside * (gain / T)).unsqueeze(0).expand(x_shape)
        gth = (g * above).sum()
        return gx.contiguous(), {"v_threshold": gth.reshape(vth.shape)}


class DSR(BPTT):
    """``--method dsr``: every neuron becomes a DSR ``RateNeuron`` (IF or LIF, soft reset, spike at
    ``α·V_th``, trainable threshold per layer, ``V_th`` folded into the next weights); the step is one
    forward and one backward, the neurons' ``DSRRule`` in place of BPTT through time.

    Args:
        alpha: fire at ``α·V_th`` (0.5 rounds the rate instead of flooring it).
        vth: the initial threshold of every layer.
        vth_bound: the threshold's lower bound (clamped before every forward).
        train_vth: learn the thresholds.
        neuron: ``"if"`` or ``"lif"``.
        tau: the LIF time constant, in steps (``λ = 1/τ``).
    """

    name = "dsr"
    replaces_neurons = True

    def __init__(self, alpha: float = 0.5, vth: float = 1.0, vth_bound: float = 1e-3, train_vth: bool = True,
                 neuron: str = "if", tau: float = 2.0) -> None:
        if neuron not in ("if", "lif"):
            raise ValueError(f"neuron must be 'if' or 'lif', got {neuron!r}")
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        if not vth > 0 or not 0 <= vth_bound < vth:
            raise ValueError(f"need vth > 0 and 0 <= vth_bound < vth, got vth={vth}, vth_bound={vth_bound}")
        if neuron == "lif" and not tau >= 1:
            raise ValueError(f"tau must be >= 1 (one step), got {tau}")
        self.alpha, self.vth, self.vth_bound, self.train_vth = float(alpha), float(vth), float(vth_bound), train_vth
        self.neuron, self.tau = neuron, float(tau)

    def options(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "vth": self.vth, "vth_bound": self.vth_bound, "train_vth": self.train_vth,
                "neuron": self.neuron, "tau": self.tau}

    def check(self, model: nn.Module) -> str | None:
        return rate_compatible(model, max_pool=True)

    def prepare(self, model: nn.Module) -> nn.Module:
        def make(name: str, old: nn.Module) -> nn.Module:
            n = RateNeuron(v_threshold=self.vth, alpha=self.alpha, tau=self.tau if self.neuron == "lif" else None,
                           learn_threshold=self.train_vth, vth_bound=self.vth_bound, grad=DSRRule(),
                           backend=getattr(old, "backend", "auto"))
            p = next(old.parameters(), None) if hasattr(old, "parameters") else None
            return n if p is None else n.to(p.device)
        replace_neurons(model, make)
        fold_thresholds(model)
        return mark_prepared(model, self.name)


METHODS.register("dsr", DSR, summary="DSR: the derivative of the (weighted) rate map instead of BPTT; soft-reset "
                                     "IF/LIF, spike at alpha*Vth, trainable thresholds (Meng et al. 2022)")

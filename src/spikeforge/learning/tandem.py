"""Tandem learning (Wu et al., "A Tandem Learning Rule for Effective Training and Rapid Inference of Deep
Spiking Neural Networks", arXiv 1907.01167, IEEE TNNLS).

An SNN and an ANN share their weights and are interlaced layer by layer. Layer ``l`` of the SNN runs its
soft-reset IF neurons (threshold ``ϑ``, fixed) for ``T`` steps on the spikes of layer ``l − 1`` and
produces the spike count ``c^l = Σ_t S^l[t]``; that **true count** is what layer ``l + 1`` receives in the
forward pass. In the backward pass the error flows through the ANN layer instead,

    a^l = f(u^l),   u^l = Σ_t x^l[t] = W^l c^{l−1} + T·b^l,   f(u) = clamp(u/ϑ, 0, T),

so ``∂c^l/∂u^l ≈ f′(u^l) = (1/ϑ)·1[0 < u^l < Tϑ]``: no backpropagation through time.

``f`` is the count of an IF neuron under a constant current: with ``x[t] = x`` for every step and
``I = T·x``, the soft-reset neuron (fire at ``V ≥ ϑ``, subtract ``ϑ``) emits exactly
``clamp(⌊I/ϑ⌋, 0, T)`` spikes (``if_count``). For inputs that vary over time the count only approximates it:
it stays exact while ``0 ≤ x[t] ≤ ϑ`` at every step, but a current that changes sign (spikes early, then
inhibition) leaves spikes that the total ``I`` does not account for, and the error can exceed 1.

**The rule** (``CountRule``, a ``GradientRule`` of ``RateNeuron``). With ``grad_spikes = ∂L/∂S[t]``
``[T, B, ...]``: when everything downstream depends on the spikes through their count only, all
``∂L/∂S[t]`` equal ``∂L/∂c``; in general their mean is taken as ``∂L/∂c`` (the gradient of the count
spread evenly over the steps). Every step's input current enters ``u`` with weight 1, so::

    ∂L/∂x[t] = mean_t′(∂L/∂S[t′]) · (1/ϑ)·1[0 < u < Tϑ]          (the same for every t)

Through a synaptic layer this is ``∂c^l/∂c^{l−1} = f′(W c^{l−1})·W`` — the backward the spike-count rule
(``spike_count.py``) shares.

Choices: the spikes stay 0/1 (the count *is* the activation, so no threshold folding); ``ϑ`` is not
learned; the readout is the model's linear head on the last hidden layer's spikes, whose per-step logits
averaged over ``T`` (the ``ce`` loss) are ``W·c/T + b`` — the ANN's output layer on the count, as in the
paper's non-spiking output layer. Max pooling is accepted as DSR accepts it; through it the per-step
gradients differ and their mean is used (the maximum of counts is not the count of max-pooled spikes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..training import BPTT, METHODS, mark_prepared, prepared_by
from .base import rate_compatible, replace_neurons
from .neurons import RateNeuron, RateParams

__all__ = ["Tandem", "CountRule", "count_activation", "if_count", "count_neuron", "to_count_neurons"]


def count_activation(u: Tensor, vth: float | Tensor, T: int) -> Tensor:
    """The ANN activation of tandem learning, ``f(u) = clamp(u/ϑ, 0, T)``.

    Args:
        u: aggregate input current over the ``T`` steps, ``Σ_t x[t]``, any shape.
        vth: the threshold ``ϑ``.
        T: the number of steps (the most spikes a neuron can emit).

    Returns:
        ``f(u)``, the shape of ``u``.
    """
    return (u / vth).clamp(0, T)


def if_count(u: Tensor, vth: float | Tensor, T: int) -> Tensor:
    """``clamp(⌊u/ϑ⌋, 0, T)``: the exact spike count of a soft-reset IF neuron under a constant current
    ``u/T`` per step (and under any input with ``0 ≤ x[t] ≤ ϑ`` at every step).

    Args:
        u: aggregate input current over the ``T`` steps, ``Σ_t x[t]``, any shape.
        vth: the threshold ``ϑ``.
        T: the number of steps.

    Returns:
        The count, the shape of ``u``.
    """
    return torch.floor(u / vth).clamp(0, T)


@dataclass(frozen=True)
class CountRule:
    """The count backward of a soft-reset IF ``RateNeuron`` (``α = 1``, no leak): a ``GradientRule``.

    ``∂L/∂x[t] = mean_t′(∂L/∂S[t′]) · (1/ϑ)·1[0 < u < Tϑ]`` with ``u = Σ_t x[t]`` (module docstring).
    A neuron that emits ``ϑ·S`` (``emit=True``) gets ``ϑ·mean_t′(∂L/∂(ϑS[t′]))`` as ``∂L/∂c``. The threshold
    gets no gradient. Only ``u`` ``[B, ...]`` is kept for backward (``summarize``), so a layer's saved state
    does not grow with ``T``.
    """

    def summarize(self, x_seq: Tensor, spikes: Tensor, params: RateParams) -> tuple[Tensor]:
        """The aggregate current ``u = Σ_t x[t]`` (``[B, ...]``), all the backward needs of the forward."""
        if params.leak is not None or params.alpha != 1.0:
            raise ValueError(f"CountRule needs a soft-reset IF RateNeuron with alpha=1 (no leak); got "
                             f"alpha={params.alpha}, leak={params.leak}")
        return (x_seq.sum(0),)

    def __call__(self, grad_spikes: Tensor, saved: tuple[Tensor, ...], x_shape: Any, state: Any,
                 params: RateParams) -> Tensor:
        """``∂L/∂x`` ``[T, B, ...]`` from ``∂L/∂S`` ``[T, B, ...]`` and the summary ``saved = (u,)``
        (``neurons.call_rule`` calls it from the input and spike trains)."""
        (u,) = saved
        T = int(x_shape[0])
        vth = torch.as_tensor(params.v_threshold, dtype=u.dtype, device=u.device).detach()
        g = grad_spikes.mean(0)                     # ∂L/∂c
        if params.emit:
            g = g * vth
        inside = (u > 0) & (u < T * vth)
        gx = torch.where(inside, g / vth, torch.zeros_like(g))
        return gx.unsqueeze(0).expand(x_shape).contiguous()


def count_neuron(vth: float = 1.0, backend: str = "auto") -> RateNeuron:
    """A soft-reset IF ``RateNeuron`` (fire at ``V ≥ ϑ``, fixed ``ϑ``) whose backward is ``CountRule``.

    Args:
        vth: the threshold ``ϑ``.
        backend: the scan backend (``"auto"``: the fastest that can run the call).

    Returns:
        The neuron; ``neuron(x_seq [T, B, ...])`` returns 0/1 spikes ``[T, B, ...]``.
    """
    return RateNeuron(v_threshold=vth, alpha=1.0, tau=None, grad=CountRule(), backend=backend)


def to_count_neurons(model: nn.Module, vth: float = 1.0) -> list[str]:
    """Replace, in place, every spiking neuron of ``model`` by a ``count_neuron`` (on the old one's device).

    Args:
        model: the model to change.
        vth: the threshold ``ϑ`` of every new neuron.

    Returns:
        The qualified names of the replaced neurons.
    """
    def make(name: str, old: nn.Module) -> nn.Module:
        n = count_neuron(vth, backend=getattr(old, "backend", "auto"))
        p = next(old.parameters(), None)
        return n if p is None else n.to(p.device)
    return replace_neurons(model, make)


class Tandem(BPTT):
    """``--method tandem``: every neuron becomes a soft-reset IF neuron with ``CountRule`` as its backward;
    the step is one forward (the SNN's spikes, so each layer passes on its true count) and one backward
    through the ANN with the shared weights (``f(u) = clamp(u/ϑ, 0, T)``). The readout is the model's linear
    head (``W·c/T + b``, the mean of its per-step logits).

    Args:
        vth: the threshold ``ϑ`` of every layer (fixed).
    """

    name = "tandem"
    replaces_neurons = True

    def __init__(self, vth: float = 1.0) -> None:
        if not vth > 0:
            raise ValueError(f"vth must be > 0, got {vth}")
        self.vth = float(vth)

    def options(self) -> dict[str, Any]:
        return {"vth": self.vth}

    def check(self, model: nn.Module) -> str | None:
        return rate_compatible(model, max_pool=True)

    def prepare(self, model: nn.Module) -> nn.Module:
        if prepared_by(model) == self.name:
            return model
        to_count_neurons(model, self.vth)
        return mark_prepared(model, self.name)


METHODS.register("tandem", Tandem, summary="tandem learning: SNN spike counts forward, an ANN with shared weights "
                                           "(f(u) = clamp(u/Vth, 0, T)) backward; soft-reset IF (Wu et al. 2019)")

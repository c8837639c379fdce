"""The spike-count learning rule (Wu et al., "Deep Spiking Neural Network with Spike Count based Learning
Rule", IJCNN 2019, arXiv 1902.05705): the precursor of tandem learning.

For rate-coded inputs a layer's spike count stands in for its activation in backpropagation. The forward
pass is the SNN (soft-reset IF neurons, threshold ``ϑ``, ``T`` steps); the backward pass is the count
approximation of ``tandem.py``, shared through its ``CountRule``::

    ∂c^l/∂c^{l−1} = f′(W^l c^{l−1} + T·b^l) · W^l,      f(u) = clamp(u/ϑ, 0, T)

What this method adds to ``tandem``:

* **Spiking output.** The model's linear head is followed by a layer of the same IF neurons
  (``SpikingReadout``), so the outputs are spikes ``[T, B, K]`` and the ``ce`` loss — cross-entropy of the
  mean over ``T`` — is literally ``CE(c_out/T, y)``, the paper's loss on the output counts. Logits confined
  to ``[0, 1]`` give soft targets (the best reachable loss is ``log(1 + (K − 1)/e)``, 1.46 for ``K = 10``);
  ``scale = s`` multiplies the output by ``s`` (``CE(s·c_out/T, y)``), with ``s = 1`` the paper's loss.
* **Output initialisation.** A silent output neuron (``u ≤ 0``) gets no gradient (``f′ = 0`` there), and
  with the zoo's initialisation about half the output neurons start silent for a given input: a sample
  whose correct output is silent then teaches nothing. On mnist5k (784-500-10, T = 10, 5 epochs) a zero
  bias stalls training (median test accuracy 58.9 % over three seeds, the correct output silent on 11–41 %
  of the test samples). ``out_bias`` (default ``0.5``) starts the head's bias at ``ϑ/2`` per step, so
  ``u = W c + Tϑ/2`` starts in the middle of the window (95.1 %); ``out_bias = 0`` is the plain start. It
  is an initialisation only; the rule is unchanged.
* **Latency limit.** The network is trained with the ``T`` it is run with (``--T``).
* **Spike-rate limit.** With ``c^l`` the counts of hidden layer ``l`` (all neurons but the output's), the
  step adds ``λ·Σ_l mean_{b,i} relu(c^l_{b,i}/T − r_max)²`` to the loss (``rate_penalty``): the mean is over
  the layer's neurons and the batch, of the squared excess (the square inside the mean), so each neuron
  above ``r_max`` pays for its own excess. Its gradient reaches the weights through the same ``CountRule``.
  Its value is returned in ``StepOutput.extra["rate_penalty"]`` (with the hidden layers' mean rate,
  ``extra["hidden_rate"]``).

The hardware constraints the paper also mentions (quantised weights) are not part of this method; the
compression flags (``--quantize``, not in this version yet) are meant to compose with any method.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ..training import BPTT, METHODS, StepContext, StepOutput, mark_prepared, prepared_by
from ..training.steps import forward_views
from .base import rate_compatible
from .neurons import RateNeuron, rate_neurons
from .tandem import CountRule, count_neuron, to_count_neurons

__all__ = ["SpikeCount", "SpikingReadout", "rate_penalty"]


def rate_penalty(counts: Sequence[Tensor], T: int, r_max: float = 0.5) -> Tensor:
    """The spike-rate limit ``Σ_l mean(relu(c^l/T − r_max)²)`` (multiplied by ``λ`` in the step).

    Args:
        counts: the spike counts of each hidden layer, ``[B, ...]`` each.
        T: the number of steps (``c/T`` is the firing rate per step).
        r_max: the highest rate that costs nothing.

    Returns:
        A scalar tensor (0 for no layers); differentiable in ``counts``:
        ``∂/∂c^l_i = 2·relu(c^l_i/T − r_max)/(T·N_l)``, ``N_l`` the number of elements of ``c^l``.
    """
    total = torch.zeros(())
    for c in counts:
        total = total.to(c) + torch.relu(c / T - r_max).square().mean()
    return total


class SpikingReadout(nn.Module):
    """The spiking output layer: the model's linear head, then IF neurons with the count backward,
    optionally scaled.

    ``x [T, B, F] → s·S [T, B, K]``, where ``S`` are the output neurons' 0/1 spikes, so the mean over ``T``
    of the output is ``s·c_out/T``.

    Args:
        head: the model's head (a linear map applied at every step).
        vth: the output neurons' threshold ``ϑ``.
        scale: ``s``, the factor on the output spikes (1: the spikes themselves).
    """

    def __init__(self, head: nn.Module, vth: float = 1.0, scale: float = 1.0) -> None:
        super().__init__()
        self.linear = head
        self.neuron = count_neuron(vth)
        self.scale = float(scale)

    def forward(self, x: Tensor) -> Tensor:
        s = self.neuron(self.linear(x))
        return s if self.scale == 1.0 else s * self.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class SpikeCount(BPTT):
    """``--method spike-count``: the neurons of ``tandem`` (soft-reset IF, ``CountRule`` backward) plus a
    spiking output layer after the head (``SpikingReadout``); the loss is ``ce`` on the output counts
    (``CE(s·c_out/T, y)``) plus the spike-rate limit ``λ·rate_penalty`` on the hidden layers' counts.

    Args:
        vth: the threshold ``ϑ`` of every layer, output included (fixed).
        rate_limit: ``λ``, the weight of the spike-rate limit (0: none).
        r_max: the highest hidden firing rate (spikes per step) that costs nothing.
        scale: ``s``, the factor on the output spikes before the loss (1: the paper's ``CE(c_out/T)``).
        out_bias: the output layer's initial bias, in ``ϑ`` per step (0.5: every output neuron starts in the
            middle of its count window for a zero input, so none starts silent).
    """

    name = "spike-count"
    replaces_neurons = True

    def __init__(self, vth: float = 1.0, rate_limit: float = 1.0, r_max: float = 0.5, scale: float = 1.0,
                 out_bias: float = 0.5) -> None:
        if not vth > 0:
            raise ValueError(f"vth must be > 0, got {vth}")
        if not rate_limit >= 0:
            raise ValueError(f"rate_limit must be >= 0, got {rate_limit}")
        if not 0 <= r_max <= 1:
            raise ValueError(f"r_max is a rate in spikes per step and must be in [0, 1], got {r_max}")
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.vth, self.rate_limit, self.r_max, self.scale = float(vth), float(rate_limit), float(r_max), float(scale)
        self.out_bias = float(out_bias)

    def options(self) -> dict[str, Any]:
        return {"vth": self.vth, "rate_limit": self.rate_limit, "r_max": self.r_max, "scale": self.scale,
                "out_bias": self.out_bias}

    def check(self, model: nn.Module) -> str | None:
        head = getattr(model, "head", None)
        if not isinstance(head, nn.Module) or isinstance(head, nn.Identity):
            return "it has no classification head (model.head) to put the spiking output layer after"
        return rate_compatible(model, max_pool=True)

    def prepare(self, model: nn.Module) -> nn.Module:
        if prepared_by(model) == self.name:
            return model
        to_count_neurons(model, self.vth)
        head = model.head
        assert isinstance(head, nn.Module)
        p = next(head.parameters(), None)
        biases = [b for m in head.modules() if isinstance(b := getattr(m, "bias", None), nn.Parameter)]
        if biases:
            with torch.no_grad():
                biases[-1].fill_(self.out_bias * self.vth)
        readout = SpikingReadout(head, self.vth, self.scale)
        model.head = readout if p is None else readout.to(p.device)
        return mark_prepared(model, self.name)

    def __call__(self, model: nn.Module, batch: tuple[Tensor, Tensor], ctx: StepContext) -> StepOutput:
        x_seq, y = batch
        hidden = _hidden_neurons(ctx.module)
        counts: list[Tensor] = []

        def keep(module: nn.Module, inputs: Any, spikes: Tensor) -> None:
            counts.append(spikes.to(torch.promote_types(spikes.dtype, torch.float32)).sum(0))

        handles = [n.register_forward_hook(keep) for n in hidden]
        aux: dict[str, Any] = {"inputs": x_seq, "model": ctx.module, "step": ctx.step}
        try:
            with ctx.autocast():
                out = forward_views(model, x_seq, y, ctx, aux)
                task = ctx.loss(out, y, aux)
        finally:
            for h in handles:
                h.remove()
        T = x_seq.shape[0]
        penalty = rate_penalty(counts, T, self.r_max).to(task)
        loss = task + self.rate_limit * penalty if self.rate_limit > 0 else task
        ctx.backward(loss)
        rate = float(torch.stack([c.detach().mean() for c in counts]).mean()) / T if counts else 0.0
        return StepOutput(loss.detach(), out.detach(), {"rate_penalty": float(penalty.detach()),
                                                        "hidden_rate": rate})


def _hidden_neurons(model: nn.Module) -> list[RateNeuron]:
    """The count neurons of ``model`` outside its ``SpikingReadout``."""
    out_ids = {id(m) for r in model.modules() if isinstance(r, SpikingReadout) for m in r.modules()}
    return [m for m in rate_neurons(model).values() if isinstance(m.grad_rule, CountRule) and id(m) not in out_ids]


METHODS.register("spike-count", SpikeCount,
                 summary="spike-count rule: tandem's count backward, a spiking output layer with CE on its counts, "
                         "and a hidden spike-rate limit (Wu et al. 2019)")

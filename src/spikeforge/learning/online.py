"""Online training through time: one step forward, one step backward, memory independent of ``T``.

The rule is SLTT, spatial learning through time (Meng, Xiao, Yan, Wang, Lin & Luo, "Towards Memory- and
Time-Efficient Backpropagation for Training Spiking Neural Networks", ICCV 2023; official code
``qymeng94/SLTT``, ``train_SLTT.py`` and ``modules/neuron.py``). BPTT's gradient has a spatial part (through
the layers within a step) and a temporal part (through each neuron's state from one step to the next);
SLTT keeps the spatial part only. The official neuron charges ``v = v.detach()·(1 − 1/τ) + x``; here every
neuron's state is detached between steps, which is the same gradient. With nothing flowing across steps,
each step's loss is backpropagated as soon as the step has run, so the autograd graph never holds more
than one step::

    for t in 0..T-1:
        o[t], state = model.step(x[t], state.detach())     # the whole network, one step
        backward( L([o[t]], y) / T )                         # gradients accumulate over t
    # the engine steps the optimiser once per batch, as for every method

For a weight ``W`` feeding neurons with membrane ``u`` and presynaptic spikes ``s_pre``::

    ∂L/∂W = Σ_t (∂L[t]/∂u[t]) · s_pre[t]ᵀ        (BPTT adds the terms through u[t] → u[t+1] → ...)

No eligibility trace is kept (OTTT's presynaptic trace ``â[t] = λâ[t−1] + s[t]`` is the other choice: it
brings part of the temporal term back at the cost of a trace per synaptic input); SLTT's starting point is
that backpropagation through the temporal domain contributes little to the final gradient.

**The loss.** The configured loss (``--loss``) is applied to each step's output as a one-step sequence
``[1, B, K]`` and divided by ``T``: the objective is ``(1/T)·Σ_t L(o[t:t+1], y)``, as the official code's
``CE(out_t, y)/T``. For ``ce`` and ``tet`` that is TET's loss, the per-step cross-entropy averaged (not the
cross-entropy of the averaged output BPTT's ``ce`` is); for ``mse_rate`` the squared error of each step's
output. The logged ``loss`` is this objective; ``train_seq_loss`` is the configured loss of the whole
output sequence (no gradient), the number BPTT logs as its loss. Accuracy is read from the whole sequence,
as for BPTT. ``k`` (SLTT-K): backpropagate at ``k`` of the ``T`` steps only, drawn at random per batch (from
torch's generator, which checkpoints keep), the others running under ``no_grad``; the divisor stays ``T``,
as in the official ``train_SLTTK.py``.

**State between steps.** Scan neurons (and the ``LI`` readout) continue from their state, detached;
``SlidingPSN`` keeps its window of the last ``k`` inputs as state (detached: only the current input carries
gradient); ``SeqDropout`` draws one mask at the first step and keeps it for the sequence, as it does over
a whole sequence. A module called twice in one step keeps one state per call. Everything runs in a
context (``Stepwise``) that restores the modules' own ``forward`` afterwards: evaluation, ``report`` and
export run the model over whole sequences as for any method.

**Batch norm.** A ``BatchNorm`` inside a ``TimeFold`` sees one step at a time, so it normalises each step
over the batch (and space) rather than over ``T·B`` together, as in the official code (SpikingJelly's
single-step layers), and its running statistics are updated ``T`` times per batch (momentum ``m`` moves
them by ``1 − (1 − m)^T`` per batch instead of ``m``). Evaluation uses the running statistics, per sample,
so a model trained online evaluates the same way whole or step by step.

**What cannot run online** (``check`` names the module): the ``PSN`` family except ``SlidingPSN`` (``PSN``
mixes all ``T`` steps; ``MaskedPSN`` sees future inputs until ``λ = 1``), ``BNTT`` (parameters per step
index), ``NeuNorm`` (a recursion over time inside one call), a neuron with a ``GradientRule`` (it needs the
whole spike train), a model that makes its own time axis (``SequentialCSNN`` reads image columns as steps)
and a module that loops over time itself (a recurrent NIR graph). Spiking self-attention attends over
tokens within each step, so Spikformer and Spikingformer run online. A loss that contrasts augmented
views (``--loss stcl``) is refused when the step runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..layers.dropout import SeqDropout
from ..layers.norm import BNTT, NeuNorm
from ..models.psn_nets import SequentialCSNN
from ..neurons import LI, PSN, PSNWindow, SlidingPSN, SpikingNeuron
from ..training import METHODS, StepContext, StepOutput, TrainStep
from .ttfs import ExactLIF

__all__ = ["Online", "Stepwise", "online_compatible"]


def online_compatible(model: nn.Module) -> str | None:
    """``None`` when ``model`` can run one time step per call with its state carried between calls, else
    the first reason it cannot, naming the module."""
    for name, m in model.named_modules():
        where = name or type(model).__name__
        if isinstance(m, PSN):             # MaskedPSN too
            return (f"{where} is a {type(m).__name__} (parallel spiking neuron): its charge at each step mixes "
                    "inputs from the whole sequence, so it cannot run one step at a time; use SlidingPSN, whose "
                    "state is its window of the last k inputs, or a scan neuron (LIF, IF, ...)")
        if isinstance(m, BNTT):
            return f"{where} is BNTT (batch norm with parameters per time step index): it needs the whole sequence"
        if isinstance(m, NeuNorm):
            return f"{where} is NeuNorm: it runs a recursion over time inside one call"
        if isinstance(m, SpikingNeuron) and m.grad_rule is not None:
            return (f"{where} has the gradient rule {type(m.grad_rule).__name__}: it needs the whole spike train "
                    "in backward")
        if isinstance(m, ExactLIF):
            return f"{where} is ExactLIF (exact spike times, no time steps)"
        if isinstance(m, nn.RNNBase):
            return f"{where} is a {type(m).__name__}: it runs its recurrence over the whole sequence in one call"
        if getattr(m, "recurrent", None):
            return f"{where} has recurrent edges and runs its own loop over time"
    if isinstance(model, SequentialCSNN):
        return (f"{type(model).__name__} reads image columns as its time steps inside one call, so the "
                "engine's steps are not the model's")
    return None


class Stepwise:
    """Run a model one time step per call, its temporal modules carrying their state between calls.

    Inside ``with Stepwise(model):`` each call ``model(x_seq[t:t+1])`` (``[1, B, ...]``) continues where
    the previous call left off: scan neurons and ``LI`` from their state, ``SlidingPSN`` from its window,
    ``SeqDropout`` with the sequence's mask. The state is detached between calls (``detach=True``), so no
    graph spans two steps. Leaving the context restores every module's own ``forward`` and drops the state;
    ``reset()`` starts a new sequence inside it.

    Models ``online_compatible`` refuses must not be run this way (nothing here checks).
    """

    def __init__(self, model: nn.Module, detach: bool = True) -> None:
        self.model, self.detach = model, detach
        self.state: dict[tuple[int, int], Any] = {}
        self.masks: dict[tuple[int, int], Tensor] = {}
        self.calls: dict[int, int] = {}
        self.patched: list[nn.Module] = []

    def __enter__(self) -> Stepwise:
        for m in self.model.modules():
            fwd: Callable[[Tensor], Tensor] | None = None
            if isinstance(m, (SpikingNeuron, LI)):
                fwd = self._scan(m)
            elif isinstance(m, SlidingPSN):
                fwd = self._window(m)
            elif isinstance(m, SeqDropout):
                fwd = self._dropout(m)
            if fwd is not None and m not in self.patched:
                m.forward = fwd  # type: ignore[method-assign]
                self.patched.append(m)
        return self

    def __exit__(self, *exc: Any) -> None:
        for m in self.patched:
            del m.forward
        self.patched.clear()
        self.reset()

    def reset(self) -> None:
        """Forget every state and mask: the next call starts a new sequence."""
        self.state.clear()
        self.masks.clear()
        self.calls.clear()

    def next_step(self) -> None:
        """Mark the start of a step (a module called twice in one step keeps two states)."""
        self.calls.clear()

    def _key(self, m: nn.Module) -> tuple[int, int]:
        n = self.calls.get(id(m), 0)
        self.calls[id(m)] = n + 1
        return id(m), n

    def _keep(self, key: tuple[int, int], state: Any) -> None:
        self.state[key] = type(state)(*(s.detach() if isinstance(s, Tensor) and self.detach else s
                                        for s in state))

    def _scan(self, m: SpikingNeuron | LI) -> Callable[[Tensor], Tensor]:
        def forward(x_seq: Tensor) -> Tensor:
            key = self._key(m)
            out, state = m.run(x_seq, self.state.get(key))
            self._keep(key, state)
            return out
        return forward

    def _window(self, m: SlidingPSN) -> Callable[[Tensor], Tensor]:
        def forward(x_seq: Tensor) -> Tensor:
            key = self._key(m)
            state: PSNWindow | None = self.state.get(key)
            outs = []
            for x in x_seq:
                s, state = m.step(x, state)
                outs.append(s)
            assert state is not None
            self._keep(key, state)
            return torch.stack(outs)
        return forward

    def _dropout(self, m: SeqDropout) -> Callable[[Tensor], Tensor]:
        def forward(x_seq: Tensor) -> Tensor:
            if not m.training or m.p == 0.0:
                return x_seq
            key = self._key(m)
            mask = self.masks.get(key)
            if mask is None:             # the draw SeqDropout.forward makes once per sequence
                if m.channelwise:
                    shape = (1, *x_seq.shape[1:3], *(1,) * (x_seq.dim() - 3))
                else:
                    shape = (1, *x_seq.shape[1:])
                mask = x_seq.new_empty(shape).bernoulli_(1.0 - m.p)
                self.masks[key] = mask
            return x_seq * mask * (1.0 / (1.0 - m.p))
        return forward


class Online(TrainStep):
    """``--method online``: SLTT, one step of the whole network forward and backward at a time, neuron
    state detached between steps; activation memory independent of ``T`` (see the module docstring).

    Args:
        k: backpropagate at ``k`` randomly drawn steps of each batch only (SLTT-K); ``None``: at every step.
    """

    name = "online"

    def __init__(self, k: int | None = None) -> None:
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ValueError(f"k must be a positive integer (steps backpropagated per batch) or None, got {k!r}")
        self.k = k

    def options(self) -> dict[str, Any]:
        return {"k": self.k}

    def check(self, model: nn.Module) -> str | None:
        return online_compatible(model)

    def __call__(self, model: nn.Module, batch: tuple[Tensor, Tensor], ctx: StepContext) -> StepOutput:
        x_seq, y = batch
        if ctx.batch_transform is not None:
            raise ValueError("method 'online' cannot train with a loss or transform that makes augmented views "
                             "of the whole sequence (e.g. --loss stcl); use --method bptt")
        T = x_seq.shape[0]
        chosen = (range(T) if self.k is None or self.k >= T
                  else sorted(torch.randperm(T)[:self.k].tolist()))
        learn, last = set(chosen), max(chosen)
        aux: dict[str, Any] = {"inputs": x_seq, "model": ctx.module, "step": ctx.step}
        # the outputs and the loss go into buffers made once: small tensors kept alive across steps would
        # split the heap's free blocks that the next step's activations need (RSS creeping up with T)
        outputs: Tensor | None = None
        total = torch.zeros((), device=x_seq.device)
        with Stepwise(ctx.module) as run:
            for t in range(T):
                run.next_step()
                if t not in learn:
                    with torch.no_grad(), ctx.autocast():
                        out = _one_step(model, x_seq[t:t + 1], t)
                else:
                    sync = contextlib.nullcontext() if t == last else ctx.no_sync()
                    with sync:                # under DDP: all-reduce once, with the last backward
                        with ctx.autocast():
                            out = _one_step(model, x_seq[t:t + 1], t)
                            loss = ctx.loss(out, y, {**aux, "t": t}) / T
                        ctx.backward(loss)
                    total += loss.detach().float()
                if outputs is None:
                    outputs = out.new_empty((T, *out.shape[1:]))
                outputs[t] = out[0].detach()
                del out
        assert outputs is not None
        with torch.no_grad():
            seq_loss = float(ctx.loss(outputs, y, aux))
        return StepOutput(total.cpu(), outputs, {"seq_loss": seq_loss})


def _one_step(model: nn.Module, x_t: Tensor, t: int) -> Tensor:
    out: Tensor = model(x_t)
    if out.dim() < 1 or out.shape[0] != 1:
        raise ValueError(f"method 'online': one input step gave outputs of shape {tuple(out.shape)} at step {t}, "
                         "not [1, B, ...]: the model makes its own time axis, so it cannot be run step by step")
    return out


METHODS.register("online", Online, summary="SLTT online training: one step forward and backward at a time, neuron "
                                           "state detached between steps; memory independent of T (Meng et al. 2023)")

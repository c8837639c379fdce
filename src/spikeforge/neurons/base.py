"""The thin module every scan neuron shares: explicit state, one time loop, no hidden memory.

A neuron family is a parameter record (a frozen dataclass), a state (a NamedTuple of tensors) and a
pure step function ``step(x, state, params) -> (spike, state)``. The ``nn.Module`` only holds the
learnable or user-set values and calls ``scan``:

* ``neuron(x_seq)`` on ``[T, B, ...]`` starts from a fresh state on every call (nothing to reset);
* ``neuron.run(x_seq, state) -> (spikes, state)`` continues from a given state (streaming, truncated BPTT);
* ``neuron.step(x, state) -> (spike, state)`` runs one step of ``[B, ...]``.

Batch, dtype and device follow the input. fp16/bf16 inputs keep fp32 state and get spikes back in
their own dtype; integer inputs (chip simulation, under ``torch.no_grad()``) keep integer state.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

from ..surrogate import Sigmoid, Surrogate, get_surrogate
from .dynamics import StateQuantizer
from .scan import MEMORY_MODES, State, StepFn, available_backends, scan, state_dtype

__all__ = ["SpikingNeuron", "GradientRule", "call_rule", "set_memory"]


class GradientRule(Protocol):
    """A learning rule that replaces the surrogate gradient of a whole neuron layer.

    Called in backward with the upstream gradient ``grad_spikes [T, B, ...]``, what the forward produced
    and the neuron's parameter record (the values the step function saw). Returns the gradient for
    ``x_seq``, or ``(grad_x, {name: grad})`` where each name is one of the neuron's own ``nn.Parameter``s
    (e.g. ``{"v_threshold": g}`` for a learnable threshold): that ``g`` is what arrives in ``.grad``. A
    parameter the rule gives no gradient gets none; the initial state never does. Rate-based rules (DSR,
    tandem learning, the spike-count rule) take this form.

    A rule that needs less than the whole input and spike trains in backward may define
    ``summarize(x_seq, spikes, params) -> tuple of tensors``: only that summary is kept for backward
    (e.g. an input rate ``[B, ...]``, so the memory no longer grows with ``T``), and the rule is then called
    as ``rule(grad_spikes, summary, x_shape, state, params)``.
    """

    def __call__(self, grad_spikes: Tensor, x_seq: Tensor, spikes: Tensor, state: State,
                 params: Any) -> Tensor | tuple[Tensor, dict[str, Tensor]]: ...


def call_rule(rule: GradientRule, grad_spikes: Tensor, x_seq: Tensor, spikes: Tensor, state: State,
              params: Any) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
    """Call ``rule`` as a neuron's backward does: through its ``summarize`` when it has one (so a rule is
    written for one calling convention only), with the input and spike trains otherwise."""
    summarize = getattr(rule, "summarize", None)
    if summarize is None:
        return rule(grad_spikes, x_seq, spikes, state, params)
    return rule(grad_spikes, summarize(x_seq, spikes, params), x_seq.shape, state, params)  # type: ignore[arg-type]


class _RuleGrad(torch.autograd.Function):
    """Identity on the spikes forward; the rule's gradients backward, for ``x_seq`` and the named parameters
    passed after it (so autograd delivers them to ``.grad``)."""

    @staticmethod
    def forward(ctx: Any, x_seq: Tensor, spikes: Tensor, rule: GradientRule, state: State, params: Any,  # type: ignore[override]
                names: tuple[str, ...], *values: Tensor) -> Tensor:
        summarize = getattr(rule, "summarize", None)
        ctx.summarized = summarize is not None
        ctx.save_for_backward(*(summarize(x_seq, spikes, params) if summarize is not None else (x_seq, spikes)))
        ctx.rule, ctx.state, ctx.params, ctx.names = rule, state, params, names
        ctx.shapes, ctx.x_shape = [v.shape for v in values], x_seq.shape
        return spikes.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        saved = ctx.saved_tensors
        if ctx.summarized:
            out = ctx.rule(grad, saved, ctx.x_shape, ctx.state, ctx.params)
        else:
            out = ctx.rule(grad, saved[0], saved[1], ctx.state, ctx.params)
        gx, gp = (out if isinstance(out, tuple) else (out, {}))
        who = type(ctx.rule).__name__
        if gx.shape != ctx.x_shape:
            raise RuntimeError(f"gradient rule {who} returned shape {tuple(gx.shape)}, "
                               f"expected the input's {tuple(ctx.x_shape)}")
        unknown = sorted(set(gp) - set(ctx.names))
        if unknown:
            raise RuntimeError(f"gradient rule {who} returned a gradient for {unknown[0]!r}, which is not a "
                               f"parameter of the neuron (its parameters: {list(ctx.names) or 'none'})")
        grads: list[Tensor | None] = []
        for name, shape in zip(ctx.names, ctx.shapes):
            g = gp.get(name)
            if g is not None and g.shape != shape:
                raise RuntimeError(f"gradient rule {who} returned shape {tuple(g.shape)} for {name!r}, "
                                   f"expected the parameter's {tuple(shape)}")
            grads.append(g)
        return (gx, None, None, None, None, None, *grads)


class SpikingNeuron(nn.Module):
    """Base of the scan neurons. Subclasses set ``step_fn``, ``state_type`` and implement ``params``.

    Args (shared by every subclass):
        v_threshold: firing threshold ``V_th`` (a float, or a tensor broadcastable to one step of input,
            e.g. ``[C, 1, 1]`` for per-channel thresholds).
        v_reset: hard-reset potential, or ``None`` for soft reset (subtract ``V_th``). Also the resting
            potential the membrane leaks towards.
        learn_threshold: make ``v_threshold`` an ``nn.Parameter`` (scalar or the tensor's shape).
        surrogate: a ``spikeforge.surrogate.Surrogate`` or its name; default ``Sigmoid(alpha=4)``
            (SpikingJelly's default).
        detach_reset: stop the gradient through the spike in the reset term.
        backend: ``"auto"`` (fastest registered backend that can run the call) or a backend name.
        grad: ``"surrogate"`` or a ``GradientRule`` object (which may also return gradients for the
            neuron's own parameters).
        quantizer: optional ``StateQuantizer`` applied to the state after every step.
        memory: what the scan keeps for backward, on every backend: ``"default"`` (the CPU kernels: the
            input only, 4 bytes per neuron-step; the GPU kernels: the input plus the state every 2 bytes per
            neuron-step; the torch loop: what autograd saves at every step) or ``"lean"`` (the input and the
            state every ⌈√T⌉ steps, each segment replayed in backward; on the CPU kernels the same as
            ``"default"``). ``set_memory(model, mode)`` switches every neuron of a built model.
    """

    step_fn: ClassVar[StepFn]
    state_type: ClassVar[Any]  # the family's NamedTuple of state tensors

    @property
    def state_names(self) -> tuple[str, ...]:
        return tuple(self.state_type._fields)

    def __init__(self, *, v_threshold: float | Tensor = 1.0, v_reset: float | None = 0.0,
                 learn_threshold: bool = False, surrogate: Surrogate | str = Sigmoid(),
                 detach_reset: bool = False, backend: str = "auto",
                 grad: str | GradientRule = "surrogate", quantizer: StateQuantizer | None = None,
                 memory: str = "default") -> None:
        super().__init__()
        self.v_threshold: float | Tensor
        self._value("v_threshold", v_threshold, learn_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.surrogate = get_surrogate(surrogate)
        self.detach_reset = bool(detach_reset)
        if backend != "auto" and backend not in available_backends():
            raise ValueError(f"{type(self).__name__}: unknown backend {backend!r}; choose 'auto' or one of "
                             f"{available_backends()}")
        self.backend = backend
        if isinstance(grad, str) and grad != "surrogate":
            raise ValueError(f"grad must be 'surrogate' or a GradientRule object, got {grad!r}")
        self.grad_rule: GradientRule | None = None if isinstance(grad, str) else grad
        self.quantizer = quantizer
        if memory not in MEMORY_MODES:
            raise ValueError(f"memory must be 'default' or 'lean', got {memory!r}")
        self.memory = memory

    # -- what a family defines -------------------------------------------------------------------
    def params(self) -> Any:
        """The parameter record passed to every step (numbers and tensors, plus static choices)."""
        raise NotImplementedError

    def init_state(self, x: Tensor) -> State:
        """The resting state for input steps like ``x [B, ...]``: ``v = v_reset`` (0 for soft reset), other
        state variables 0, as 0-dim tensors that broadcast over every neuron (nothing is allocated per
        neuron). Families with another rest override this."""
        dtype = state_dtype(x.dtype)
        v = torch.tensor(0.0 if self.v_reset is None else self.v_reset, dtype=dtype, device=x.device)
        rest = (torch.zeros((), dtype=dtype, device=x.device) for _ in self.state_names[1:])
        return self.state_type(v, *rest)

    def spike_params(self) -> dict[str, Any]:
        """The fields of ``SpikeParams`` every family's record starts with."""
        return dict(v_threshold=self.v_threshold, v_reset=self.v_reset, surrogate=self.surrogate,
                    detach_reset=self.detach_reset, quantizer=self.quantizer)

    # -- helpers for subclasses ------------------------------------------------------------------
    def _value(self, name: str, value: float | Tensor, learnable: bool = False) -> None:
        """Store a parameter as the user gave it: a float, a buffer, or (``learnable``) an nn.Parameter."""
        if learnable:
            setattr(self, name, nn.Parameter(torch.as_tensor(value, dtype=torch.float32).clone()))
        elif isinstance(value, Tensor):
            self.register_buffer(name, value.detach().clone().float())
        else:
            setattr(self, name, float(value))

    # -- the three ways to run -------------------------------------------------------------------
    def step(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One step: ``x [B, ...] -> (spike [B, ...], state)``; ``state=None`` starts at rest."""
        spikes, state = self.run(x.unsqueeze(0), state)
        return spikes[0], state

    def run(self, x_seq: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """``x_seq [T, B, ...] -> (spikes [T, B, ...], final state)``, from ``state`` or from rest."""
        if not isinstance(x_seq, Tensor) or x_seq.dim() < 2:
            shape = tuple(x_seq.shape) if isinstance(x_seq, Tensor) else type(x_seq).__name__
            raise ValueError(f"{type(self).__name__} expects a time-first tensor [T, B, ...] with at least "
                             f"2 dims, got {shape}; use .step(x, state) for a single step")
        if x_seq.shape[0] == 0:
            raise ValueError(f"{type(self).__name__}: the time axis of x_seq is empty (shape {tuple(x_seq.shape)})")
        if x_seq.dtype == torch.bool or x_seq.dtype.is_complex:
            raise TypeError(f"{type(self).__name__} expects a real-valued input (floating point, or integers for "
                            f"chip simulation), got {x_seq.dtype}")
        if state is None:
            state = self.init_state(x_seq[0])
        else:
            self._check_state(state, x_seq)
            state = self.state_type(*state)
        params = self.params()
        if self.grad_rule is None:
            return scan(type(self).step_fn, x_seq, state, params, self.backend, self.memory)
        with torch.no_grad():
            spikes, final = scan(type(self).step_fn, x_seq, state, params, self.backend, self.memory)
        own = dict(self.named_parameters(recurse=False))
        if torch.is_grad_enabled() and (x_seq.requires_grad or any(p.requires_grad for p in own.values())):
            spikes = _RuleGrad.apply(x_seq, spikes, self.grad_rule, final, params, tuple(own), *own.values())
        return spikes, final

    def forward(self, x_seq: Tensor) -> Tensor:
        """``x_seq [T, B, ...] -> spikes [T, B, ...]``, always from a fresh resting state."""
        return self.run(x_seq)[0]

    def _check_state(self, state: State, x_seq: Tensor) -> None:
        names = self.state_names
        if not isinstance(state, tuple) or len(state) != len(names):
            raise ValueError(f"{type(self).__name__} state must be a tuple of {len(names)} tensors {names}, "
                             f"got {type(state).__name__} of length {len(state) if isinstance(state, tuple) else '?'}")
        for n, s in zip(names, state):
            try:
                torch.broadcast_shapes(s.shape, x_seq.shape[1:])
            except RuntimeError:
                raise ValueError(f"{type(self).__name__} state '{n}' has shape {tuple(s.shape)}, which does not "
                                 f"broadcast to one step of input {tuple(x_seq.shape[1:])}") from None

    def extra_repr(self) -> str:
        th = self.v_threshold if isinstance(self.v_threshold, float) else f"tensor{tuple(self.v_threshold.shape)}"
        return (f"v_threshold={th}, v_reset={self.v_reset}, surrogate={self.surrogate}, "
                f"detach_reset={self.detach_reset}, backend={self.backend!r}")


def set_memory(model: nn.Module, memory: str) -> list[str]:
    """Set what every scan neuron of ``model`` keeps for backward (``"default"`` or ``"lean"``, see
    ``SpikingNeuron``), in place: the model-level form of ``--memory``. Returns the names of the neurons set
    (``""`` when ``model`` is itself a neuron)."""
    if memory not in MEMORY_MODES:
        raise ValueError(f"memory must be 'default' or 'lean', got {memory!r}")
    done = []
    for name, m in model.named_modules():
        if isinstance(m, SpikingNeuron):
            m.memory = memory
            done.append(name)
    return done

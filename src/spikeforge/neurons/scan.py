"""The one time loop, and the one place a backend is chosen.

``scan(step_fn, x_seq, state, params)`` runs a pure step function over the leading time axis:

    for t in 0..T-1:   S[t], state = step_fn(X[t], state, params)

The torch loop below *is* the specification; a fast backend registers with
``spikeforge.core.register_backend`` and must reproduce it (spikes exactly, gradients to tolerance),
which the correctness harness in ``tests/neurons/harness.py`` checks for every registered backend.

``memory="lean"`` means the same on every backend: keep the input and the state every ``K = ⌈√T⌉`` steps
for backward, and replay each segment of ``K`` steps in the backward pass. The fused backends do it in their
kernels; the torch loop runs each segment under ``torch.utils.checkpoint`` (``lean_scan``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from ..core import State, StepFn, register_backend, resolve_backend, state_like
from ..core import available_backends as _registered

__all__ = ["scan", "available_backends", "TorchBackend", "state_dtype", "lean_scan", "MEMORY_MODES"]

MEMORY_MODES = ("default", "lean")
"""What ``memory=`` takes: keep the state every few steps (``"default"``) or every ``⌈√T⌉`` (``"lean"``)."""


def state_dtype(dtype: torch.dtype) -> torch.dtype:
    """State precision for an input dtype: fp16/bf16 inputs keep fp32 state; others keep their own."""
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


@dataclass
class TorchBackend:
    """The reference: a Python loop over T calling the step function. Runs everything, on any device."""

    name: str = "torch"

    def handles(self, x_seq: Tensor) -> bool:
        return True

    def why_not(self, step_fn: StepFn, x_seq: Tensor, state: State, params: Any) -> str | None:
        return None

    def scan(self, step_fn: StepFn, x_seq: Tensor, state: State, params: Any,
             memory: str = "default") -> tuple[Tensor, State]:
        if memory not in MEMORY_MODES:
            raise ValueError(f"memory must be one of {MEMORY_MODES}, got {memory!r}")
        if memory == "lean" and torch.is_grad_enabled() and x_seq.shape[0] > 1:
            return lean_scan(self.loop, step_fn, x_seq, state, params)
        return self.loop(step_fn, x_seq, state, params)

    @staticmethod
    def loop(step_fn: StepFn, x_seq: Tensor, state: State, params: Any) -> tuple[Tensor, State]:
        """The plain loop: autograd keeps whatever each step saves (``memory="default"``)."""
        dtypes = [s.dtype for s in state]
        spikes = []
        for x in x_seq:
            spike, state = step_fn(x, state, params)
            if any(n.dtype != d for n, d in zip(state, dtypes)):
                # integer simulation: the step may promote (int × float leak); the state keeps its dtype
                state = _retype(state, dtypes)
            spikes.append(spike)
        out = torch.stack(spikes)
        return (out if out.dtype == x_seq.dtype else out.to(x_seq.dtype)), state


def _retype(state: Any, dtypes: list[torch.dtype]) -> Any:
    return state_like(state, [n if n.dtype == d else n.to(d) for n, d in zip(state, dtypes)])


Loop = Callable[[StepFn, Tensor, State, Any], tuple[Tensor, State]]


def lean_scan(loop: Loop, step_fn: StepFn, x_seq: Tensor, state: State, params: Any) -> tuple[Tensor, State]:
    """``loop`` over ``x_seq [T, ...]`` in segments of ``K = ⌈√T⌉`` steps, each under
    ``torch.utils.checkpoint`` (non-reentrant): backward keeps the input and the state at every segment
    boundary, and replays a segment's steps to get what they would have saved. Gradients reach the input,
    the initial state and every tensor of ``params`` (learnable thresholds and leaks) as with the plain loop.

    Every segment takes the whole ``x_seq`` and slices it inside, so what is kept of the input is the input
    itself, not one copy per segment."""
    T = x_seq.shape[0]
    K = max(1, math.ceil(math.sqrt(T)))

    def segment(x_all: Tensor, start: int, *st: Tensor) -> tuple[Tensor, ...]:
        out, final = loop(step_fn, x_all[start:start + K], state_like(state, list(st)), params)
        return (out, *final)

    outs, st = [], tuple(state)
    for start in range(0, T, K):
        out, *rest = checkpoint(segment, x_seq, start, *st, use_reentrant=False)
        outs.append(out)
        st = tuple(rest)
    return torch.cat(outs), state_like(state, list(st))


register_backend(TorchBackend(), auto_priority=10**9)     # the reference: always last for "auto"


def _load_builtin() -> None:
    """Register the fused backends shipped with spikeforge (``spikeforge.kernels``, imported on first use so
    that ``import spikeforge.neurons`` stays cheap). No flag of our own: once imported this is a
    ``sys.modules`` look-up, and a thread that arrives while another is still importing waits on Python's
    module lock instead of seeing a half-registered set of backends."""
    import spikeforge.kernels  # noqa: F401  (registers "cpu", and "triton" when available)


def available_backends() -> list[str]:
    """Names of the registered backends, the reference ``"torch"`` first."""
    _load_builtin()
    return _registered()


def scan(step_fn: StepFn, x_seq: Tensor, state: Sequence[Tensor], params: Any,
         backend: str = "auto", memory: str = "default") -> tuple[Tensor, State]:
    """Run ``step_fn`` over the time axis of ``x_seq``.

    Args:
        step_fn: pure ``(x [B, ...], state, params) -> (spike [B, ...], state)``.
        x_seq: input ``[T, B, ...]``.
        state: initial state, a tuple (or NamedTuple) of tensors broadcastable to ``[B, ...]``.
        params: the neuron's parameter record, passed unchanged to every step.
        backend: ``"auto"`` or a registered backend name.
        memory: what the backend keeps for backward: ``"default"`` or ``"lean"`` (the state every
            ``⌈√T⌉`` steps, recomputing the rest in backward), on every backend.

    Returns:
        ``(spikes [T, B, ...] in x_seq's dtype, final state)``.
    """
    st: State = state if isinstance(state, tuple) else tuple(state)
    _load_builtin()
    b = resolve_backend(backend, step_fn, x_seq, st, params)
    return b.scan(step_fn, x_seq, st, params, memory)

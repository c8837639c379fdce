"""The one time loop, and the one place a backend is chosen.

``scan(step_fn, x_seq, state, params)`` runs a pure step function over the leading time axis:

    for t in 0..T-1:   S[t], state = step_fn(X[t], state, params)

The torch loop below *is* the specification; a fast backend registers with
``spikeforge.core.register_backend`` and must reproduce it (spikes exactly, gradients to tolerance),
which the correctness harness in ``tests/neurons/harness.py`` checks for every registered backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..core import State, StepFn, register_backend, resolve_backend, state_like
from ..core import available_backends as _registered

__all__ = ["scan", "available_backends", "TorchBackend", "state_dtype"]


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
        memory: what a fused backend keeps for backward: ``"default"`` or ``"lean"`` (recompute more).

    Returns:
        ``(spikes [T, B, ...] in x_seq's dtype, final state)``.
    """
    st: State = state if isinstance(state, tuple) else tuple(state)
    _load_builtin()
    b = resolve_backend(backend, step_fn, x_seq, st, params)
    return b.scan(step_fn, x_seq, st, params, memory)

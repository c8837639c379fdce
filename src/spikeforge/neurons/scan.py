"""The one time loop, and the one place a backend is chosen.

``scan(step_fn, x_seq, state, params)`` runs a pure step function over the leading time axis:

    for t in 0..T-1:   S[t], state = step_fn(X[t], state, params)

The torch loop below *is* the specification; a fast backend registers here with ``register_backend``
and must reproduce it (spikes exactly, gradients to tolerance), which the correctness harness in
``tests/neurons/harness.py`` checks for every registered backend.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

State = tuple[Tensor, ...]
StepFn = Callable[..., tuple[Tensor, Any]]

__all__ = ["scan", "register_backend", "available_backends", "resolve_backend", "Backend", "State",
           "StepFn", "state_dtype", "BackendFallbackWarning"]


class Backend(Protocol):
    """What a scan backend provides.

    ``handles`` says whether the backend is meant for this input at all (device, dtype family): when it
    is not, ``backend="auto"`` moves on silently. ``why_not`` returns ``None`` when it can run the call,
    else a reason; a backend that handles the input but cannot run it makes ``auto`` warn.
    """

    name: str

    def handles(self, x_seq: Tensor) -> bool: ...

    def why_not(self, step_fn: StepFn, x_seq: Tensor, state: State, params: Any) -> str | None: ...

    def scan(self, step_fn: StepFn, x_seq: Tensor, state: State, params: Any,
             memory: str = "default") -> tuple[Tensor, State]: ...


class BackendFallbackWarning(RuntimeWarning):
    """``backend="auto"`` ran the torch reference where a fused backend should have run."""


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
    items = [n if n.dtype == d else n.to(d) for n, d in zip(state, dtypes)]
    return type(state)(*items) if hasattr(state, "_fields") else tuple(items)


_BACKENDS: dict[str, Backend] = {"torch": TorchBackend()}
_AUTO_ORDER: list[str] = ["torch"]
_builtin_loaded = False


def _load_builtin() -> None:
    """Register the fused backends shipped with spikeforge (imported lazily: they import the neurons)."""
    global _builtin_loaded
    if not _builtin_loaded:
        _builtin_loaded = True
        import spikeforge.kernels  # noqa: F401  (registers "cpu", and "triton" when available)


def register_backend(backend: Backend, auto_priority: int | None = None) -> None:
    """Add a backend. With ``auto_priority`` it takes part in ``backend="auto"`` (lower runs first)."""
    _BACKENDS[backend.name] = backend
    if auto_priority is not None and backend.name not in _AUTO_ORDER:
        _AUTO_ORDER.insert(min(auto_priority, len(_AUTO_ORDER)), backend.name)


def available_backends() -> list[str]:
    """Names of the registered backends, the reference ``"torch"`` first."""
    _load_builtin()
    return ["torch", *sorted(n for n in _BACKENDS if n != "torch")]


_warned: set[tuple[str, str]] = set()


def resolve_backend(name: str, step_fn: StepFn, x_seq: Tensor, state: State, params: Any) -> Backend:
    """The backend that will run this call.

    An explicit name that cannot run the call raises, naming the reason; ``"auto"`` takes the first
    backend in priority order that can, and warns once per reason when it falls back to torch.
    """
    _load_builtin()
    if name != "auto":
        if name not in _BACKENDS:
            raise ValueError(f"unknown backend {name!r}; available: {available_backends()} or 'auto'")
        b = _BACKENDS[name]
        reason = b.why_not(step_fn, x_seq, state, params)
        if reason is not None:
            raise RuntimeError(f"backend {name!r} cannot run {getattr(step_fn, '__name__', step_fn)}: {reason}")
        return b
    reasons: list[str] = []
    for n in _AUTO_ORDER:
        b = _BACKENDS[n]
        if not b.handles(x_seq):
            continue
        reason = b.why_not(step_fn, x_seq, state, params)
        if reason is None:
            if n == "torch" and reasons:
                key = (getattr(step_fn, "__name__", "?"), "; ".join(reasons))
                if key not in _warned:
                    _warned.add(key)
                    warnings.warn(f"backend='auto' falls back to the torch reference loop: {key[1]}",
                                  BackendFallbackWarning, stacklevel=4)
            return b
        reasons.append(f"{n}: {reason}")
    raise AssertionError("the torch backend always runs")  # pragma: no cover


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
    b = resolve_backend(backend, step_fn, x_seq, st, params)
    return b.scan(step_fn, x_seq, st, params, memory)

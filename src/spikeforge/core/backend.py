"""Step functions and scan backends: the types every layer above shares, and the one backend registry.

A step function is pure, ``step_fn(x [B, ...], state, params) -> (spike [B, ...], state)``; a *backend*
runs it over the leading time axis of ``x_seq [T, B, ...]``. The reference backend (a Python loop, the
specification) lives with the neurons in ``spikeforge.neurons.scan``; the fused ones in
``spikeforge.kernels`` register here. Nothing in this module knows either.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Protocol

from torch import Tensor

State = tuple[Tensor, ...]
"""A neuron's state as the kernels see it: a tuple of tensors ``[B, ...]``, one per state variable."""
StepFn = Callable[..., tuple[Tensor, Any]]
"""A pure step function ``step(x, state, params) -> (spikes, new_state)`` on one time step ``[B, ...]``."""

__all__ = ["State", "StepFn", "Backend", "BackendFallbackWarning", "register_backend", "get_backend",
           "resolve_backend", "available_backends", "state_like"]


def state_like(state: Any, items: Any) -> Any:
    """``items`` as a state of ``state``'s kind: the same NamedTuple type, or a plain tuple."""
    return type(state)(*items) if hasattr(state, "_fields") else tuple(items)


class Backend(Protocol):
    """What a scan backend provides.

    ``handles`` says whether the backend is meant for this input at all (device, dtype family): when it
    is not, ``backend="auto"`` moves on silently. ``why_not`` returns ``None`` when it can run the call,
    else a reason; a backend that handles a floating-point input but cannot run it makes ``auto`` warn.
    For integer inputs (chip simulation) a decline is by design — a fused backend runs only the steps it
    can compute exactly — and the reference runs them without a warning.
    """

    name: str

    def handles(self, x_seq: Tensor) -> bool: ...

    def why_not(self, step_fn: StepFn, x_seq: Tensor, state: State, params: Any) -> str | None: ...

    def scan(self, step_fn: StepFn, x_seq: Tensor, state: State, params: Any,
             memory: str = "default") -> tuple[Tensor, State]: ...


class BackendFallbackWarning(RuntimeWarning):
    """``backend="auto"`` ran the reference loop where a fused backend should have run."""


_BACKENDS: dict[str, Backend] = {}
_AUTO_ORDER: list[str] = []
REFERENCE = "torch"


def register_backend(backend: Backend, auto_priority: int | None = None) -> None:
    """Add a backend. With ``auto_priority`` it takes part in ``backend="auto"`` (lower runs first; the
    reference ``"torch"`` registers last, so it always ends the order)."""
    _BACKENDS[backend.name] = backend
    if auto_priority is not None and backend.name not in _AUTO_ORDER:
        _AUTO_ORDER.insert(min(auto_priority, len(_AUTO_ORDER)), backend.name)
        if REFERENCE in _AUTO_ORDER:        # the reference always runs last
            _AUTO_ORDER.remove(REFERENCE)
            _AUTO_ORDER.append(REFERENCE)


def available_backends() -> list[str]:
    """Names of the registered backends, the reference ``"torch"`` first."""
    return [*([REFERENCE] if REFERENCE in _BACKENDS else []), *sorted(n for n in _BACKENDS if n != REFERENCE)]


def get_backend(name: str) -> Backend:
    """A registered backend by name; an unknown name raises ``ValueError`` listing the registered ones."""
    if name not in _BACKENDS:
        raise ValueError(f"unknown backend {name!r}; available: {available_backends()} or 'auto'")
    return _BACKENDS[name]


_warned: set[tuple[str, str]] = set()


def resolve_backend(name: str, step_fn: StepFn, x_seq: Tensor, state: State, params: Any) -> Backend:
    """The backend that will run this call.

    An explicit name that cannot run the call raises, naming the reason; ``"auto"`` takes the first
    backend in priority order that can, and warns once per reason when it falls back to the reference
    with a floating-point input (see ``Backend``).
    """
    if name != "auto":
        b = get_backend(name)
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
            if n == REFERENCE and reasons:
                key = (getattr(step_fn, "__name__", "?"), "; ".join(reasons))
                if key not in _warned:
                    _warned.add(key)
                    warnings.warn(f"backend='auto' falls back to the torch reference loop: {key[1]}",
                                  BackendFallbackWarning, stacklevel=4)
            return b
        if x_seq.dtype.is_floating_point:
            reasons.append(f"{n}: {reason}")
    raise RuntimeError(f"no registered backend can run {getattr(step_fn, '__name__', step_fn)} "
                       f"(registered: {available_backends()})")

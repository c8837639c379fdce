"""Trace a neuron's torch step function into an op list (``ir.Graph``).

The step function runs once on symbolic values (``Sym``): arithmetic operators and the supported
``torch`` functions record nodes instead of computing. Parameters are split by their Python type:

* ``float`` and ``Tensor`` fields become named inputs (``p.<field>``, ``p.surrogate.alpha``): *runtime*
  values — changing them never recompiles anything;
* ``int``, ``bool``, ``None``, strings and classes are *static*: they shape the graph (a soft reset, a
  detached reset, ``max_spikes``) and go into the compile key.

Any other torch op, or Python control flow on a traced value, raises ``KernelTraceError`` naming it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..surrogate import Surrogate
from .ir import Graph

__all__ = ["KernelTraceError", "Sym", "Traced", "trace_step", "flatten_params", "SUPPORTED"]

SUPPORTED = ("+ − × ÷, neg, exp, log, tanh, sigmoid, abs, pow by a scalar, minimum/maximum, clamp, where, "
             "comparisons, round/floor (and their straight-through versions), shift_right, detach, and the surrogate "
             "spike")


class KernelTraceError(TypeError):
    """The step function uses something the kernel generator cannot compile."""


class Sym:
    """A traced value: a node id in the tracer's graph. Mimics the slice of the Tensor API steps use."""

    __slots__ = ("g", "id")

    def __init__(self, g: Graph, node: int) -> None:
        self.g, self.id = g, node

    # -- helpers -------------------------------------------------------------------------------------
    def _lift(self, v: Any) -> int:
        if isinstance(v, Sym):
            return v.id
        if isinstance(v, bool):
            return self.g.const(v)
        if isinstance(v, (int, float)):
            return self.g.const(float(v))
        if isinstance(v, Tensor) and v.dim() == 0 and not v.requires_grad:
            return self.g.const(v.item())
        raise KernelTraceError(f"kernel generator: a {type(v).__name__} that is not a parameter of the step "
                               "appeared in the step function; pass it through the parameter record")

    def _op(self, op: str, *args: Any, attr: tuple[Any, ...] = ()) -> Sym:
        return Sym(self.g, self.g.add(op, tuple(self._lift(a) for a in args), attr))

    @property
    def is_bool(self) -> bool:
        return self.g.nodes[self.id].is_bool

    @property
    def dtype(self) -> torch.dtype:
        return torch.bool if self.is_bool else torch.float32

    def is_floating_point(self) -> bool:
        return not self.is_bool

    def __bool__(self) -> bool:
        raise KernelTraceError("kernel generator: Python control flow on a traced value (if/and/or/while on a "
                               "tensor) cannot be compiled; use torch.where")

    def __repr__(self) -> str:
        return f"Sym(%{self.id} = {self.g.nodes[self.id].op})"

    # -- operators -----------------------------------------------------------------------------------
    def __add__(self, o: Any) -> Sym: return self._op("add", self, o)
    def __radd__(self, o: Any) -> Sym: return self._op("add", o, self)
    def __sub__(self, o: Any) -> Sym: return self._op("sub", self, o)
    def __rsub__(self, o: Any) -> Sym: return self._op("sub", o, self)
    def __mul__(self, o: Any) -> Sym: return self._op("mul", self, o)
    def __rmul__(self, o: Any) -> Sym: return self._op("mul", o, self)
    def __truediv__(self, o: Any) -> Sym: return self._op("div", self, o)
    def __rtruediv__(self, o: Any) -> Sym: return self._op("rdiv", self, o)   # o / self, torch's recip·o
    def __neg__(self) -> Sym: return self._op("neg", self)
    def __abs__(self) -> Sym: return self._op("abs", self)
    def __lt__(self, o: Any) -> Sym: return self._op("lt", self, o)   # type: ignore[override]
    def __le__(self, o: Any) -> Sym: return self._op("le", self, o)   # type: ignore[override]
    def __gt__(self, o: Any) -> Sym: return self._op("gt", self, o)   # type: ignore[override]
    def __ge__(self, o: Any) -> Sym: return self._op("ge", self, o)   # type: ignore[override]
    def __eq__(self, o: Any) -> Sym: return self._op("eq", self, o)   # type: ignore[override]
    def __ne__(self, o: Any) -> Sym: return self._op("ne", self, o)   # type: ignore[override]
    def __and__(self, o: Any) -> Sym: return self._op("and", self, o)
    def __or__(self, o: Any) -> Sym: return self._op("or", self, o)
    def __invert__(self) -> Sym: return self._op("not", self)
    __hash__ = None  # type: ignore[assignment]

    def __pow__(self, o: Any) -> Sym:
        if isinstance(o, Sym) and not self._param_only(o):
            raise KernelTraceError("kernel generator: pow needs a scalar exponent (a constant or a parameter)")
        return self._op("pow", self, o)

    def _param_only(self, o: Sym) -> bool:
        names = {n for n in self.g.inputs if n == "x" or n.startswith("state")}
        return not self.g.depends_on(names)[o.id]

    # -- the Tensor methods step functions use ---------------------------------------------------------
    def detach(self) -> Sym: return self._op("detach", self)
    def exp(self) -> Sym: return self._op("exp", self)
    def log(self) -> Sym: return self._op("log", self)
    def tanh(self) -> Sym: return self._op("tanh", self)
    def sigmoid(self) -> Sym: return self._op("sigmoid", self)
    def abs(self) -> Sym: return self._op("abs", self)
    def square(self) -> Sym: return self._op("mul", self, self)

    def float(self) -> Sym:
        return self._op("float", self) if self.is_bool else self

    def to(self, dtype: Any = None, *a: Any, **k: Any) -> Sym:
        if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
            return self.float()
        if dtype is torch.bool:
            return self if self.is_bool else self._op("ne", self, 0.0)
        raise KernelTraceError(f"kernel generator: .to({dtype!r}) is not supported")

    def clamp(self, min: Any = None, max: Any = None) -> Sym:
        out = self if min is None else self._op("clamp_min", self, min)
        return out if max is None else out._op("clamp_max", out, max)

    # -- torch functions -------------------------------------------------------------------------------
    @classmethod
    def __torch_function__(cls, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", repr(func))
        first = next(a for a in (*args, *kwargs.values()) if isinstance(a, Sym))
        if name in ("round_ste", "floor_ste") and len(args) == 1:    # spikeforge.core.ste
            return first._op(name, args[0])
        if name == "shift_right" and len(args) == 2 and isinstance(args[1], int):
            return first._op("shr", args[0], attr=(args[1],))
        if name == "square" and len(args) == 1:
            return first._op("mul", args[0], args[0])
        if name in _UNARY_FUNCS and len(args) == 1 and not kwargs:
            return first._op(_UNARY_FUNCS[name], args[0])
        if name in ("minimum", "maximum", "pow", "add", "sub", "mul", "div", "true_divide") and len(args) == 2:
            op = {"true_divide": "div"}.get(name, name)
            if op == "pow":
                return Sym.__pow__(first._as(args[0]), args[1])
            return first._op(op, args[0], args[1])
        if name in ("clamp", "clip"):
            lo = kwargs.get("min", args[1] if len(args) > 1 else None)
            hi = kwargs.get("max", args[2] if len(args) > 2 else None)
            return first._as(args[0]).clamp(lo, hi)
        if name in ("clamp_min", "clamp_max") and len(args) == 2:
            return first._op(name, args[0], args[1])
        if name == "where" and len(args) == 3:
            return first._op("where", *args)
        if name in ("ones_like", "zeros_like"):
            return Sym(first.g, first.g.const(1.0 if name == "ones_like" else 0.0))
        if name == "full_like" and len(args) == 2:
            return Sym(first.g, first._lift(args[1]))
        raise KernelTraceError(f"kernel generator: torch.{name} is not supported in a step function "
                               f"(supported: {SUPPORTED})")

    def _as(self, v: Any) -> Sym:
        return v if isinstance(v, Sym) else Sym(self.g, self._lift(v))


_UNARY_FUNCS = {"exp": "exp", "log": "log", "tanh": "tanh", "sigmoid": "sigmoid", "abs": "abs", "neg": "neg",
                "negative": "neg", "round": "round", "floor": "floor", "reciprocal": "recip",
                "detach": "detach"}


class _TracedSurrogate:
    """Stands in for a surrogate while tracing: records a ``spike`` node with its parameters as inputs."""

    def __init__(self, sg: Surrogate, params: dict[str, Sym]) -> None:
        self.sg, self.params = sg, params

    def __call__(self, z: Any) -> Sym:
        if not isinstance(z, Sym):
            raise KernelTraceError("kernel generator: the surrogate was applied to an untraced value")
        args = (z, *self.params.values())
        return z._op("spike", *args, attr=(type(self.sg), self.sg.spiking, tuple(self.params)))


# -- parameter records: runtime values vs static choices -----------------------------------------------
def flatten_params(params: Any, prefix: str = "p") -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Split a parameter record into (static key, {name: runtime value}).

    Runtime: floats and tensors (also inside a surrogate or a nested dataclass). Static: everything else.
    """
    static: list[Any] = [type(params).__qualname__]
    values: dict[str, Any] = {}
    for f in dataclasses.fields(params):
        v = getattr(params, f.name)
        path = f"{prefix}.{f.name}"
        if isinstance(v, bool) or v is None or isinstance(v, (int, str)):
            static.append((path, v))
        elif isinstance(v, (float, Tensor)):
            values[path] = v
        elif isinstance(v, Surrogate):
            static.append((path, type(v).__module__ + "." + type(v).__qualname__, v.spiking))
            for k, pv in v.params().items():
                values[f"{path}.{k}"] = float(pv)
        elif dataclasses.is_dataclass(v) and not isinstance(v, type):
            s, vals = flatten_params(v, path)
            static.append((path, s))
            values.update(vals)
        else:
            raise KernelTraceError(f"kernel generator: parameter {path} of type {type(v).__name__} is neither "
                                   "a number, a tensor, a flag nor a surrogate")
    return tuple(static), values


def _symbolize(params: Any, g: Graph, prefix: str = "p") -> Any:
    """A copy of the record with every runtime field replaced by a named input (no __post_init__ runs)."""
    new = object.__new__(type(params))
    for f in dataclasses.fields(params):
        v = getattr(params, f.name)
        path = f"{prefix}.{f.name}"
        if isinstance(v, bool) or v is None or isinstance(v, (int, str)):
            out: Any = v
        elif isinstance(v, (float, Tensor)):
            out = Sym(g, g.input(path))
        elif isinstance(v, Surrogate):
            out = _TracedSurrogate(v, {k: Sym(g, g.input(f"{path}.{k}")) for k in v.params()})
        elif dataclasses.is_dataclass(v) and not isinstance(v, type):
            out = _symbolize(v, g, path)
        else:
            out = v
        object.__setattr__(new, f.name, out)
    return new


@dataclass
class Traced:
    """A traced step: the graph (inputs ``x``, ``state0``…, the parameters; outputs ``spike``, ``state0``…) and
    the number of state variables."""

    graph: Graph
    n_state: int


def trace_step(step_fn: Callable[..., Any], state: tuple[Tensor, ...], params: Any) -> Traced:
    """Run ``step_fn`` once on symbolic inputs ``x``, ``state0..k`` and the parameter record."""
    g = Graph()
    x = Sym(g, g.input("x"))
    syms: list[Any] = [Sym(g, g.input(f"state{i}")) for i in range(len(state))]
    st: Any = type(state)(*syms) if hasattr(state, "_fields") else tuple(syms)
    flatten_params(params)            # raises, naming the field, on a parameter of an unsupported type
    sym_params = _symbolize(params, g)
    spike, new_state = step_fn(x, st, sym_params)
    outs = [spike, *new_state]
    if len(new_state) != len(state):
        raise KernelTraceError(f"the step returned {len(new_state)} state tensors for {len(state)} inputs")
    for name, o in zip(["spike", *(f"state{i}" for i in range(len(state)))], outs):
        node = o.id if isinstance(o, Sym) else g.const(float(o))
        if isinstance(o, Sym) and o.is_bool:
            node = g.add("float", (node,))
        g.outputs[name] = node
    return Traced(g, len(state))

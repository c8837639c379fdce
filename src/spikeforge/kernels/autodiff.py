"""From a traced step to what a backend compiles: split, differentiate, lower.

1. ``split``: nodes that read only parameters form the *prologue*, evaluated once per call with the
   reference's own arithmetic (Python floats in double, tensors through torch, so with autograd); the
   values the per-element *body* reads from it become runtime inputs ``r0, r1, …``.
2. ``vjp``: the body's per-step vector–Jacobian product, derived by reverse mode over the op list with
   torch's own derivative conventions (clamp passes gradient on its bounds, ``maximum`` splits ties,
   ``abs'(0) = 0``); a spike contributes ``surrogate.grad_fn(z)``, itself traced.
3. ``lower``: spikes become ``Θ(z) = float(z >= 0)`` (or the surrogate's primitive in smooth mode), so
   backends see only plain arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..core.ste import floor_ste, round_ste, shift_right
from .ir import Graph
from .trace import KernelTraceError, Sym, Traced

__all__ = ["Split", "split", "vjp", "lower", "interpret"]


@dataclass
class Split:
    prologue: Graph           # outputs r0.. over the parameter inputs
    body: Graph               # inputs x, state*, r*; outputs spike, state*
    runtime: list[str]        # r-names in order
    n_state: int


def _copy(dst: Graph, src: Graph, ids: list[int], remap: dict[int, int]) -> None:
    for i in ids:
        n = src.nodes[i]
        remap[i] = dst.add(n.op, tuple(remap[a] for a in n.args), n.attr)


def split(tr: Traced) -> Split:
    g = tr.graph
    names = {"x", *(f"state{i}" for i in range(tr.n_state))}
    dep = g.depends_on(names)
    live = g.live()
    body_ids = [i for i in live if dep[i]]
    # parameter-side values the body reads (constants are copied, not passed)
    feeds = sorted({a for i in body_ids for a in g.nodes[i].args if not dep[a] and g.nodes[a].op != "const"})
    pro = Graph()
    remap: dict[int, int] = {}
    need = set(feeds)
    for i in range(max(feeds, default=-1), -1, -1):
        if i in need:
            need.update(g.nodes[i].args)
    _copy(pro, g, sorted(need), remap)
    runtime = [f"r{k}" for k in range(len(feeds))]
    for k, f in enumerate(feeds):
        pro.outputs[runtime[k]] = remap[f]
    body = Graph()
    bmap: dict[int, int] = {}
    for i in live:
        n = g.nodes[i]
        if i in feeds:
            bmap[i] = body.input(runtime[feeds.index(i)])
        elif n.op == "const" or dep[i]:
            bmap[i] = body.add(n.op, tuple(bmap[a] for a in n.args), n.attr)
    for name, node in g.outputs.items():
        body.outputs[name] = bmap[node] if node in bmap else body.const(0.0)
    return Split(pro, body, runtime, tr.n_state)


# -- reverse mode ---------------------------------------------------------------------------------------
def _grad_of_spike(b: Graph, node: Any, z: int, params: list[int]) -> int:
    cls, _spiking, names = node.attr
    out = cls.grad_fn(Sym(b, z), **{k: Sym(b, p) for k, p in zip(names, params)})
    return out.id if isinstance(out, Sym) else b.const(float(out))


def vjp(body: Graph, n_state: int, runtime: list[str], wrt_runtime: list[str]) -> Graph:
    """The backward step: inputs ``x, state*, r*, g.spike, g.state*``; outputs ``g.x, g.state*, g.r*``.

    The forward nodes are recomputed inside (the backend stores no intermediates but the state).
    """
    b = Graph()
    m: dict[int, int] = {}
    live = body.live()
    _copy(b, body, live, m)
    S = lambda i: Sym(b, i)  # noqa: E731
    adj: dict[int, int] = {}

    def acc(i: int, a: int) -> None:
        if body.nodes[i].op == "const" or body.nodes[i].is_bool:
            return
        adj[i] = b.add("add", (adj[i], a)) if i in adj else a

    acc(body.outputs["spike"], b.input("g.spike"))
    for k in range(n_state):
        acc(body.outputs[f"state{k}"], b.input(f"g.state{k}"))
    zero = b.const(0.0)
    for i in reversed(live):
        if i not in adj:
            continue
        n = body.nodes[i]
        a, out = S(adj[i]), S(m[i])
        args = [S(m[j]) for j in n.args]
        op = n.op
        if op == "add":
            acc(n.args[0], a.id)
            acc(n.args[1], a.id)
        elif op == "sub":
            acc(n.args[0], a.id)
            acc(n.args[1], (-a).id)
        elif op == "mul":
            acc(n.args[0], (a * args[1]).id)
            acc(n.args[1], (a * args[0]).id)
        elif op == "div":
            u, v = args
            acc(n.args[0], (a / v).id)
            acc(n.args[1], (-(a * u / (v * v))).id)
        elif op == "rdiv":           # out = c / u computed as recip(u) * c
            u, c = args
            r = S(b.add("recip", (u.id,)))
            acc(n.args[0], (-((a * c) * r * r)).id)
            acc(n.args[1], (a * r).id)
        elif op == "neg":
            acc(n.args[0], (-a).id)
        elif op == "exp":
            acc(n.args[0], (a * out).id)
        elif op == "log":
            acc(n.args[0], (a / args[0]).id)
        elif op == "tanh":
            acc(n.args[0], (a * (1.0 - out * out)).id)
        elif op == "sigmoid":
            acc(n.args[0], (a * (1.0 - out) * out).id)
        elif op == "recip":
            acc(n.args[0], (-(a * out * out)).id)
        elif op == "abs":
            u = args[0]
            neg_or_zero = b.add("where", ((u < 0.0).id, b.const(-1.0), zero))
            sgn = S(b.add("where", ((u > 0.0).id, b.const(1.0), neg_or_zero)))
            acc(n.args[0], (a * sgn).id)
        elif op == "pow":
            u, c = args
            d = S(b.add("where", ((c == 0.0).id, zero, (c * S(b.add("pow", (u.id, (c - 1.0).id)))).id)))
            acc(n.args[0], (a * d).id)
            if body.nodes[n.args[1]].op != "const":
                lg = S(b.add("where", (((u == 0.0) & (c >= 0.0)).id, zero, (out * S(b.add("log", (u.id,)))).id)))
                acc(n.args[1], (a * lg).id)
        elif op in ("minimum", "maximum"):
            u, v = args
            first = (u < v) if op == "minimum" else (u > v)
            second = (v < u) if op == "minimum" else (v > u)
            half = a * 0.5
            for j, mine in ((0, first), (1, second)):
                acc(n.args[j], b.add("where", (mine.id, a.id, b.add("where", ((u == v).id, half.id, zero)))))
        elif op in ("clamp_min", "clamp_max"):
            u, bound = args
            inside = (u >= bound) if op == "clamp_min" else (u <= bound)
            acc(n.args[0], b.add("where", (inside.id, a.id, zero)))
            acc(n.args[1], b.add("where", (inside.id, zero, a.id)))
        elif op == "where":
            c, u, v = args
            acc(n.args[1], b.add("where", (c.id, a.id, zero)))
            acc(n.args[2], b.add("where", (c.id, zero, a.id)))
        elif op in ("round_ste", "floor_ste"):
            acc(n.args[0], a.id)
        elif op == "shr":                 # floor_ste(u · 2^-k): straight through the floor
            acc(n.args[0], (a * (2.0 ** -n.attr[0])).id)
        elif op == "spike":
            z, *ps = n.args
            acc(z, (a * S(_grad_of_spike(b, n, m[z], [m[p] for p in ps]))).id)
        elif op in ("round", "floor", "detach", "float", "input", "const") or n.is_bool:
            pass
        else:  # pragma: no cover - every op of ir.OPS is handled above
            raise KernelTraceError(f"no derivative rule for op {op!r}")
    inputs = body.inputs
    b.outputs["g.x"] = adj.get(inputs["x"], zero) if "x" in inputs else zero
    for k in range(n_state):
        b.outputs[f"g.state{k}"] = adj.get(inputs.get(f"state{k}", -1), zero)
    for rname in wrt_runtime:
        b.outputs[f"g.{rname}"] = adj.get(inputs.get(rname, -1), zero)
    return b


def lower(g: Graph) -> Graph:
    """Replace ``spike`` nodes by ``float(z >= 0)`` (or the primitive in smooth mode); drop detach."""
    out = Graph()
    m: dict[int, int] = {}
    for i in g.live():
        n = g.nodes[i]
        if n.op == "spike":
            cls, spiking, names = n.attr
            z = m[n.args[0]]
            if spiking:
                m[i] = out.add("float", (out.add("ge", (z, out.const(0.0))),))
            else:
                prim = cls.primitive_fn(Sym(out, z), **{k: Sym(out, m[p]) for k, p in zip(names, n.args[1:])})
                m[i] = prim.id if isinstance(prim, Sym) else out.const(float(prim))
        elif n.op == "detach":
            m[i] = m[n.args[0]]
        else:
            m[i] = out.add(n.op, tuple(m[a] for a in n.args), n.attr)
    out.outputs = {k: m[v] for k, v in g.outputs.items()}
    return out


# -- the reference semantics of every op, for the prologue and for self-checks ---------------------------
def _is_t(v: Any) -> bool:
    return isinstance(v, Tensor)


def _torch_or_math(name: str) -> Any:
    return lambda a: getattr(torch, name)(a[0]) if _is_t(a[0]) else getattr(math, name)(a[0])


def _ste(name: str) -> Any:
    def f(a: list[Any]) -> Any:
        if not _is_t(a[0]):
            return _REF[name[:-4]](a)
        return (round_ste if name == "round_ste" else floor_ste)(a[0])
    return f


def _shr(a: list[Any], attr: tuple[Any, ...]) -> Any:
    return shift_right(a[0], attr[0]) if _is_t(a[0]) else float(math.floor(a[0] * 2.0 ** -attr[0]))


def _minmax(name: str) -> Any:
    def f(a: list[Any]) -> Any:
        if _is_t(a[0]) or _is_t(a[1]):
            return getattr(torch, name)(torch.as_tensor(a[0]), torch.as_tensor(a[1]))
        return min(a) if name == "minimum" else max(a)
    return f


# each op with the arithmetic the reference step itself would use (Python numbers, or torch tensors)
_REF: dict[str, Any] = {
    "add": lambda a: a[0] + a[1], "sub": lambda a: a[0] - a[1], "mul": lambda a: a[0] * a[1],
    "div": lambda a: a[0] / a[1], "rdiv": lambda a: a[1] / a[0], "neg": lambda a: -a[0],
    "abs": lambda a: abs(a[0]), "pow": lambda a: a[0] ** a[1],
    "recip": lambda a: torch.reciprocal(a[0]) if _is_t(a[0]) else 1.0 / a[0],
    "exp": _torch_or_math("exp"), "log": _torch_or_math("log"), "tanh": _torch_or_math("tanh"),
    "sigmoid": lambda a: torch.sigmoid(a[0]) if _is_t(a[0]) else 1.0 / (1.0 + math.exp(-a[0])),
    "round": lambda a: torch.round(a[0]) if _is_t(a[0]) else float(round(a[0])),
    "floor": lambda a: torch.floor(a[0]) if _is_t(a[0]) else float(math.floor(a[0])),
    "round_ste": _ste("round_ste"), "floor_ste": _ste("floor_ste"),
    "detach": lambda a: a[0].detach() if _is_t(a[0]) else a[0],
    "float": lambda a: a[0].float() if _is_t(a[0]) else float(a[0]),
    "minimum": _minmax("minimum"), "maximum": _minmax("maximum"),
    "clamp_min": lambda a: torch.clamp(a[0], min=a[1]) if _is_t(a[0]) else max(a[0], a[1]),
    "clamp_max": lambda a: torch.clamp(a[0], max=a[1]) if _is_t(a[0]) else min(a[0], a[1]),
    "where": lambda a: torch.where(a[0], a[1], a[2]),
    "lt": lambda a: a[0] < a[1], "le": lambda a: a[0] <= a[1], "gt": lambda a: a[0] > a[1],
    "ge": lambda a: a[0] >= a[1], "eq": lambda a: a[0] == a[1], "ne": lambda a: a[0] != a[1],
    "and": lambda a: a[0] & a[1], "or": lambda a: a[0] | a[1], "not": lambda a: ~a[0],
}


def _apply(op: str, a: list[Any], attr: tuple[Any, ...]) -> Any:
    if op == "shr":
        return _shr(a, attr)
    if op == "spike":
        cls, spiking, names = attr
        sg = cls(**dict(zip(names, (float(v) for v in a[1:]))), spiking=spiking)
        return sg(a[0])
    if op not in _REF:  # pragma: no cover
        raise KernelTraceError(f"no reference semantics for op {op!r}")
    return _REF[op](a)


def interpret(g: Graph, values: dict[str, Any], outputs: list[str] | None = None) -> dict[str, Any]:
    """Evaluate the graph with the reference's arithmetic (Python numbers, or torch with autograd)."""
    val: dict[int, Any] = {}
    for i in g.live():
        n = g.nodes[i]
        if n.op == "input":
            val[i] = values[n.attr[0]]
        elif n.op == "const":
            val[i] = n.attr[0]
        else:
            val[i] = _apply(n.op, [val[j] for j in n.args], n.attr)
    keys = outputs if outputs is not None else list(g.outputs)
    return {k: val[g.outputs[k]] for k in keys}

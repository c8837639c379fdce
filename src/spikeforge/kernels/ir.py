"""The backend-neutral op list a step function is traced into.

A ``Graph`` is a list of SSA ``Node``s: leaves (named inputs, constants) and elementwise ops over one
neuron at one time step. Backends (the LLVM CPU backend, Triton) consume only this list; nothing about
a particular neuron lives in ``kernels/``.

Values are float (the neuron's dtype) or bool (comparisons). Every op is elementwise; a "scalar" input
is broadcast. The op table below is the whole vocabulary; anything else fails at trace time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Node", "Graph", "OPS", "BOOL_OPS", "UNARY", "BINARY"]

UNARY = {"neg", "exp", "log", "tanh", "sigmoid", "abs", "recip", "round", "floor", "round_ste", "floor_ste",
         "shr", "detach", "float", "not"}      # shr: ⌊x / 2^k⌋ with k = attr[0] (spikeforge.core.shift_right)
BINARY = {"add", "sub", "mul", "div", "rdiv", "minimum", "maximum", "clamp_min", "clamp_max", "pow",
          "lt", "le", "gt", "ge", "eq", "ne", "and", "or"}
OTHER = {"input", "const", "where", "spike"}
OPS = UNARY | BINARY | OTHER
BOOL_OPS = {"lt", "le", "gt", "ge", "eq", "ne", "and", "or", "not"}


@dataclass(frozen=True)
class Node:
    """One SSA value. ``args`` are node ids; ``attr`` holds what is not a value (an input's name, a constant,
    the surrogate of a spike)."""

    op: str
    args: tuple[int, ...] = ()
    attr: tuple[Any, ...] = ()

    @property
    def is_bool(self) -> bool:
        return self.op in BOOL_OPS or (self.op == "const" and isinstance(self.attr[0], bool))


@dataclass
class Graph:
    """An op list with hash-consing (identical nodes are stored once) and named inputs/outputs."""

    nodes: list[Node] = field(default_factory=list)
    outputs: dict[str, int] = field(default_factory=dict)
    _index: dict[Node, int] = field(default_factory=dict, repr=False)

    def add(self, op: str, args: tuple[int, ...] = (), attr: tuple[Any, ...] = ()) -> int:
        if op not in OPS:
            raise ValueError(f"unknown op {op!r}")
        if op == "add" and len(args) == 2:
            # a + (−b) is a − b, bit for bit (negation is exact): one instruction fewer per element
            for a, b in ((args[0], args[1]), (args[1], args[0])):
                if self.nodes[b].op == "neg":
                    return self.add("sub", (a, self.nodes[b].args[0]))
        node = Node(op, tuple(args), tuple(attr))
        if node in self._index:
            return self._index[node]
        self.nodes.append(node)
        self._index[node] = len(self.nodes) - 1
        return len(self.nodes) - 1

    def input(self, name: str) -> int:
        return self.add("input", (), (name,))

    def const(self, value: float | bool) -> int:
        v: float | bool = value if isinstance(value, bool) else float(value)
        return self.add("const", (), (v,))

    @property
    def inputs(self) -> dict[str, int]:
        return {n.attr[0]: i for i, n in enumerate(self.nodes) if n.op == "input"}

    def live(self) -> list[int]:
        """Ids of the nodes the outputs depend on, in order."""
        need = set(self.outputs.values())
        for i in range(len(self.nodes) - 1, -1, -1):
            if i in need:
                need.update(self.nodes[i].args)
        return sorted(need)

    def depends_on(self, names: set[str]) -> list[bool]:
        """For every node: does it (transitively) read one of the named inputs?"""
        dep = []
        for n in self.nodes:
            if n.op == "input":
                dep.append(n.attr[0] in names)
            else:
                dep.append(any(dep[a] for a in n.args))
        return dep

    def digest(self) -> str:
        """A stable hash of the live op list (the compile-cache key)."""
        h = hashlib.sha256()
        for i in self.live():
            n = self.nodes[i]
            h.update(f"{i}:{n.op}:{n.args}:{_attr_key(n.attr)};".encode())
        h.update(repr(sorted(self.outputs.items())).encode())
        return h.hexdigest()[:24]


def _attr_key(attr: tuple[Any, ...]) -> str:
    def one(a: Any) -> str:
        if isinstance(a, type):
            return f"{a.__module__}.{a.__qualname__}"
        if isinstance(a, tuple):
            return "(" + _attr_key(a) + ")"
        return repr(a) if isinstance(a, (str, float, int, bool)) else type(a).__name__
    return ",".join(one(a) for a in attr)

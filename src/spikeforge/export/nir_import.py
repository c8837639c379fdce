"""``nir.NIRGraph`` → a spikeforge module over time-first tensors ``[T, B, ...]``.

Each NIR node becomes a spikeforge module (stateless ones inside ``TimeFold``, neurons as multi-step
neurons); ``NIRNet`` runs them in a topological order, each on the sum of what its incoming edges carry,
a whole sequence per node. A graph with cycles through neurons (recurrence) runs step by step instead,
each recurrent edge carrying the previous step's output; a cycle through no neuron is refused, naming it.
Nested graphs (how peers write recurrent layers) are inlined.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..layers import TimeFold
from .nir_params import NIRImportError, cubalif_from_nir, if_from_nir, li_from_nir, lif_from_nir, require_nir

__all__ = ["from_nir", "NIRNet", "Scale"]


class Scale(nn.Module):
    """Multiply the input by a constant (NIR's ``r`` where no neuron form absorbs it, or ``nir.Scale``)."""

    scale: Tensor

    def __init__(self, scale: Tensor | float) -> None:
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


class NIRNet(nn.Module):
    """A NIR graph as a spikeforge module: ``forward(x_seq [T, B, ...]) -> [T, B, ...]``.

    ``names`` maps each module key to its NIR node name, ``order`` is the evaluation order, ``inputs`` the
    incoming edges of every node and ``recurrent`` the edges that close a cycle. Without cycles each node
    runs over the whole sequence; with them the graph runs step by step, a recurrent edge carrying its
    source's output of the previous step (nothing at the first step).
    """

    def __init__(self, modules: dict[str, nn.Module], names: dict[str, str], order: list[str],
                 inputs: dict[str, list[str]], graph_input: str, graph_output: str,
                 recurrent: list[tuple[str, str]] | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleDict(modules)
        self.names, self.order, self.inputs = names, order, inputs
        self.graph_input, self.graph_output = graph_input, graph_output
        self.recurrent = list(recurrent or [])

    def _run_node(self, key: str, x: Tensor) -> Tensor:
        if key not in self.layers:
            return x
        try:
            return self.layers[key](x)
        except (RuntimeError, ValueError) as e:
            raise NIRImportError(f"{self.names[key]}: its input of shape {tuple(x.shape)} [T, B, ...] does not "
                                 f"fit the node ({str(e).splitlines()[0]})") from None

    @staticmethod
    def _sum(parts: list[Tensor]) -> Tensor:
        x = parts[0]
        for p in parts[1:]:
            x = x + p
        return x

    def forward(self, x_seq: Tensor) -> Tensor:
        if self.recurrent:
            return self._forward_steps(x_seq)
        values: dict[str, Tensor] = {self.graph_input: x_seq}
        for key in self.order:
            if key != self.graph_input:
                values[key] = self._run_node(key, self._sum([values[s] for s in self.inputs[key]]))
        return values[self.graph_output]

    def _forward_steps(self, x_seq: Tensor) -> Tensor:
        back = {(a, b) for a, b in self.recurrent}
        states: dict[str, Any] = {}
        prev: dict[str, Tensor] = {}
        outs = []
        for x_t in x_seq:
            values: dict[str, Tensor] = {self.graph_input: x_t.unsqueeze(0)}
            for key in self.order:
                if key == self.graph_input:
                    continue
                parts = [values[s] for s in self.inputs[key] if (s, key) not in back and s in values]
                parts += [prev[s] for s in self.inputs[key] if (s, key) in back and s in prev]
                if parts:               # at the first step a node fed only by recurrent edges has no input yet
                    values[key] = self._step(key, self._sum(parts), states)
            prev = values
            outs.append(values[self.graph_output][0])
        return torch.stack(outs)

    def _step(self, key: str, x: Tensor, states: dict[str, Any]) -> Tensor:
        """One step of node ``key`` on ``x [1, B, ...]``, keeping a neuron's state between steps."""
        m: Any = self.layers[key] if key in self.layers else None
        chain: list[Any] = list(m) if isinstance(m, nn.Sequential) and not isinstance(m, TimeFold) else [m]
        if not any(hasattr(c, "run") for c in chain):
            return self._run_node(key, x)
        for c in chain:
            if hasattr(c, "run"):
                x, states[key] = c.run(x, states.get(key))
            else:
                x = c(x)
        return x


def _key(name: str, used: set[str]) -> str:
    """A module key for a NIR node name: prefixed, so no name (``train``, ``forward``, ``keys`` …) can shadow
    an attribute of the module that holds it."""
    key = "node_" + re.sub(r"\W", "_", name)
    while key in used:
        key += "_"
    used.add(key)
    return key


def _order(names: list[str], edges: list[tuple[str, str]], roots: list[str],
           stateful: set[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """The recurrent edges and a topological order of the rest.

    An edge is recurrent when it leaves a neuron for a node in the same strongly connected component: it
    carries that neuron's output of the previous step (the convention of recurrent SNN layers, whatever the
    edges' order in the file). What remains must be acyclic, or some cycle passes through no neuron and has
    no state to carry it.
    """
    succ: dict[str, list[str]] = {n: [] for n in names}
    for a, b in edges:
        for end in (a, b):
            if end not in succ:
                raise NIRImportError(f"edge {a!r} -> {b!r}: no node named {end!r} in the graph")
        succ[a].append(b)
    comp = {n: i for i, c in enumerate(_strong_components(names, succ)) for n in c}
    back = [(a, b) for a, b in edges if a in stateful and comp[a] == comp[b]]
    fsucc: dict[str, list[str]] = {n: [] for n in names}
    indeg = dict.fromkeys(names, 0)
    for a, b in edges:
        if (a, b) not in back:
            fsucc[a].append(b)
            indeg[b] += 1
    ready = [n for n in names if indeg[n] == 0]
    order = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in fsucc[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    if len(order) < len(names):
        cyc = sorted(next(c for c in _strong_components(names, fsucc) if len(c) > 1 or c[0] in fsucc[c[0]]))
        raise NIRImportError(f"the graph has a cycle without state through {cyc[:6]}: each node on it would "
                             "need its own output of the same step")
    seen, todo = set(roots), list(roots)
    while todo:
        for m in succ[todo.pop()]:
            if m not in seen:
                seen.add(m)
                todo.append(m)
    unreached = [n for n in names if n not in seen]
    if unreached:
        raise NIRImportError(f"{unreached[0]}: the node is not reachable from the graph's input")
    return order, back


def _strong_components(names: list[str], succ: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components (iterative): every cycle lies inside one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    comps: list[list[str]] = []
    counter = 0
    for root in names:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            n, i = work.pop()
            if i == 0:
                index[n] = low[n] = counter
                counter += 1
                stack.append(n)
                on.add(n)
            if i < len(succ[n]):
                work.append((n, i + 1))
                m = succ[n][i]
                if m not in index:
                    work.append((m, 0))
                elif m in on:
                    low[n] = min(low[n], index[m])
                continue
            if low[n] == index[n]:
                comp = []
                while True:
                    m = stack.pop()
                    on.discard(m)
                    comp.append(m)
                    if m == n:
                        break
                comps.append(comp)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[n])
    return comps


def _flatten(graph: Any) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The graph's nodes and edges with every nested ``NIRGraph`` node inlined (names ``outer.inner``; an
    edge into the nested node goes to its ``Input``, an edge out of it leaves its ``Output``)."""
    import nir

    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    ports: dict[str, tuple[str, str]] = {}
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            inner, inner_edges = _flatten(node)
            ins = [n for n, v in inner.items() if isinstance(v, nir.Input)]
            outs = [n for n, v in inner.items() if isinstance(v, nir.Output)]
            if len(ins) != 1 or len(outs) != 1:
                raise NIRImportError(f"{name}: a nested graph with {len(ins)} inputs and {len(outs)} outputs; "
                                     "one of each is imported")
            for n, v in inner.items():
                nodes[f"{name}.{n}"] = v
            edges += [(f"{name}.{a}", f"{name}.{b}") for a, b in inner_edges]
            ports[name] = (f"{name}.{ins[0]}", f"{name}.{outs[0]}")
        else:
            nodes[name] = node
    for a, b in graph.edges:
        a = ports[a][1] if a in ports else a
        b = ports[b][0] if b in ports else b
        edges.append((a, b))
    return nodes, edges


def _two(a: Any) -> tuple[int, int]:
    v = np.broadcast_to(np.asarray(a), 2)
    return int(v[0]), int(v[1])


def _module(name: str, node: Any, dt: float, neuron_kw: dict[str, Any]) -> nn.Module | None:
    import nir

    def t(a: Any) -> Tensor:
        return torch.as_tensor(np.asarray(a), dtype=torch.float32)

    def scaled(neuron: nn.Module, s: float) -> nn.Module:
        return neuron if s == 1.0 else nn.Sequential(Scale(s), neuron)

    if isinstance(node, (nir.Input, nir.Output)):
        return None
    if isinstance(node, nir.LIF):
        return scaled(*lif_from_nir(node, dt, name, **neuron_kw))
    if isinstance(node, nir.IF):
        return scaled(*if_from_nir(node, dt, name, **neuron_kw))
    if isinstance(node, nir.CubaLIF):
        return scaled(*cubalif_from_nir(node, dt, name, **neuron_kw))
    if isinstance(node, nir.LI):
        return scaled(*li_from_nir(node, dt, name))
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = t(node.weight)
        if w.dim() != 2:
            raise NIRImportError(f"{name}: weight of shape {tuple(w.shape)}, expected [out, in]")
        lin = nn.Linear(w.shape[1], w.shape[0], bias=isinstance(node, nir.Affine))
        with torch.no_grad():
            lin.weight.copy_(w)
            if isinstance(node, nir.Affine):
                b = t(node.bias)
                if b.shape != (w.shape[0],):
                    raise NIRImportError(f"{name}: bias of shape {tuple(b.shape)}, expected ({w.shape[0]},)")
                lin.bias.copy_(b)
        return TimeFold(lin)
    if isinstance(node, nir.Conv2d):
        w = t(node.weight)
        if w.dim() != 4:
            raise NIRImportError(f"{name}: Conv2d weight of shape {tuple(w.shape)}, expected [out, in/groups, kh, kw]")
        pad: str | tuple[int, int] = node.padding if isinstance(node.padding, str) else _two(node.padding)
        conv = nn.Conv2d(w.shape[1] * int(node.groups), w.shape[0], _two(w.shape[2:]), stride=_two(node.stride),
                         padding=pad, dilation=_two(node.dilation), groups=int(node.groups))
        with torch.no_grad():
            conv.weight.copy_(w)
            conv.bias.copy_(t(node.bias) if np.size(node.bias) == w.shape[0] else torch.zeros(w.shape[0]))  # type: ignore[union-attr]
        return TimeFold(conv)
    if isinstance(node, nir.Conv1d):
        w = t(node.weight)
        conv1 = nn.Conv1d(w.shape[1] * int(node.groups), w.shape[0], int(w.shape[2]), stride=int(node.stride),
                          padding=node.padding if isinstance(node.padding, str) else int(node.padding),
                          dilation=int(node.dilation), groups=int(node.groups))
        with torch.no_grad():
            conv1.weight.copy_(w)
            conv1.bias.copy_(t(node.bias) if np.size(node.bias) == w.shape[0] else torch.zeros(w.shape[0]))  # type: ignore[union-attr]
        return TimeFold(conv1)
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        k, s, p = _two(node.kernel_size), _two(node.stride), _two(node.padding)
        return TimeFold(nn.AvgPool2d(k, s, p, divisor_override=1 if isinstance(node, nir.SumPool2d) else None))
    if isinstance(node, nir.Flatten):
        start = node.start_dim + 1 if node.start_dim >= 0 else node.start_dim     # NIR types have no batch
        end = node.end_dim + 1 if node.end_dim >= 0 else node.end_dim
        return TimeFold(nn.Flatten(start, end))
    if isinstance(node, nir.Scale):
        return Scale(t(node.scale))
    raise NIRImportError(f"{name}: NIR node type {type(node).__name__} is not imported (supported: Input, Output, "
                         "Affine, Linear, Conv1d, Conv2d, AvgPool2d, SumPool2d, Flatten, Scale, IF, LIF, CubaLIF, LI)")


def from_nir(graph: Any, dt: float = 1e-3, **neuron_kw: Any) -> NIRNet:
    """A spikeforge module that runs ``graph`` (a ``nir.NIRGraph``, or the path of a ``.nir`` file).

    Args:
        graph: the graph, or a file path read with ``nir.read``.
        dt: the time step in seconds the graph is simulated with (the inverse of ``to_nir``'s ``dt``).
        **neuron_kw: passed to every neuron (e.g. ``surrogate=``, ``backend=``, ``detach_reset=``).

    Raises:
        NIRImportError: naming the node (or edge) that cannot be run as it means: unknown node types,
            per-neuron parameters that differ within a layer, ``v_leak ≠ v_reset``, cycles, bad shapes.
    """
    nir = require_nir()
    if not dt > 0:
        raise ValueError(f"dt must be > 0 seconds, got {dt}")
    if not isinstance(graph, nir.NIRGraph):
        path = str(graph)
        try:
            graph = nir.read(path)
        except FileNotFoundError:
            raise NIRImportError(f"{path}: no such file") from None
        except Exception as e:
            raise NIRImportError(f"{path}: not a readable NIR file ({type(e).__name__}: {e})") from e
    nodes, edges = _flatten(graph)
    names = list(nodes)
    ins = [n for n in graph.nodes if isinstance(graph.nodes[n], nir.Input)]
    outs = [n for n in graph.nodes if isinstance(graph.nodes[n], nir.Output)]
    if len(ins) != 1 or len(outs) != 1:
        raise NIRImportError(f"the graph has {len(ins)} Input and {len(outs)} Output nodes; one of each is imported")
    stateful = {n for n, v in nodes.items() if isinstance(v, (nir.LIF, nir.IF, nir.CubaLIF, nir.LI))}
    order, back = _order(names, edges, ins, stateful)
    used: set[str] = set()
    keys = {n: _key(n, used) for n in names}
    modules: dict[str, nn.Module] = {}
    inputs: dict[str, list[str]] = {keys[n]: [] for n in names}
    for a, b in edges:
        inputs[keys[b]].append(keys[a])
    for n in names:
        if n not in ins and not inputs[keys[n]]:
            raise NIRImportError(f"{n}: the node has no incoming edge")
        m = _module(n, nodes[n], dt, neuron_kw)
        if m is not None:
            modules[keys[n]] = m
    net = NIRNet(modules, {keys[n]: n for n in names}, [keys[n] for n in order], inputs, keys[ins[0]],
                 keys[outs[0]], [(keys[a], keys[b]) for a, b in back])
    shape = getattr(graph.nodes[ins[0]], "input_type", {}).get("input")
    if shape is not None and np.size(shape) and np.all(np.asarray(shape) > 0):
        with torch.no_grad():                      # a dry run names the first node whose shapes do not fit
            net(torch.zeros((1, 1, *(int(d) for d in np.asarray(shape).ravel()))))
    return net

"""``nir.NIRGraph`` → a spikeforge module over time-first tensors ``[T, B, ...]``.

Each NIR node becomes a spikeforge module (stateless ones inside ``TimeFold``, neurons as multi-step
neurons); ``NIRNet`` runs them in a topological order, each on the sum of what its incoming edges carry,
a whole sequence per node. That is exact for graphs without cycles; a graph with a cycle (recurrence) is
refused, naming the nodes on it.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..layers import TimeFold
from .nir_params import NIRImportError, cubalif_from_nir, if_from_nir, li_from_nir, lif_from_nir

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

    ``nodes`` maps each module key to its NIR node name, ``order`` is the evaluation order and ``inputs``
    the incoming edges of every node.
    """

    def __init__(self, modules: dict[str, nn.Module], names: dict[str, str], order: list[str],
                 inputs: dict[str, list[str]], graph_input: str, graph_output: str) -> None:
        super().__init__()
        self.layers = nn.ModuleDict(modules)
        self.names, self.order, self.inputs = names, order, inputs
        self.graph_input, self.graph_output = graph_input, graph_output

    def forward(self, x_seq: Tensor) -> Tensor:
        values: dict[str, Tensor] = {self.graph_input: x_seq}
        for key in self.order:
            if key == self.graph_input:
                continue
            srcs = self.inputs[key]
            x = values[srcs[0]]
            for s in srcs[1:]:
                x = x + values[s]
            values[key] = self.layers[key](x) if key in self.layers else x
        return values[self.graph_output]


def _key(name: str, used: set[str]) -> str:
    key = re.sub(r"\W", "_", name) or "node"
    while key in used or key[0].isdigit():
        key = f"n_{key}"
    used.add(key)
    return key


def _order(names: list[str], edges: list[tuple[str, str]]) -> list[str]:
    preds: dict[str, list[str]] = {n: [] for n in names}
    succ: dict[str, list[str]] = {n: [] for n in names}
    for a, b in edges:
        for end in (a, b):
            if end not in preds:
                raise NIRImportError(f"edge {a!r} -> {b!r}: no node named {end!r} in the graph")
        preds[b].append(a)
        succ[a].append(b)
    indeg = {n: len(p) for n, p in preds.items()}
    ready = [n for n in names if indeg[n] == 0]
    order = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in succ[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    if len(order) < len(names):
        cyc = sorted(n for n in names if indeg[n] > 0)
        raise NIRImportError(f"the graph has a cycle through {cyc[:6]}{' …' if len(cyc) > 6 else ''}: recurrent "
                             "NIR graphs are not imported (spikeforge runs each node over the whole sequence)")
    return order


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
    import nir

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
    names = list(graph.nodes)
    order = _order(names, list(graph.edges))
    ins = [n for n in names if isinstance(graph.nodes[n], nir.Input)]
    outs = [n for n in names if isinstance(graph.nodes[n], nir.Output)]
    if len(ins) != 1 or len(outs) != 1:
        raise NIRImportError(f"the graph has {len(ins)} Input and {len(outs)} Output nodes; one of each is imported")
    used: set[str] = set()
    keys = {n: _key(n, used) for n in names}
    modules: dict[str, nn.Module] = {}
    inputs: dict[str, list[str]] = {keys[n]: [] for n in names}
    for a, b in graph.edges:
        inputs[keys[b]].append(keys[a])
    for n in names:
        if n not in ins and not inputs[keys[n]]:
            raise NIRImportError(f"{n}: the node has no incoming edge")
        if isinstance(graph.nodes[n], nir.NIRGraph):
            raise NIRImportError(f"{n}: nested NIR graphs are not imported")
        m = _module(n, graph.nodes[n], dt, neuron_kw)
        if m is not None:
            modules[keys[n]] = m
    return NIRNet(modules, {keys[n]: n for n in names}, [keys[n] for n in order], inputs, keys[ins[0]], keys[outs[0]])

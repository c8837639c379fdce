"""Where a neuron's spikes go: the synaptic layers that can carry its threshold in their weights.

Rate-coded methods (DSR, ANN→SNN conversion) give a layer's spikes the value ``V_th·S``. The spikes stay
0/1 when ``V_th`` is folded into the weights of every synaptic layer (``Linear``, ``Conv``) the spikes
reach — through the operations that commute with a positive scale: reshapes, flattening, average and
max pooling, dropout. ``spike_consumers(model)`` follows each neuron's output through the model's
``torch.fx`` graph and groups the neurons whose spikes meet before a synapse (SEW ADD sums two neurons'
spikes; both must then share one threshold). A group whose spikes reach anything else — a sum with a real
value (plain Spiking ResNet adds spikes to a BN output), a neuron, the model's output, a product — cannot
be folded: its neurons emit ``V_th·S`` themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import fx, nn

from ..layers import SeqDropout
from ..models.fx import trace

__all__ = ["FoldPlan", "spike_consumers", "SYNAPTIC", "SCALE_TRANSPARENT"]

SYNAPTIC: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""Layers whose weight can carry the threshold of the spikes they receive."""

SCALE_TRANSPARENT: tuple[type[nn.Module], ...] = (
    nn.Flatten, nn.Unflatten, nn.Identity, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, SeqDropout)
"""Modules that commute with a positive scale: ``m(c·x) = c·m(x)`` for ``c > 0``."""

_VIEW_METHODS = {"flatten", "unflatten", "reshape", "view", "permute", "transpose", "contiguous", "unsqueeze",
                 "squeeze", "clone"}
_NOT_A_USE = {"size", "dim"}


@dataclass
class FoldPlan:
    """How the thresholds of a model's neurons reach the weights.

    Attributes:
        groups: lists of neuron names whose spikes are summed before a synapse; each group shares one
            threshold and is folded into ``consumers[i]`` (names of synaptic modules).
        consumers: per group, the synaptic modules whose weight carries the group's threshold.
        emit: neurons that cannot be folded and emit ``V_th·S``, with the reason.
    """

    groups: list[list[str]] = field(default_factory=list)
    consumers: list[list[str]] = field(default_factory=list)
    emit: dict[str, str] = field(default_factory=dict)


def _module_target(gm: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    return gm.get_submodule(str(node.target)) if node.op == "call_module" else None


def spike_consumers(model: nn.Module, neurons: dict[str, nn.Module]) -> FoldPlan:
    """Follow the spikes of ``neurons`` (name → module, names as ``model.named_modules``) through the fx
    graph of ``model`` and plan the fold (see the module docstring)."""
    gm = trace(model)
    src: dict[fx.Node, frozenset[str]] = {}
    bad: dict[str, str] = {}
    uses: dict[str, list[frozenset[str]]] = {}     # synaptic module → the neuron sets it receives

    def mark(names: frozenset[str], why: str) -> None:
        for n in names:
            bad.setdefault(n, why)

    def tensor_args(node: fx.Node) -> list[fx.Node]:
        return [a for a in node.all_input_nodes if a in src]

    for node in gm.graph.nodes:
        ins = tensor_args(node)
        got = frozenset().union(*(src[a] for a in ins)) if ins else frozenset()
        mod = _module_target(gm, node)
        if node.op == "placeholder":
            src[node] = frozenset()
        elif node.op == "output":
            mark(got, "its spikes are the model's output")
        elif node.op == "call_module" and str(node.target) in neurons:
            mark(got, f"its spikes feed the neuron {node.target} directly")
            src[node] = frozenset({str(node.target)})
        elif mod is not None and isinstance(mod, SYNAPTIC):
            if got:
                uses.setdefault(str(node.target), []).append(got)
            src[node] = frozenset()
        elif mod is not None and isinstance(mod, SCALE_TRANSPARENT):
            src[node] = got
        elif node.op == "call_method" and node.target in _VIEW_METHODS:
            src[node] = got
        elif node.op == "call_method" and node.target in _NOT_A_USE or (
                node.op == "call_function" and getattr(node.target, "__name__", "") == "getattr"):
            continue                                            # .shape / .size(): not a use of the values
        elif node.op == "call_function" and getattr(node.target, "__name__", "") in ("add", "iadd") and \
                all(src[a] for a in ins) and len(ins) == len(node.args):
            src[node] = got                                     # a sum of spikes (SEW ADD): one group
        elif node.op == "call_function" and getattr(node.target, "__name__", "") == "getitem":
            src[node] = got
        else:
            what = str(node.target) if node.op == "call_module" else getattr(node.target, "__name__", node.target)
            mark(got, f"its spikes reach {what}, which does not commute with a scale")
            src[node] = frozenset()
    # neurons that meet at a synapse share a group; one member that cannot be folded unfolds the group
    parent = {n: n for n in neurons}

    def find(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for sets in uses.values():
        names = sorted(frozenset().union(*sets))
        for other in names[1:]:
            parent[find(other)] = find(names[0])
    comps: dict[str, list[str]] = {}
    for n in neurons:
        comps.setdefault(find(n), []).append(n)
    plan = FoldPlan()
    for members in comps.values():
        why = next((bad[m] for m in members if m in bad), None)
        if why is not None:
            for m in members:
                plan.emit[m] = bad.get(m, f"it shares a sum with {next(x for x in members if x in bad)}, whose "
                                          f"spikes cannot be folded")
            continue
        mine = set(members)
        targets = sorted(k for k, sets in uses.items() if any(s & mine for s in sets))
        if not targets:
            for m in members:
                plan.emit[m] = "its spikes reach no synaptic layer"
            continue
        plan.groups.append(members)
        plan.consumers.append(targets)
    return plan

"""spikeforge model → ``nir.NIRGraph``.

The model is traced with ``torch.fx`` (neurons, ``TimeFold`` and ``ToSequence`` as leaves), so branches
and residual sums become graph edges rather than a chain. NIR nodes sum what arrives on their edges, so
a value in the trace is kept as the list of NIR nodes whose outputs add up to it: ``a + b`` concatenates
the lists and an identity passes its list on. BatchNorm is folded into the preceding conv/linear with the
one folding helper (``layers.fold_bn_pairs``) before tracing. Why not nirtorch's tracer: it steps modules
one time step at a time with its own state handling, while spikeforge's layers are time-first and one
``TimeFold`` holds several NIR nodes (conv + BN + flatten); walking our own trace keeps the BN fold, the
``≥``/``>`` threshold shift and the refusals explicit.
"""

from __future__ import annotations

import copy
import math
import operator
from typing import Any

import numpy as np
import torch
import torch.fx as fx
from torch import Tensor, nn
from torch.fx.passes.shape_prop import ShapeProp

from ..core import eval_mode
from ..layers import TimeFold, ToSequence, fold_bn_pairs
from ..neurons import CUBALIF, IF, LI, LIF, SpikingNeuron
from .nir_params import NIRExportError, cubalif_to_nir, if_to_nir, li_to_nir, lif_to_nir

__all__ = ["to_nir"]

_PASS = (nn.Identity, nn.Dropout, ToSequence)


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, (TimeFold, ToSequence, SpikingNeuron, LI)) or super().is_leaf_module(m, qualname)


def _np(t: Tensor | None) -> np.ndarray:
    return np.zeros(0) if t is None else t.detach().double().cpu().numpy()


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


class _Builder:
    def __init__(self, dt: float) -> None:
        self.dt = dt
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []

    def add(self, name: str, node: Any, sources: list[str]) -> list[str]:
        self.nodes[name] = node
        self.edges += [(s, name) for s in sources]
        return [name]

    def stateless(self, name: str, m: nn.Module, sources: list[str], shape: tuple[int, ...]) -> list[str]:
        """One module of a time-folded chain, on one sample of ``shape`` (no batch)."""
        import nir

        if isinstance(m, _PASS):
            return sources
        if isinstance(m, nn.Linear):
            node = (nir.Affine(weight=_np(m.weight), bias=_np(m.bias)) if m.bias is not None
                    else nir.Linear(weight=_np(m.weight)))
            return self.add(name, node, sources)
        if isinstance(m, nn.Conv2d):
            if not isinstance(m.padding, tuple) or m.padding_mode != "zeros":
                raise NIRExportError(f"{name}: Conv2d with padding={m.padding!r}, padding_mode={m.padding_mode!r} "
                                     "is not exported (zero padding given as numbers only)")
            bias = _np(m.bias) if m.bias is not None else np.zeros(m.out_channels)
            return self.add(name, nir.Conv2d(input_shape=_pair(shape[-2:]), weight=_np(m.weight),
                                             stride=_pair(m.stride), padding=_pair(m.padding),
                                             dilation=_pair(m.dilation), groups=m.groups, bias=bias), sources)
        if isinstance(m, nn.Conv1d):
            if not isinstance(m.padding, tuple) or m.padding_mode != "zeros":
                raise NIRExportError(f"{name}: Conv1d with padding={m.padding!r} is not exported")
            bias = _np(m.bias) if m.bias is not None else np.zeros(m.out_channels)
            return self.add(name, nir.Conv1d(input_shape=int(shape[-1]), weight=_np(m.weight), stride=m.stride[0],
                                             padding=m.padding[0], dilation=m.dilation[0], groups=m.groups,
                                             bias=bias), sources)
        if isinstance(m, nn.AvgPool2d):
            if m.ceil_mode or (m.padding and not m.count_include_pad) or m.divisor_override:
                raise NIRExportError(f"{name}: AvgPool2d with ceil_mode/count_include_pad=False/divisor_override "
                                     "is not NIR's AvgPool2d")
            k = _pair(m.kernel_size)
            s = _pair(m.stride if m.stride is not None else m.kernel_size)
            return self.add(name, nir.AvgPool2d(kernel_size=np.array(k), stride=np.array(s),
                                                padding=np.array(_pair(m.padding))), sources)
        if isinstance(m, nn.AdaptiveAvgPool2d):
            h, w = int(shape[-2]), int(shape[-1])
            oh, ow = _pair(m.output_size)
            if h % oh or w % ow:
                raise NIRExportError(f"{name}: AdaptiveAvgPool2d({m.output_size}) on {h}×{w} does not tile evenly, "
                                     "so it is no fixed average pool")
            k = (h // oh, w // ow)
            return self.add(name, nir.AvgPool2d(kernel_size=np.array(k), stride=np.array(k),
                                                padding=np.array((0, 0))), sources)
        if isinstance(m, nn.Flatten):
            # torch counts the (folded) batch as dim 0; NIR's types have no batch dimension
            start = m.start_dim - 1 if m.start_dim > 0 else m.start_dim
            end = m.end_dim - 1 if m.end_dim > 0 else m.end_dim
            if m.start_dim == 0:
                raise NIRExportError(f"{name}: Flatten(start_dim=0) would merge the batch")
            return self.add(name, nir.Flatten(input_type={"input": np.array(shape)}, start_dim=start, end_dim=end),
                            sources)
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            raise NIRExportError(f"{name}: a BatchNorm that does not directly follow a conv/linear in the same "
                                 "sequence cannot be folded, and NIR has no batch norm")
        why = ("NIR has no max pooling (use average pooling)" if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d))
               else "NIR has no such node")
        raise NIRExportError(f"{name}: {type(m).__name__} cannot be exported: {why}")

    def neuron(self, name: str, m: nn.Module, sources: list[str], shape: tuple[int, ...]) -> list[str]:
        if type(m) is LIF:
            return self.add(name, lif_to_nir(m, shape, self.dt, name), sources)
        if type(m) is IF:
            return self.add(name, if_to_nir(m, shape, self.dt, name), sources)
        if type(m) is CUBALIF:
            return self.add(name, cubalif_to_nir(m, shape, self.dt, name), sources)
        raise NIRExportError(f"{name}: {type(m).__name__} cannot be exported (NIR nodes exist for IF, LIF and "
                             "CUBALIF here; PSN, ALIF, PLIF, Izhikevich and graded spikes have none)")


def _fold_r(nodes: dict[str, Any], edges: list[tuple[str, str]], dt: float) -> None:
    """``r_mode="fold"``: give every LIF ``r = τ_n/dt`` (``r·dt/τ_n = 1``, what snnTorch's importer requires),
    and every CubaLIF also ``w_in = τ_s/dt``, by scaling the weights and bias of the layers feeding it by the
    factor that moves; the dynamics are unchanged."""
    import nir

    for name, node in nodes.items():
        if isinstance(node, (nir.LIF, nir.LI)):
            lam = dt / float(node.tau.flat[0])
            gain, target = float(node.r.flat[0]), 1.0 / lam
        elif isinstance(node, nir.CubaLIF):
            lam, lam_s = dt / float(node.tau_mem.flat[0]), dt / float(node.tau_syn.flat[0])
            gain, target = float(node.r.flat[0] * np.asarray(node.w_in).flat[0]), 1.0 / (lam * lam_s)
        else:
            continue
        if math.isclose(gain, target, rel_tol=1e-12):
            continue
        for src in (a for a, b in edges if b == name):
            feeder = nodes[src]
            fanout = sum(1 for a, _ in edges if a == src)
            synaptic = isinstance(feeder, (nir.Affine, nir.Linear, nir.Conv1d, nir.Conv2d))
            if not synaptic or fanout != 1:
                why = f"a {type(feeder).__name__}" if not synaptic else f"read by {fanout} nodes"
                raise NIRExportError(f"{name}: r_mode='fold' scales the weights of the layers feeding a neuron, but "
                                     f"its input {src} is {why}; export with r_mode='keep'")
            feeder.weight = feeder.weight * (gain / target)
            if getattr(feeder, "bias", None) is not None:
                feeder.bias = feeder.bias * (gain / target)
        if isinstance(node, (nir.LIF, nir.LI)):
            node.r = np.full_like(node.r, target)
        else:
            node.r = np.full_like(node.r, 1.0 / lam)
            node.w_in = np.full_like(node.r, 1.0 / lam_s)


def to_nir(model: nn.Module, sample_input: Tensor, dt: float = 1e-3, r_mode: str = "keep") -> Any:
    """Export ``model`` (evaluation mode, BatchNorm folded) to a ``nir.NIRGraph``.

    Args:
        model: a spikeforge model (or any ``nn.Module`` built from the supported layers) taking ``[T, B, ...]``.
        sample_input: one time step's input ``[B, ...]`` (for the shapes NIR records).
        dt: the duration of one time step in seconds; time constants are exported as ``τ·dt`` (see
            ``export.nir_params``).
        r_mode: ``"keep"`` writes each LIF's ``r`` as the mapping gives it (1 for ``decay_input=True``);
            ``"fold"`` moves the factor ``dt/τ`` into the weights of the layers feeding the neuron so that
            ``r = τ/dt`` for every LIF (snnTorch's importer needs this form, with ``dt = 1e-4``).

    Returns:
        ``nir.NIRGraph`` with an ``input`` and an ``output`` node; node names are the modules' paths.

    Raises:
        NIRExportError: naming the first module or operation NIR cannot express (soft reset, max pooling,
            attention, PSN, multiplicative SEW connections, …). Nothing is approximated.
    """
    try:
        import nir
    except ImportError as e:  # pragma: no cover
        raise ImportError("NIR export needs nir: pip install 'spikeforge[nir]'") from e
    if not dt > 0:
        raise ValueError(f"dt must be > 0 seconds, got {dt}")
    if r_mode not in ("keep", "fold"):
        raise ValueError(f"r_mode must be 'keep' or 'fold', got {r_mode!r}")
    net = copy.deepcopy(model).cpu().float()
    fold_bn_pairs(net)
    try:
        gm = fx.GraphModule(net, _Tracer().trace(net))
    except Exception as e:
        raise NIRExportError(f"{type(model).__name__}: torch.fx cannot trace the model "
                             f"({type(e).__name__}: {e})") from e
    x = sample_input.detach().cpu().float().unsqueeze(0)
    with eval_mode(gm), torch.no_grad():
        ShapeProp(gm).propagate(x)
    b = _Builder(dt)
    values: dict[fx.Node, list[str]] = {}
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        shape = tuple(node.meta["tensor_meta"].shape)[2:] if "tensor_meta" in node.meta else ()
        if node.op == "placeholder":
            if values:
                raise NIRExportError(f"{type(model).__name__}: only models with one input are exported")
            values[node] = b.add("input", nir.Input(input_type={"input": np.array(shape)}), [])
        elif node.op == "call_module":
            m, src = modules[node.target], values[node.args[0]]
            if isinstance(m, TimeFold):
                y = torch.zeros((1, *tuple(node.args[0].meta["tensor_meta"].shape)[2:]))
                for i, child in enumerate(m):
                    src = b.stateless(f"{node.target}.{i}", child, src, tuple(y.shape[1:]))
                    with torch.no_grad():
                        y = child.eval()(y)
                values[node] = src
            elif isinstance(m, SpikingNeuron):
                values[node] = b.neuron(str(node.target), m, src, shape)
            elif isinstance(m, LI):
                values[node] = b.add(str(node.target), li_to_nir(m, shape, dt, str(node.target)), src)
            else:
                in_shape = tuple(node.args[0].meta["tensor_meta"].shape)[2:]
                values[node] = b.stateless(str(node.target), m, src, in_shape)
        elif node.op == "call_function" and node.target in (operator.add, torch.add) and len(node.args) == 2 \
                and all(isinstance(a, fx.Node) for a in node.args) and not node.kwargs:
            values[node] = values[node.args[0]] + values[node.args[1]]
        elif node.op == "output":
            out = node.args[0]
            if not isinstance(out, fx.Node):
                raise NIRExportError(f"{type(model).__name__}: only models with one output are exported")
            b.add("output", nir.Output(output_type={"output": np.array(tuple(out.meta["tensor_meta"].shape)[2:])}),
                  values[out])
        else:
            what = getattr(node.target, "__name__", str(node.target))
            raise NIRExportError(f"{node.name}: the operation {what} ({node.op}) has no NIR form (NIR sums the "
                                 "edges into a node; products, attention and reshapes outside Flatten do not export)")
    if r_mode == "fold":
        _fold_r(b.nodes, b.edges, dt)
    return nir.NIRGraph(nodes=b.nodes, edges=b.edges)

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

import contextlib
import copy
import io
import math
import operator
from typing import Any

import numpy as np
import torch
import torch.fx as fx
from torch import Tensor, nn
from torch.fx.passes.shape_prop import ShapeProp, TensorMetadata

from ..core import eval_mode
from ..layers import TimeFold, ToSequence, fold_bn_pairs
from ..neurons import CUBALIF, IF, LI, LIF, SpikingNeuron
from .nir_params import NIRExportError, cubalif_to_nir, if_to_nir, li_to_nir, lif_to_nir, require_nir

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
        if name in self.nodes:
            raise NIRExportError(f"{name}: the module is called more than once in forward; NIR has one node per "
                                 "layer (give each call its own module)")
        if len(set(sources)) != len(sources):
            raise NIRExportError(f"{name}: its input adds a value to itself ({' + '.join(sources)}); NIR sums "
                                 "distinct edges only")
        self.nodes[name] = node
        self.edges += [(s, name) for s in sources]
        return [name]

    def stateless(self, name: str, m: nn.Module, sources: list[str], shape: tuple[int, ...],
                  time_first: bool = False) -> list[str]:
        """One module, on one sample of ``shape`` (no batch). ``time_first``: called on ``[T, B, ...]`` itself
        rather than inside a ``TimeFold`` (``[T·B, ...]``), which matters for a dimension index."""
        nir = require_nir()
        lead = 2 if time_first else 1             # dimensions before the sample's
        if isinstance(m, _PASS):
            return sources
        if isinstance(m, nn.Linear):
            node = (nir.Affine(weight=_np(m.weight), bias=_np(m.bias)) if m.bias is not None
                    else nir.Linear(weight=_np(m.weight)))
            return self.add(name, node, sources)
        if isinstance(m, (nn.Conv1d, nn.Conv2d)) and m.groups != 1:
            raise NIRExportError(f"{name}: a grouped {type(m).__name__} (groups={m.groups}) is not exported: nir "
                                 "1.0.8's type inference ignores groups")
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
            # torch counts the (folded) batch — and, outside TimeFold, time — as leading dims; NIR's types do not
            if 0 <= m.start_dim < lead:
                raise NIRExportError(f"{name}: Flatten(start_dim={m.start_dim}) would merge "
                                     f"{'time and batch' if time_first else 'the batch'} into the sample")
            start = m.start_dim - lead if m.start_dim > 0 else m.start_dim
            end = m.end_dim - lead if m.end_dim > 0 else m.end_dim
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
        if getattr(m, "v_reset", 0.0) is None:
            raise NIRExportError(f"{name}: {type(m).__name__} resets by subtraction (the rate-coded learning methods' "
                                 "and ANN-to-SNN conversion's neuron); NIR neurons reset to v_reset, so it cannot "
                                 "be exported")
        raise NIRExportError(f"{name}: {type(m).__name__} cannot be exported (NIR nodes exist for IF, LIF and "
                             "CUBALIF here; PSN, ALIF, PLIF, Izhikevich and graded spikes have none)")


def _fold_r(nodes: dict[str, Any], edges: list[tuple[str, str]], dt: float) -> None:
    """``r_mode="fold"``: give every LIF ``r = τ_n/dt`` (``r·dt/τ_n = 1``, what snnTorch's importer requires),
    and every CubaLIF also ``w_in = τ_s/dt``, by scaling the weights and bias of the layers feeding it by the
    factor that moves. The dynamics are the same up to float rounding (exactly the same when the factor is a
    power of two): ``(λW)x`` and ``λ(Wx)`` round differently."""
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
            ``r = τ/dt`` for every LIF (snnTorch's importer needs this form, with ``dt = 1e-4``); equal up to
            float rounding (exact when ``dt/τ`` is a power of two).

    Returns:
        ``nir.NIRGraph`` with an ``input`` and an ``output`` node; node names are the modules' paths.

    Raises:
        NIRExportError: naming the first module or operation NIR cannot express (soft reset, max pooling,
            attention, PSN, multiplicative SEW connections, …). Nothing is approximated.
    """
    nir = require_nir()
    if not dt > 0:
        raise ValueError(f"dt must be > 0 seconds, got {dt}")
    if r_mode not in ("keep", "fold"):
        raise ValueError(f"r_mode must be 'keep' or 'fold', got {r_mode!r}")
    for name, m in model.named_modules():             # a module that says why it has no NIR form
        why = getattr(m, "nir_refusal", None)
        if why:
            raise NIRExportError(f"{name or type(model).__name__}: {type(m).__name__} is {why}")
    net = copy.deepcopy(model).cpu().float()
    try:
        fold_bn_pairs(net)
    except (TypeError, ValueError) as e:
        raise NIRExportError(f"{type(model).__name__}: {e}") from None
    try:
        gm = fx.GraphModule(net, _Tracer().trace(net))
    except Exception as e:
        raise NIRExportError(f"{type(model).__name__}: torch.fx cannot trace the model "
                             f"({type(e).__name__}: {str(e).splitlines()[0]})") from None
    x = sample_input.detach().cpu().float().unsqueeze(0)
    try:
        with eval_mode(gm), torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            ShapeProp(gm).propagate(x)
    except Exception as e:
        raise NIRExportError(f"{type(model).__name__}: the sample input of shape {tuple(sample_input.shape)} "
                             f"(one step, [B, ...]) does not run through the model "
                             f"({str(e).splitlines()[0]})") from None
    b = _Builder(dt)
    values: dict[fx.Node, list[str]] = {}
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        meta = node.meta.get("tensor_meta")
        shape = tuple(meta.shape)[2:] if isinstance(meta, TensorMetadata) else ()
        if node.op == "placeholder":
            if values:
                raise NIRExportError(f"{type(model).__name__}: only models with one input are exported")
            values[node] = b.add("input", nir.Input(input_type={"input": np.array(shape)}), [])
        elif node.op == "call_module":
            if node.target in ("input", "output"):
                raise NIRExportError(f"{node.target}: a module named {node.target!r} collides with NIR's graph "
                                     "input/output node; rename it")
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
                values[node] = b.stateless(str(node.target), m, src, in_shape, time_first=True)
        elif node.op == "call_function" and node.target in (operator.add, torch.add) and len(node.args) == 2 \
                and all(isinstance(a, fx.Node) for a in node.args) and not node.kwargs:
            values[node] = values[node.args[0]] + values[node.args[1]]
        elif node.op == "output":
            out = node.args[0]
            if not isinstance(out, fx.Node) or not isinstance(out.meta.get("tensor_meta"), TensorMetadata):
                raise NIRExportError(f"{type(model).__name__}: only models with one output tensor are exported")
            b.add("output", nir.Output(output_type={"output": np.array(tuple(out.meta["tensor_meta"].shape)[2:])}),
                  values[out])
        else:
            what = getattr(node.target, "__name__", str(node.target))
            raise NIRExportError(f"{node.name}: the operation {what} ({node.op}) has no NIR form (NIR sums the "
                                 "edges into a node; products, attention and reshapes outside Flatten do not export)")
    if r_mode == "fold":
        _fold_r(b.nodes, b.edges, dt)
    try:
        return nir.NIRGraph(nodes=b.nodes, edges=b.edges)
    except ValueError as e:
        raise NIRExportError(f"{type(model).__name__}: nir rejected the graph ({str(e).splitlines()[0]})") from None

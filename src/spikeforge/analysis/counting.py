"""Operation counting at the operator level: every multiplication a model executes, as ACs or MACs.

``OpCounter`` is a context manager. While it is active, a ``TorchDispatchMode`` sees every aten op the
model runs and a stack of module hooks says which module runs it, so it covers any model, not a list of
known layers:

* synaptic ops (convolutions, matrix products, attention products; ``products.py``) are counted as
  accumulates (a spike operand: ``AC``) or multiply-accumulates (``MAC``) under a ``Convention``;
* every other multiplication is sorted for the spike-driven audit (``audit.py``): a BatchNorm after a
  conv/linear or a constant scale before a neuron or synapse is *foldable*; one inside a neuron is
  *neuron-internal*; the rest are multiplications with (``ac``) or without (``mac``) a binary operand.

Neurons run their fused CPU kernels opaquely, so by default the counter switches them to the torch
reference loop (same spikes) while it is active and counts their internals; they are restored on exit.
``TimeFold``s run a static (direct-encoded) input at every step while counting (not once), so the first
layer's MACs are counted ``T`` times, as the papers count them. Only ops inside the model's forward are
counted (not the loss, not backward).

    with OpCounter(model, convention="spikingformer") as c:
        model(x_seq)                                    # x_seq [T, B, ...]
    c.totals()      # {"ac": …, "mac": …, "dense": …, "bias": …} per sample
    energy(c)       # mJ per sample (spikeforge.analysis.energy);  audit_counter(c): the spike-driven audit

On the meta device nothing can be inspected: operands are classified by provenance (a neuron's output is
binary) and every firing rate is 1, which gives the dense count of a paper-size model for free.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakTensorKeyDictionary

from ..layers import TimeFold
from ..neurons import SpikingNeuron
from .layer_ops import LayerOps
from .operands import Convention, Prov, Values, cause, describe, get_convention, inspect_values, is_spike
from .products import (
    AVERAGE_OPS,
    MUL_OPS,
    NORM_OPS,
    PER_SAMPLE_NORM_OPS,
    SELECT_OPS,
    SYNAPTIC_OPS,
    TRANSPARENT_OPS,
    products,
)

__all__ = ["OpCounter", "LayerOps", "count_ops", "FOLD_CONSUMERS"]

aten = torch.ops.aten


#: consumers through which a constant scale folds away (into a threshold, weights or the next scale)
FOLD_CONSUMERS = frozenset({"neuron", "synaptic", "norm", "scale", "output"})


@dataclass
class _Pending:
    key: str
    count: float
    desc: str
    consumers: set[str] = field(default_factory=set)


class _Mode(TorchDispatchMode):
    def __init__(self, counter: OpCounter) -> None:
        super().__init__()
        self.counter = counter

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.counter._stack:
            self.counter._on_op(func, args, kwargs, out)
        return out


class OpCounter:
    """Count synaptic operations (AC / MAC) and sort every multiplication of a model's forward passes.

    Args:
        model: any ``nn.Module``; nothing in it is changed (hooks and neuron backends are restored on exit).
        convention: ``"spikingformer"`` (strict: only {0, 1} is a spike), ``"spikformer"`` (integer spike
            counts are spikes too) or ``"neurobench"`` (effective nonzero products), or a ``Convention``.
        batch_dim: the batch axis of the model's first input (1 for time-first ``[T, B, ...]``, 0 for a
            static ``[B, C, H, W]``), used to report counts per sample.
        neuron_backend: scan backend the scan neurons (``SpikingNeuron``) run with while counting
            (``"torch"`` exposes their internal multiplications); ``None`` leaves them as they are. Other
            neurons (the PSN family) run as they are.
        exclude: glob patterns of module names whose ops are not counted.
    """

    def __init__(self, model: nn.Module, convention: str | Convention = "spikingformer", batch_dim: int = 1,
                 neuron_backend: str | None = "torch", exclude: tuple[str, ...] = ()) -> None:
        from ..layers import is_neuron
        self.model, self.convention, self.batch_dim = model, get_convention(convention), batch_dim
        self.neuron_backend, self.exclude = neuron_backend, tuple(exclude)
        self.layers: dict[str, LayerOps] = {}
        self.samples, self.batches = 0, 0
        self._names = {m: (n or "model") for n, m in model.named_modules()}
        self._is_neuron = {m: is_neuron(m) for m in self._names}
        self._stack: list[nn.Module] = []
        self._in_neuron = 0
        self._op_index: dict[nn.Module, int] = {}
        self._prov: WeakTensorKeyDictionary = WeakTensorKeyDictionary()
        self._pending: dict[int, _Pending] = {}
        self._event_key: dict[int, str] = {}
        self._next_event = 0
        self._handles: list[Any] = []
        self._saved_backends: list[tuple[Any, str]] = []
        self._saved_folds: list[tuple[Any, bool]] = []
        self._mode: _Mode | None = None

    # -- context -------------------------------------------------------------------------------------
    def __enter__(self) -> OpCounter:
        for m in self._names:
            self._handles.append(m.register_forward_pre_hook(self._pre(m)))
            self._handles.append(m.register_forward_hook(self._post(m), always_call=True))
            if self.neuron_backend is not None and isinstance(m, SpikingNeuron):      # scan neurons only
                self._saved_backends.append((m, str(m.backend)))
                m.backend = self.neuron_backend
            if isinstance(m, TimeFold):     # count a static input's first layer at every step, as papers do
                self._saved_folds.append((m, m.static_once))
                m.static_once = False
        for name, t in [*self.model.named_parameters(), *self.model.named_buffers()]:
            self._prov[t] = Prov("param", name, "Parameter", "param")
        self._mode = _Mode(self)
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._mode is not None:
            self._mode.__exit__(*exc)
            self._mode = None
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for m, b in self._saved_backends:
            m.backend = b
        self._saved_backends.clear()
        for m, once in self._saved_folds:
            m.static_once = once
        self._saved_folds.clear()
        self._stack.clear()

    # -- module stack --------------------------------------------------------------------------------
    def _pre(self, m: nn.Module) -> Any:
        def hook(mod: nn.Module, args: Any) -> None:
            if not self._stack:
                self._start_batch(args)
            elif self._is_neuron[m] and not self._in_neuron:
                self._consume(args, "neuron")
            self._stack.append(m)
            self._op_index[m] = 0
            self._in_neuron += self._is_neuron[m]
        return hook

    def _post(self, m: nn.Module) -> Any:
        def hook(mod: nn.Module, args: Any, out: Any) -> None:
            if not self._stack or self._stack[-1] is not m:
                return
            self._stack.pop()
            self._in_neuron -= self._is_neuron[m]
            if self._is_neuron[m] and not self._in_neuron:
                name = self._names[m]
                for t in _tensors(out):
                    self._prov[t] = Prov("spikes", name, type(m).__name__, "spikes")
            if not self._stack:
                self._end_batch(out)
        return hook

    def _start_batch(self, args: Any) -> None:
        xs = _tensors(args)
        for t in xs:
            self._prov[t] = Prov("input", "", "input", "input")
        x = xs[0] if xs else None
        self.samples += int(x.shape[self.batch_dim]) if x is not None and x.dim() > self.batch_dim else 1
        self.batches += 1

    def _end_batch(self, out: Any) -> None:
        for t in _tensors(out):
            p = self._prov.get(t)
            if p is not None and p.event in self._event_key:
                layer = self.layers[self._event_key[p.event]]
                if layer.role == "synaptic":
                    layer.tags.add("head")
        self._consume(out, "output")
        for ev in self._pending.values():
            layer = self.layers[ev.key]
            if ev.consumers <= FOLD_CONSUMERS:
                layer.add_audit("foldable", ev.count)
            else:
                others = ", ".join(sorted(ev.consumers - FOLD_CONSUMERS))
                layer.add_audit("mac", ev.count, f"{ev.desc} whose result feeds {others}: not foldable")
        self._pending.clear()
        self._event_key.clear()

    # -- results -------------------------------------------------------------------------------------
    def per_layer(self, role: str | None = "synaptic") -> dict[str, LayerOps]:
        """Layers in execution order (only those of ``role``; ``None``: all)."""
        return {k: v for k, v in self.layers.items() if role is None or v.role == role}

    def totals(self, per_sample: bool = True) -> dict[str, float]:
        """``{"ac", "mac", "dense", "bias"}`` over the synaptic layers, per sample (or summed over batches)."""
        syn = self.per_layer()
        n = max(self.samples, 1) if per_sample else 1
        return {k: sum(getattr(v, k) for v in syn.values()) / n for k in ("ac", "mac", "dense", "bias")}

    # -- ops -----------------------------------------------------------------------------------------
    def _layer(self, op: str, role: str) -> tuple[LayerOps, int]:
        m = self._stack[-1]
        name, i = self._names[m], self._op_index[m]
        self._op_index[m] = i + 1
        leaf = next(iter(m.children()), None) is None
        key = name if (leaf and i == 0) else f"{name}:{op}{i}"
        if key not in self.layers:
            self.layers[key] = LayerOps(key, type(m).__name__, op, role)
        ev = self._next_event
        self._next_event += 1
        self._event_key[ev] = key
        return self.layers[key], ev

    def _neuron_layer(self) -> LayerOps:
        """Work inside a neuron is summed on the outermost neuron module running it."""
        m = next(m for m in self._stack if self._is_neuron[m])
        key = self._names[m]
        if key not in self.layers:
            self.layers[key] = LayerOps(key, type(m).__name__, "internal", "neuron")
        return self.layers[key]

    def _get_prov(self, t: Tensor) -> Prov:
        p = self._prov.get(t)
        if p is None:
            p = Prov("real", "", "?", "unknown")
            self._prov[t] = p
        return p

    def _consume(self, args: Any, label: str) -> None:
        for t in _tensors(args):
            p = self._prov.get(t)
            if p is not None and p.event in self._pending:
                self._pending[p.event].consumers.add(label)

    def _on_op(self, func: Any, args: Any, kwargs: dict[str, Any], out: Any) -> None:
        packet = func.overloadpacket
        if self._in_neuron:
            if packet in MUL_OPS or packet in SYNAPTIC_OPS:
                n = sum(p.dense for p in products(func, args, kwargs, out)) if packet in SYNAPTIC_OPS \
                    else _tensors(out)[0].numel()
                layer = self._neuron_layer()
                layer.calls += 1
                layer.dense += n
                layer.add_audit("neuron", n)
            return
        if packet in TRANSPARENT_OPS:
            ins = _tensors(args)
            if ins:
                p = self._get_prov(ins[0])
                for t in _tensors(out):
                    self._prov[t] = p
            return
        if any(fnmatch.fnmatchcase(self._names[self._stack[-1]], pat) for pat in self.exclude):
            return
        if packet in SYNAPTIC_OPS:
            self._consume(args, "synaptic")
            self._synaptic(func, args, kwargs, out)
        elif packet in NORM_OPS:
            self._consume(args, "norm")
            self._norm(packet, args, out)
        elif packet in MUL_OPS or packet in AVERAGE_OPS:
            self._multiply(packet, args, out)
        elif not self._shift(packet, args, out):
            self._consume(args, packet.__name__)
            self._propagate(packet, args, out)

    def _shift(self, packet: Any, args: Any, out: Any) -> bool:
        """``x ± b`` with a parameter or a number ``b`` (a bias, an affine shift): the result keeps ``x``'s event,
        so a BatchNorm or a head behind a separate bias add is still seen as following its conv / linear."""
        if packet not in (aten.add, aten.sub):
            return False
        ts = _tensors(args)
        provs = [self._get_prov(t) for t in ts]
        acts = [p for p in provs if p.kind != "param"]
        if len(acts) != 1 or len(ts) > 2 or (len(ts) == 1 and not isinstance(args[1], (int, float))):
            return False
        m = self._stack[-1]
        for t in _tensors(out):
            self._prov[t] = Prov("real", self._names[m], type(m).__name__, f"aten.{packet.__name__}", acts[0].event)
        return True

    def _propagate(self, packet: Any, args: Any, out: Any, event: int = -1) -> None:
        ins = [self._get_prov(t) for t in _tensors(args)]
        kinds = {p.kind for p in ins}
        if event < 0 and packet in SELECT_OPS and len(kinds) == 1:
            kind = kinds.pop()
        elif event < 0 and packet is aten.add and kinds and kinds <= {"spikes", "counts"}:
            kind = "counts"
        else:
            kind = "real"
        m = self._stack[-1]
        for t in _tensors(out):
            self._prov[t] = Prov(kind, self._names[m], type(m).__name__, f"aten.{packet.__name__}", event)

    def _synaptic(self, func: Any, args: Any, kwargs: dict[str, Any], out: Any) -> None:
        conv = self.convention
        layer, ev = self._layer(func.overloadpacket.__name__, "synaptic")
        layer.calls += 1
        prods = products(func, args, kwargs, out)
        for prod in prods:
            operands = [(t, self._get_prov(t) if t is not None else None) for t in (prod.a, prod.b)]
            acts = [(t, p) for t, p in operands if p is None or p.kind != "param"]
            vals = [inspect_values(t, p) if t is not None else Values("real", 1.0, float("nan"))
                    for t, p in acts]
            spikes = [v for v in vals if is_spike(v, conv)]
            # the rate that gates the product: a neuron's own spikes first (Spikingformer's SSA term uses fr_q
            # for Q·(KᵀV) even where KᵀV happens to be 0/1), then any binary operand, then spike counts
            fired = [v for v, (_, p) in zip(vals, acts) if v.kind == "binary" and p is not None and p.kind == "spikes"]
            binary = [v for v in spikes if v.kind == "binary"]
            rate = min(v.rate for v in (fired or binary or spikes)) if spikes else 1.0
            known = all(v.known for v in vals)
            if conv.effective and known and prod.effective is not None:
                n = prod.effective()
            else:
                n = (prod.dense + (prod.bias if conv.bias else 0)) * rate
            if spikes:
                layer.ac += n
            else:
                layer.mac += n
            layer.rate_sum += rate / len(prods)
            layer.dense += prod.dense
            layer.bias += prod.bias
            if any(p is not None and p.kind == "input" for _, p in acts):
                layer.tags.add("encoder")
            strict = [v for v in vals if v.kind == "binary"]
            if strict:
                layer.add_audit("ac", prod.dense)
            else:
                layer.add_audit("mac", prod.dense, cause(acts, vals, func.overloadpacket.__name__))
        self._propagate(func.overloadpacket, args, out, ev)

    def _norm(self, packet: Any, args: Any, out: Any) -> None:
        x = args[0]
        layer, ev = self._layer(packet.__name__, "norm")
        layer.calls += 1
        layer.dense += x.numel()
        p = self._get_prov(x)
        if inspect_values(x, p).kind == "binary":
            layer.add_audit("ac", x.numel())
        elif packet in PER_SAMPLE_NORM_OPS:
            layer.add_audit("mac", x.numel(), "layer/group normalisation: a data-dependent scale per sample "
                                              "(cannot be folded)")
        elif p.event in self._event_key and self.layers[self._event_key[p.event]].role == "synaptic":
            layer.add_audit("foldable", x.numel())
        else:
            layer.add_audit("mac", x.numel(), f"normalisation of {describe(inspect_values(x, p), p)} "
                                              "that does not follow a conv/linear (cannot be folded)")
        self._propagate(packet, args, out, ev)

    def _multiply(self, packet: Any, args: Any, out: Any) -> None:
        res = _tensors(out)[0]
        tensors = [a for a in args if isinstance(a, Tensor)]
        provs = [self._get_prov(t) for t in tensors]
        acts = [(t, p) for t, p in zip(tensors, provs) if p.kind != "param" and t.numel() > 1]
        constant = packet in AVERAGE_OPS or len(acts) <= 1
        role = "scale" if constant else "elementwise"
        self._consume(args, role)
        layer, ev = self._layer(packet.__name__, role)
        layer.calls += 1
        layer.dense += res.numel()
        vals = [inspect_values(t, p) for t, p in acts]
        if vals and any(v.kind == "binary" for v in vals):
            layer.add_audit("ac", res.numel())
        elif constant:
            what = "an average" if packet in AVERAGE_OPS else "a constant scale"
            self._pending[ev] = _Pending(layer.name, res.numel(), what)
        else:
            layer.add_audit("mac", res.numel(), "element-wise product of " + " and ".join(
                describe(v, p) for v, (_, p) in zip(vals, acts)))
        self._propagate(packet, args, out, ev)


def _tensors(x: Any) -> list[Tensor]:
    return [t for t in tree_leaves(x) if isinstance(t, Tensor)]


def count_ops(model: nn.Module, inputs: Tensor | Iterator[Tensor] | list[Tensor],
              convention: str | Convention = "spikingformer", batch_dim: int = 1, **kwargs: Any) -> OpCounter:
    """Run ``model`` under ``torch.no_grad`` on ``inputs`` (one batch or an iterable of batches) with an
    ``OpCounter`` active and return the counter (``.totals()``, ``.per_layer()``; ``energy(counter)``)."""
    batches = [inputs] if isinstance(inputs, Tensor) else inputs
    with torch.no_grad(), OpCounter(model, convention, batch_dim, **kwargs) as c:
        for x in batches:
            model(x)
    return c

"""MINT: uniform symmetric quantisation of the weights and the membrane potential with one learnable scale
per layer (Yin et al., "MINT: Multiplier-less INTeger Quantization for Energy Efficient Spiking Neural
Networks", ASP-DAC 2024, arXiv 2305.09850; official code ``RuokaiYin/MINT_Quantization``).

A layer of ``b``-bit weights has ``Q = 2^(b−1) − 1`` levels each side of zero, a learnable scale ``β`` and the
step (one LSB) ``s = β/Q``. Its integer weights are the official quantiser's::

    W_int = round_ste(Q · clamp(tanh(W)/β, −1, 1))            real weight  W̃ = s · W_int

**The training path computes in LSBs of ``s``**, so that integer inference repeats it bit for bit: the
layer outputs the integer current ``I = round(W_int ⋆ x + b_int)`` (``b_int = round_ste(b/s)``; the
rounding is a no-op on binary inputs, and it makes the path immune to inexact convolution algorithms) and
its neuron (``MintLIF`` / ``MintIF``) sees, in the same units, the threshold ``V_th/s`` and a surrogate
rescaled so that gradients are those of the real-unit model (``surrogate_in_units``). Then the membrane is:

* ``shared`` (``w2u2``, the paper's): quantised with the layer's own step ``s`` (``b_u = b_w``), so in
  LSBs it is an integer clamped to ``[−Q, Q]``; the threshold is rounded to an integer ``θ = round(V_th/s)``
  and the leak ``2^−k`` is a floor shift. Everything is then exact in float32: ``to_integer`` runs it on
  integers (``spikeforge.compress.integer``);
* ``separate`` (``w2u2:separate``): quantised with its own learnable scale ``β_u`` (step ``β_u/Q_u``, init
  ``V_th``); no integer form, since the membrane and the current sit on different grids;
* full precision (``w2``): only the weights are quantised.

The first synaptic layer (the encoder, fed by the analog input: direct encoding) and its neurons stay in full
precision; a synaptic layer with no neuron after it (the classifier head) is quantised to ``head_bits`` and
its output rescaled to real units, ``s · I``. BatchNorm is folded into the weights first
(``spikeforge.layers.fold_bn_pairs``); the neurons' reset becomes MINT's soft reset unless ``reset="hard"``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.utils import parametrize

from ..core import eval_mode, round_ste
from ..layers import FOLDABLE, fold_bn_pairs, is_neuron
from ..neurons import IF, LIF, SpikingNeuron, StateQuantizer
from ..surrogate import (
    ATan,
    Erf,
    PiecewiseExp,
    PiecewiseQuadratic,
    Rectangle,
    Sigmoid,
    SoftSign,
    Surrogate,
    Triangle,
)
from .base import COMPRESSORS, CompressionError, Compressor, applied

__all__ = ["MintQuantizer", "MintWeight", "MintBias", "MintLIF", "MintIF", "MembraneQuantizer", "mint_layers",
           "surrogate_in_units", "memory_bits", "accumulator_bits", "int_add_pj", "BIAS_BITS"]

BIAS_BITS = 16
"""Bits of a quantised layer's integer bias ``b_int`` (saturating); biases are counted at this width."""

_SYNAPSES = FOLDABLE
_ALPHA_SCALED = (Sigmoid, ATan, PiecewiseQuadratic, Rectangle, Erf, SoftSign, PiecewiseExp)
_EPS = 1e-8


def _levels(bits: int) -> int:
    return int(2 ** (bits - 1) - 1)


def _check_bits(name: str, bits: Any) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        raise CompressionError(f"{name} must be an integer from 2 to 8, got {bits!r}")
    return bits


def surrogate_in_units(sg: Surrogate, s: float) -> Surrogate:
    """The surrogate of a neuron that sees its input in units of ``s`` (``z' = z/s``) with the gradient of the
    real-unit neuron: ``g'(z') = s · sg'(s·z')`` (the spike ``Θ`` is unchanged since ``s > 0``).

    Surrogates whose ``alpha`` is a sharpness (``Sigmoid``, ``ATan``, ``PiecewiseQuadratic``, ``Rectangle``,
    ``Erf``, ``SoftSign``, ``PiecewiseExp``) get ``alpha·s``; ``Triangle`` gets ``gamma·s`` and ``width/s``.
    Others raise ``CompressionError``.
    """
    if isinstance(sg, _ALPHA_SCALED):
        return dataclasses.replace(sg, alpha=sg.alpha * s)       # type: ignore[attr-defined]
    if isinstance(sg, Triangle):
        return dataclasses.replace(sg, gamma=sg.gamma * s, width=sg.width / s)
    raise CompressionError(f"MINT rescales the surrogate to the layer's integer units; {type(sg).__name__} has no "
                           "sharpness to rescale (use atan, sigmoid, erf, triangle, rectangle, softsign, "
                           "piecewise_quadratic or piecewise_exp)")


class MintWeight(nn.Module):
    """Parametrisation ``W ↦ W_int = round_ste(Q · clamp(tanh(W)/|β|, −1, 1))``: the integer weights (as floats),
    one LSB being ``s = |β|/Q`` (``Q = 2^(bits−1) − 1``).

    Holds the layer's learnable scale ``beta``. ``output`` is the layer's forward hook: it rounds the current
    to whole LSBs and, for a ``readout`` (no neuron after it), returns it in real units ``s · I``.

    Args:
        bits: weight bits, 2-8.
        beta: initial scale ``β₀``.
        readout: the layer feeds no neuron (the classifier head).
        neuron: qualified name of the neuron layer it feeds (``None`` for a readout).
    """

    def __init__(self, bits: int, beta: float, readout: bool = False, neuron: str | None = None) -> None:
        super().__init__()
        self.bits, self.readout, self.neuron = _check_bits("weight bits", bits), bool(readout), neuron
        self.beta = nn.Parameter(torch.tensor(float(beta)))

    @property
    def levels(self) -> int:
        """``Q = 2^(bits−1) − 1``: the largest integer weight."""
        return _levels(self.bits)

    def scale(self) -> Tensor:
        """One LSB in real units, ``s = |β|/Q`` (a 0-d tensor with the gradient to ``β``)."""
        return self.beta.abs().clamp_min(_EPS) / self.levels

    def forward(self, weight: Tensor) -> Tensor:
        beta = self.beta.abs().clamp_min(_EPS)
        return round_ste(self.levels * torch.clamp(torch.tanh(weight) / beta, -1.0, 1.0))

    def output(self, module: nn.Module, args: Any, out: Tensor) -> Tensor:
        """Forward hook of the quantised layer: ``round(I)``, times ``s`` for a readout."""
        current = round_ste(out)
        return current * self.scale() if self.readout else current

    def extra_repr(self) -> str:
        return f"bits={self.bits}, readout={self.readout}, neuron={self.neuron!r}"


class MintBias(nn.Module):
    """Parametrisation ``b ↦ b_int = round_ste(clamp(b/s, ±(2^15 − 1)))``: the bias in LSBs of its layer's
    ``MintWeight`` (held by reference, so the scale is saved once)."""

    def __init__(self, weight: MintWeight) -> None:
        super().__init__()
        self.__dict__["_weight"] = weight          # not a submodule: β lives in the weight's parametrisation

    def forward(self, bias: Tensor) -> Tensor:
        lim = float(2 ** (BIAS_BITS - 1) - 1)
        weight: MintWeight = self.__dict__["_weight"]
        return round_ste(torch.clamp(bias / weight.scale(), -lim, lim))


@dataclass(frozen=True)
class MembraneQuantizer:
    """``q(v) = clamp(round_ste(v/step), −levels, levels) · step``: the separate-scale membrane quantiser
    (``step`` a tensor with gradient to the neuron's ``mint_membrane_beta``)."""

    step: Tensor
    levels: int

    def __call__(self, v: Tensor) -> Tensor:
        return torch.clamp(round_ste(v / self.step), -self.levels, self.levels) * self.step


def _mint_params(n: Any, p: Any) -> Any:
    """The neuron's parameter record in LSBs of its layer (see the module docstring)."""
    wq: MintWeight = n.__dict__["_mint_weight"]
    s = wq.scale()
    th: Tensor = n.v_threshold / s
    quantizer: Any = None
    if n.mint_mode == "shared":
        th = round_ste(th).clamp_min(1.0)
        lv = _levels(n.mint_state_bits)
        quantizer = StateQuantizer(1.0, -float(lv), float(lv))
    elif n.mint_mode == "separate":
        lv = _levels(n.mint_state_bits)
        quantizer = MembraneQuantizer(n.mint_membrane_beta.abs().clamp_min(_EPS) / lv / s, lv)
    sg = surrogate_in_units(n.surrogate, float(s.detach()))
    return dataclasses.replace(p, v_threshold=th, surrogate=sg, quantizer=quantizer)


class _MintNeuron:
    """What ``MintLIF`` and ``MintIF`` add to their neuron: the parameter record in LSBs (``_mint_params``)."""

    mint_mode: str
    mint_state_bits: int | None

    def params(self) -> Any:
        return _mint_params(self, super().params())  # type: ignore[misc]

    def extra_repr(self) -> str:
        bits = f"u{self.mint_state_bits}" if self.mint_state_bits else "fp membrane"
        return f"mint={self.mint_mode} {bits}, " + super().extra_repr()  # type: ignore[misc]


class MintLIF(_MintNeuron, LIF):
    """A ``LIF`` of a MINT-quantised layer, in LSBs of the layer's scale ``s``: its parameter record carries
    the threshold ``V_th/s`` (``shared``: ``round(V_th/s)``, at least 1), the surrogate rescaled by ``s`` and
    the membrane quantiser (``shared``: integers in ``[−Q, Q]``; ``separate``: step ``β_u/(Q_u·s)``).
    ``v_threshold`` stays the real-unit value; ``MintQuantizer`` turns a ``LIF`` into one."""


class MintIF(_MintNeuron, IF):
    """``MintLIF`` for the leak-free ``IF`` neuron."""


_MINT_CLASS: dict[type, type] = {LIF: MintLIF, IF: MintIF}


@dataclass
class _Entry:
    name: str
    layer: nn.Module
    neurons: list[tuple[str, nn.Module]]


def _plan(model: nn.Module) -> list[_Entry]:
    """Synaptic layers in module order, each with the neuron layers that follow it before the next one."""
    out: list[_Entry] = []
    for name, m in model.named_modules():
        if isinstance(m, _SYNAPSES):
            out.append(_Entry(name, m, []))
        elif is_neuron(m) and out:
            out[-1].neurons.append((name, m))
    return out


def _sources(model: nn.Module) -> dict[str, set[str]] | None:
    """For every neuron layer, the synaptic layers whose output reaches it without passing another neuron or
    synaptic layer, from the model's ``torch.fx`` graph (``None`` when the model does not trace)."""
    from ..models.fx import trace

    try:
        graph = trace(model).graph
    except Exception:                       # noqa: BLE001  (any tracing failure: fall back to module order)
        return None
    mods = dict(model.named_modules())
    kind = {n: ("syn" if isinstance(m, _SYNAPSES) else "neuron" if is_neuron(m) else None) for n, m in mods.items()}
    reach: dict[Any, set[str]] = {}
    out: dict[str, set[str]] = {}
    for node in graph.nodes:
        ups = set().union(*(reach.get(a, set()) for a in node.all_input_nodes))
        k = kind.get(str(node.target)) if node.op == "call_module" else None
        if k == "neuron":
            out[str(node.target)] = ups
        reach[node] = {str(node.target)} if k == "syn" else set() if k == "neuron" else ups
    return out


def _unfoldable_bn(model: nn.Module) -> str | None:
    """The first BatchNorm that ``fold_bn_pairs`` would leave (not right after a conv/linear in a Sequential)."""
    ok: set[int] = set()
    for seq in model.modules():
        if isinstance(seq, nn.Sequential):
            kids = list(seq._modules.values())
            ok.update(id(b) for a, b in zip(kids, kids[1:]) if isinstance(a, FOLDABLE) and isinstance(b, _BatchNorm))
    return next((n for n, m in model.named_modules() if isinstance(m, _BatchNorm) and id(m) not in ok), None)


def mint_layers(model: nn.Module) -> dict[str, MintWeight]:
    """The MINT-quantised synaptic layers of ``model``: qualified name → its ``MintWeight``."""
    out = {}
    for name, m in model.named_modules():
        if parametrize.is_parametrized(m, "weight"):
            for p in m.parametrizations.weight:     # type: ignore[union-attr]
                if isinstance(p, MintWeight):
                    out[name] = p
    return out


def int_add_pj(bits: int) -> float:
    """Energy of one integer add of ``bits`` bits at 45 nm: Horowitz (ISSCC 2014) gives 0.03 pJ (8 bit) and
    0.1 pJ (32 bit); linear between and through zero below 8 bits."""
    b = max(int(bits), 1)
    return 0.03 * b / 8 if b <= 8 else 0.03 + (b - 8) * 0.07 / 24


def accumulator_bits(model: nn.Module) -> int:
    """Bits (with sign) that hold every integer a quantised layer computes: ``max Σ|W_int| + |b_int|`` over its
    output neurons, plus the membrane's ``Q_u`` (0 when the model has no MINT layer)."""
    names = dict(model.named_modules())
    need = 0
    with torch.no_grad():
        for name, wq in mint_layers(model).items():
            layer = names[name]
            w = cast(Tensor, layer.weight)
            bound = w.abs().reshape(w.shape[0], -1).sum(1)
            bias = getattr(layer, "bias", None)
            if bias is not None:
                bound = bound + cast(Tensor, bias).abs()
            extra = 0
            neuron = names.get(wq.neuron) if wq.neuron else None
            if neuron is not None and getattr(neuron, "mint_state_bits", None):
                extra = _levels(neuron.mint_state_bits)            # type: ignore[union-attr]
            need = max(need, int(bound.max()) + extra)
    return math.ceil(math.log2(need + 1)) + 1 if need else 0


def _neuron_sizes(model: nn.Module, x: Tensor | None) -> dict[str, int] | None:
    """Neurons per sample of every neuron layer, from one forward pass (``x``, or zeros of the model's
    ``[1, in_channels, img_size, img_size]``); ``None`` when no input shape is known."""
    if x is None:
        c, size = getattr(model, "in_channels", None), getattr(model, "img_size", None)
        if not isinstance(c, int) or not isinstance(size, int):
            return None
        x = torch.zeros(1, c, size, size, device=next(model.parameters()).device)
    sizes: dict[str, int] = {}
    hooks = []
    for name, m in model.named_modules():
        if is_neuron(m):
            def hook(mod: nn.Module, args: Any, out: Tensor, name: str = name) -> None:
                sizes[name] = math.prod(out.shape[2:])
            hooks.append(m.register_forward_hook(hook))
    try:
        with eval_mode(model), torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return sizes


def memory_bits(model: nn.Module, x: Tensor | None = None) -> dict[str, Any]:
    """Weight and membrane memory of ``model`` in bits, as MINT counts it, and the same model in FP32.

    Weights: every synaptic layer's weights and bias at their bits (32 unless MINT-quantised: ``bits``, bias
    ``BIAS_BITS``; a BatchNorm counts as the bias it folds into). Membrane: one value per neuron (a second
    state variable is not counted) at 32 bits unless its layer quantises it. Neurons are counted on one
    forward pass of ``x`` (default: zeros of the model's input shape); without one, the membrane is left out.
    ``quantized_*`` count only the layers MINT quantises with their neurons (not the encoder, not the head):
    the paper's accounting.

    Returns:
        ``{"weight_bits", "membrane_bits", "total_bits", "fp32_total_bits", "reduction", "quantized_bits",
        "quantized_fp32_bits", "quantized_reduction"}`` (a reduction is FP32 memory over this memory).
    """
    q = mint_layers(model)
    named = dict(model.named_modules())
    hidden = {cast(str, wq.neuron) for wq in q.values() if not wq.readout}
    wbits = fp = hid = hid_fp = 0
    for name, m in named.items():
        if isinstance(m, _SYNAPSES):
            nw = cast(Tensor, m.weight).numel()
            nb = cast(Tensor, m.bias).numel() if getattr(m, "bias", None) is not None else 0
            bits = (q[name].bits * nw + BIAS_BITS * nb) if name in q else 32 * (nw + nb)
            wbits, fp = wbits + bits, fp + 32 * (nw + nb)
            if name in q and not q[name].readout:
                hid, hid_fp = hid + bits, hid_fp + 32 * (nw + nb)
        elif isinstance(m, _BatchNorm):               # counted as the bias it folds into
            wbits, fp = wbits + 32 * m.num_features, fp + 32 * m.num_features
    sizes = _neuron_sizes(model, x)
    mem = fp_mem = None
    if sizes is not None:
        mem = fp_mem = 0
        for k, n in sizes.items():
            bits = n * (getattr(named[k], "mint_state_bits", None) or 32)
            mem, fp_mem = mem + bits, fp_mem + 32 * n
            if k in hidden:
                hid, hid_fp = hid + bits, hid_fp + 32 * n
    total, fp_total = wbits + (mem or 0), fp + (fp_mem or 0)
    return {"weight_bits": wbits, "membrane_bits": mem, "total_bits": total, "fp32_total_bits": fp_total,
            "reduction": round(fp_total / max(total, 1), 2), "quantized_bits": hid, "quantized_fp32_bits": hid_fp,
            "quantized_reduction": round(hid_fp / hid, 2) if hid else None}


class MintQuantizer(Compressor):
    """``--quantize w2u2``: MINT quantisation-aware training (see the module docstring).

    Args:
        weight_bits: bits of the quantised weights, 2-8.
        state_bits: bits of the membrane potential, 2-8, or ``None`` for a full-precision membrane.
        shared_scale: one scale for a layer's weights and its neurons' membrane (needs
            ``state_bits == weight_bits``; the default when the membrane is quantised) or, ``False``, a
            separate learnable membrane scale.
        reset: ``"soft"`` (MINT's: subtract the threshold) or ``"hard"`` (to 0) for every neuron of the model.
        head_bits: bits of the classifier head (a synaptic layer that feeds no neuron), 2-8.
        init: a spikeforge checkpoint of the same model without ``--quantize`` (e.g. the FP32 run's
            ``checkpoints/last.safetensors``; a path without ``,`` or ``@``). At the start of training (not on
            ``--resume``) its weights and trained BatchNorms are loaded, folded and quantised, with ``β₀`` from
            the loaded weights. Without it, a from-scratch model's BatchNorms are folded untrained, which
            removes them: the run is warned.
    """

    name = "mint"
    flag = "quantize"

    def __init__(self, weight_bits: int = 2, state_bits: int | None = None, shared_scale: bool | None = None,
                 reset: str = "soft", head_bits: int = 8, init: str | None = None) -> None:
        self.weight_bits = _check_bits("weight_bits", weight_bits)
        self.state_bits = None if state_bits is None else _check_bits("state_bits", state_bits)
        self.head_bits = _check_bits("head_bits", head_bits)
        if shared_scale is not None and not isinstance(shared_scale, bool):
            raise CompressionError(f"shared_scale must be true or false, got {shared_scale!r}")
        if reset not in ("soft", "hard"):
            raise CompressionError(f"reset must be 'soft' or 'hard', got {reset!r}")
        self.reset = reset
        if init is not None and (not isinstance(init, str) or not init):
            raise CompressionError(f"init must be the path of a checkpoint, got {init!r}")
        self.init = init
        self._pristine: nn.Module | None = None
        self._untrained: list[str] = []
        self._model: nn.Module | None = None
        if self.state_bits is None:
            if shared_scale:
                raise CompressionError("shared_scale needs a quantised membrane: give state_bits (e.g. w2u2)")
            self.shared = False
        else:
            self.shared = True if shared_scale is None else shared_scale
            if self.shared and self.state_bits != self.weight_bits:
                wu = f"w{self.weight_bits}u{self.state_bits}"
                raise CompressionError(f"a shared scale needs equal weight and membrane bits, got {wu}; use "
                                       f"{wu}:separate or equal bits")

    @property
    def mode(self) -> str:
        """The membrane: ``"shared"``, ``"separate"`` or ``"fp"`` (full precision)."""
        return "fp" if self.state_bits is None else "shared" if self.shared else "separate"

    def spec(self) -> str:
        u = "" if self.state_bits is None else f"state_bits={self.state_bits},shared_scale={str(self.shared).lower()},"
        init = f",init={self.init}" if self.init else ""
        return f"mint:weight_bits={self.weight_bits},{u}reset={self.reset},head_bits={self.head_bits}{init}"

    def check(self, model: nn.Module) -> str | None:
        bn = _unfoldable_bn(model)
        if bn is not None:
            return (f"{bn} is a BatchNorm that does not directly follow a conv or linear layer; MINT folds every "
                    "BatchNorm into the weights before quantising, and cannot fold this one")
        plan = _plan(model)
        if len(plan) < 2:
            return (f"MINT keeps the first synaptic layer (the encoder) in full precision and quantises the rest; "
                    f"the model has {len(plan)} synaptic layer(s)")
        sources = _sources(model)
        for e in plan[1:]:
            if len(e.neurons) > 1:
                return (f"{e.name} is followed by {len(e.neurons)} neuron layers "
                        f"({', '.join(n for n, _ in e.neurons)}) before the next synaptic layer in module order; "
                        "MINT pairs each synaptic layer with the one neuron layer registered after it")
            for name, m in e.neurons:
                if sources is not None and sources.get(name, {e.name}) != {e.name}:
                    return (f"{name} receives the current of {', '.join(sorted(sources[name])) or 'no synaptic layer'}"
                            f", not of {e.name} alone; MINT needs each neuron layer fed by the one synaptic layer "
                            "registered before it")
                if type(m) not in _MINT_CLASS:
                    return f"{name} is a {type(m).__name__}; MINT quantises the membrane of LIF and IF neurons"
                n = cast(SpikingNeuron, m)
                if isinstance(n.v_threshold, nn.Parameter):
                    return f"{name} has a learnable threshold; MINT sets the threshold from the layer's scale"
                try:
                    surrogate_in_units(n.surrogate, 1.0)
                except CompressionError as err:
                    return f"{name}: {err}"
                if self.mode == "shared" and isinstance(n, LIF):
                    k = math.log2(n.tau / n.dt)
                    if not k.is_integer():
                        return (f"{name}: the integer membrane needs a power-of-two leak (a floor shift), but "
                                f"tau/dt = {n.tau / n.dt:g}; use tau = 2, 4, 8, ... steps")
        return None

    def apply(self, model: nn.Module) -> nn.Module:
        if self.flag in applied(model):
            self.mark(model)                     # raises: a model is quantised once
        why = self.check(model)
        if why is not None:
            raise CompressionError(f"--quantize {self.spec()}: {why}")
        if self.init:
            self._pristine = copy.deepcopy(model)
        self._untrained = [n for n, m in model.named_modules() if isinstance(m, _BatchNorm)
                           and m.num_batches_tracked is not None and not m.num_batches_tracked]
        self._model = model
        fold_bn_pairs(model)
        for m in model.modules():
            if type(m) in _MINT_CLASS:
                cast(SpikingNeuron, m).v_reset = None if self.reset == "soft" else 0.0
        for e in _plan(model)[1:]:
            self._quantize(e)
        return self.mark(model)

    def _quantize(self, e: _Entry) -> None:
        w = cast(Tensor, e.layer.weight).detach()
        readout = not e.neurons
        bits = self.head_bits if readout else self.weight_bits
        if readout:       # the official head is full precision; ours is integer: clip at max|tanh W| (no clipping)
            beta0 = float(torch.tanh(w).abs().max())
        else:             # the official initialisation: 2·mean|W| / sqrt(Q)
            beta0 = float(2 * w.abs().mean() / math.sqrt(_levels(bits)))
        wq = MintWeight(bits, max(beta0, 1e-4), readout, None if readout else e.neurons[0][0])
        parametrize.register_parametrization(e.layer, "weight", wq)
        if getattr(e.layer, "bias", None) is not None:
            parametrize.register_parametrization(e.layer, "bias", MintBias(wq))
        e.layer.register_forward_hook(wq.output)
        for _, m in e.neurons:
            n = cast(Any, m)
            n.__class__ = _MINT_CLASS[type(n)]
            n.__dict__["_mint_weight"] = wq
            n.mint_mode, n.mint_state_bits = self.mode, self.state_bits
            if self.mode == "shared" and isinstance(n, LIF):
                n.leak_shift = int(math.log2(n.tau / n.dt))
            if self.mode == "separate":
                th = n.v_threshold
                n.mint_membrane_beta = nn.Parameter(torch.tensor(float(th.mean()) if isinstance(th, Tensor)
                                                                 else float(th), device=w.device))

    def callbacks(self) -> list[Any]:
        from ..training import Callback

        outer = self

        class _Start(Callback):
            def on_fit_start(self, trainer: Any) -> None:
                if trainer.state.step:                   # resumed: the checkpoint holds everything
                    return
                if outer.init:
                    outer.load_init()
                elif outer._untrained:
                    warnings.warn(f"--quantize {outer.spec()}: MINT folds BatchNorm into the weights before "
                                  f"quantisation-aware training, and {', '.join(outer._untrained)} is untrained: "
                                  "folding removes it, so the model trains without normalisation (and may not "
                                  "fire at all); start from a trained model with init=CHECKPOINT", stacklevel=1)

        return [_Start()]

    def load_init(self) -> None:
        """Load ``init`` into the model this compressor was applied to: its weights and BatchNorms go into a
        copy of the model as it was before ``apply``, which is folded and quantised (``β₀`` from the loaded
        weights) and copied over."""
        from ..training import load_checkpoint

        if self._pristine is None or self._model is None:
            raise CompressionError(f"--quantize {self.spec()}: apply the compressor to a model before loading init")
        state = load_checkpoint(self.init)["model"]      # type: ignore[arg-type]
        fresh = copy.deepcopy(self._pristine)
        own = fresh.state_dict()
        bad = ([f"{k} is missing" for k in own if k not in state]
               + [f"{k} is unexpected" for k in state if k not in own]
               + [f"{k} has shape {tuple(state[k].shape)}, the model {tuple(v.shape)}" for k, v in own.items()
                  if k in state and state[k].shape != v.shape])
        if bad:
            raise CompressionError(f"--quantize {self.spec()}: init {self.init} does not fit the model ({bad[0]}); "
                                   "give a checkpoint of the same model trained without --quantize")
        fresh.load_state_dict(state)
        MintQuantizer(self.weight_bits, self.state_bits, self.shared if self.state_bits else None, self.reset,
                      self.head_bits).apply(fresh)
        # the model may carry other compressors' state besides (a pruning mask): theirs is kept as it is
        res = self._model.load_state_dict(fresh.state_dict(), strict=False)
        if res.unexpected_keys:
            raise CompressionError(f"--quantize {self.spec()}: init {self.init} gives {res.unexpected_keys[0]}, which "
                                   "the quantised model lacks")

    def describe(self, model: nn.Module) -> dict[str, Any]:
        mem = memory_bits(model)
        out: dict[str, Any] = {"weight_bits": self.weight_bits,
                               "membrane_bits": self.state_bits if self.state_bits else "fp32",
                               "scale": self.mode, "head_bits": self.head_bits,
                               "weight_memory_bits": mem["weight_bits"], "membrane_memory_bits": mem["membrane_bits"],
                               "memory_bits": mem["total_bits"], "fp32_memory_bits": mem["fp32_total_bits"],
                               "memory_reduction": mem["reduction"],
                               "quantized_layers_memory_bits": mem["quantized_bits"],
                               "quantized_layers_reduction": mem["quantized_reduction"]}
        if self.mode == "shared":
            acc = accumulator_bits(model)
            out.update(accumulator_bits=acc, e_ac_pj=round(int_add_pj(acc), 4))
        return out

    def energy_model(self, model: nn.Module) -> Any:
        """The report's energy per operation: with a shared scale every accumulate after the encoder is an
        integer add of ``accumulator_bits`` (``int_add_pj``), the encoder's MACs stay FP32 (4.6 pJ); the
        other modes accumulate into a full-precision or rescaled membrane (``None``: the FP32 default)."""
        if self.mode != "shared":
            return None
        from ..analysis import EnergyModel
        return EnergyModel(e_ac_pj=int_add_pj(accumulator_bits(model)))


COMPRESSORS.register("mint", MintQuantizer, flag="quantize",
                     summary="MINT: uniform weights + membrane with one learnable scale per layer, integer-only "
                             "inference (Yin et al. 2024); --quantize w2u2[:separate]")

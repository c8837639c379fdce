"""Integer-only inference of a MINT model: ``to_integer(model)``.

A model quantised with a shared scale (``--quantize w<b>u<b>``, ``MintQuantizer``) already trains in LSBs
of each layer's scale, with integer currents, an integer threshold, a floor-shift leak and an integer
membrane clamped to ``[−Q, Q]`` (``spikeforge.compress.mint``). ``to_integer`` returns a copy in which every
layer after the encoder runs on integer tensors and reproduces the training path's spikes bit for bit:

* the encoder (the first synaptic layer and the neurons it feeds) stays in floating point; its neurons are
  wrapped in ``EncoderSpikes``, which hands their spikes on as ``int8``;
* each quantised synaptic layer becomes an ``IntegerSynapse``: ``int8`` weights ``W_int`` and an ``int32``
  bias ``b_int``, applied to the integer input with **``int32`` accumulation** (``torch``'s ``int8``
  convolution would wrap silently: 64 channels × 3×3 × weight 3 = 1,728 does not fit in 8 bits);
* each quantised neuron layer becomes an ``IntegerLIF`` (see its docstring for the step) with ``int32``
  state, emitting ``int8`` spikes;
* the classifier head is an ``IntegerSynapse`` too: the model's output is the ``int32`` current, and
  ``scale · output`` is the float model's logits exactly (``IntegerSynapse.scale``).

The integer model runs on the CPU (torch has no integer convolution on CUDA). Max pooling, flattening and
the time folding between them work on integer tensors as they are. Average pooling after the encoder (a
fraction of a spike), a separate-scale or full-precision membrane and an unfolded BatchNorm have no integer
form: ``to_integer`` refuses them, naming the layer.
"""

from __future__ import annotations

import copy
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..neurons import LIF
from .base import CompressionError
from .mint import _plan, accumulator_bits, mint_layers

__all__ = ["IntegerSynapse", "IntegerLIF", "EncoderSpikes", "to_integer"]

_AVG_POOLS = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
              nn.AdaptiveAvgPool3d)
_CONV = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}


class IntegerSynapse(nn.Module):
    """``I = W_int ⋆ x + b_int`` on integers: ``int8`` weights, ``int32`` bias and accumulation.

    Args:
        name: the layer's name in the model (for errors).
        layer: the ``Linear`` / ``Conv1d/2d/3d`` it replaces (its geometry: stride, padding, dilation, groups).
        weight: ``W_int`` as integers in ``[−127, 127]``.
        bias: ``b_int`` or ``None``.
        scale: one output LSB in real units (``s = β/Q``): for the classifier head, ``scale · I`` are the
            float model's logits.

    Shapes: ``x [N, C_in, ...]`` (any integer dtype: ``int8`` spikes) → ``int32 [N, C_out, ...]``.
    """

    fx_leaf = True
    weight: Tensor
    bias: Tensor | None

    def __init__(self, name: str, layer: nn.Module, weight: Tensor, bias: Tensor | None, scale: float) -> None:
        super().__init__()
        self.name, self.scale = name, float(scale)
        self.register_buffer("weight", weight.to(torch.int8))
        self.register_buffer("bias", None if bias is None else bias.to(torch.int32))
        base = next((t for t in (nn.Linear, *_CONV) if isinstance(layer, t)), None)
        if base is None:
            raise CompressionError(f"to_integer: {name} is a {type(layer).__name__}, not a Linear or Conv layer")
        self.kind = base.__name__
        self.conv: dict[str, Any] = {}
        if not isinstance(layer, nn.Linear):
            if getattr(layer, "padding_mode", "zeros") != "zeros":
                raise CompressionError(f"to_integer: {name} pads with {layer.padding_mode!r}; only zero padding "
                                       "is supported")
            self.conv = {k: getattr(layer, k) for k in ("stride", "padding", "dilation", "groups")}

    def forward(self, x: Tensor) -> Tensor:
        if x.is_floating_point():
            raise CompressionError(f"{self.name}: integer inference got a {x.dtype} input; every layer after the "
                                   "encoder needs integer inputs (spikes, max-pooled spikes)")
        x, w = x.to(torch.int32), self.weight.to(torch.int32)
        if self.kind == "Linear":
            return F.linear(x, w, self.bias)
        return cast(Tensor, _CONV[getattr(nn, self.kind)](x, w, self.bias, **self.conv))

    def extra_repr(self) -> str:
        return f"{self.kind}, weight={tuple(self.weight.shape)} int8, scale={self.scale:.6g}"


class IntegerLIF(nn.Module):
    """The integer neuron of a MINT layer (``int32`` state ``V``, ``int8`` spikes), per step::

        H = V + ((X − (V − V_rest)) >> k)      (decay_input; else H = V − ((V − V_rest) >> k) + X;
                                                 IF, leak_shift=None: H = V + X)
        S = [H ≥ θ]
        V = H − θ·S  (soft reset)   or   V = S ? V_reset : H  (hard reset)
        V = clamp(V, lo, hi)

    ``>>`` is the arithmetic right shift (floor division by ``2^k``), ``V_rest`` is 0 for a soft reset and
    ``V_reset`` for a hard one; ``V`` starts at ``V_rest``. No multiplication anywhere.

    Args:
        theta: integer threshold ``θ`` (a scalar, or per channel, broadcastable to one step of input).
        leak_shift: ``k`` of the leak ``2^−k``, or ``None`` for no leak (``IF``).
        decay_input: whether the leak also scales the input (``LIF(decay_input=True)``).
        v_reset: ``None`` for a soft reset, else the integer ``V_reset`` of a hard reset.
        lo: lower clamp of ``V`` (``−Q``), or ``None``.
        hi: upper clamp of ``V`` (``Q``), or ``None``.

    Shapes: ``x_seq [T, B, ...]`` integers → spikes ``int8 [T, B, ...]``.
    """

    fx_leaf = True
    theta: Tensor

    def __init__(self, theta: Tensor | int, leak_shift: int | None, decay_input: bool = True,
                 v_reset: int | None = None, lo: int | None = None, hi: int | None = None) -> None:
        super().__init__()
        self.register_buffer("theta", torch.as_tensor(theta).to(torch.int32))
        self.leak_shift, self.decay_input, self.v_reset, self.lo, self.hi = leak_shift, decay_input, v_reset, lo, hi

    def step(self, x: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """One step: ``(x [B, ...], v) → (spikes int8, v)``, all ``int32`` arithmetic."""
        rest = 0 if self.v_reset is None else self.v_reset
        k = self.leak_shift
        if k is None:
            h = v + x
        elif self.decay_input:
            h = v + torch.bitwise_right_shift(x - (v - rest), k)
        else:
            h = v - torch.bitwise_right_shift(v - rest, k) + x
        s = h >= self.theta
        v = torch.where(s, h - self.theta, h) if self.v_reset is None else torch.where(s, self.v_reset, h)
        if self.lo is not None or self.hi is not None:
            v = torch.clamp(v, self.lo, self.hi)
        return s.to(torch.int8), v

    def run(self, x_seq: Tensor, v: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``x_seq [T, B, ...] → (spikes int8 [T, B, ...], final v)`` from ``v`` (default: at rest)."""
        if x_seq.is_floating_point():
            raise CompressionError(f"IntegerLIF got a {x_seq.dtype} input; it runs on integer currents")
        x_seq = x_seq.to(torch.int32)
        if v is None:
            v = torch.full_like(x_seq[0], 0 if self.v_reset is None else self.v_reset)
        out = []
        for x in x_seq:
            s, v = self.step(x, v)
            out.append(s)
        return torch.stack(out), v

    def forward(self, x_seq: Tensor) -> Tensor:
        """Spikes of ``x_seq [T, B, ...]`` from rest."""
        return self.run(x_seq)[0]

    def extra_repr(self) -> str:
        th = int(self.theta) if self.theta.numel() == 1 else f"tensor{tuple(self.theta.shape)}"
        reset = "soft" if self.v_reset is None else f"hard to {self.v_reset}"
        return (f"theta={th}, leak_shift={self.leak_shift}, decay_input={self.decay_input}, reset={reset}, "
                f"clamp=[{self.lo}, {self.hi}]")


class EncoderSpikes(nn.Module):
    """A floating-point neuron of the encoder whose (binary) spikes leave as ``int8``.

    Args:
        neuron: the encoder's neuron module.
    """

    fx_leaf = True

    def __init__(self, neuron: nn.Module) -> None:
        super().__init__()
        self.neuron = neuron

    def forward(self, x: Tensor) -> Tensor:
        s = self.neuron(x)
        if not bool(((s == 0) | (s == 1)).all()):
            raise CompressionError(f"the encoder neuron {type(self.neuron).__name__} emits values other than 0 and 1; "
                                   "integer inference needs binary spikes after the encoder")
        return cast(Tensor, s.to(torch.int8))


def _set(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, new)


def _integers(t: Tensor, what: str, lim: int) -> Tensor:
    t = t.detach()
    if not bool((t == t.round()).all()) or float(t.abs().max()) > lim:
        raise CompressionError(f"to_integer: {what} is not made of integers in [-{lim}, {lim}] (a parametrisation "
                               "other than MINT's changed it?)")
    return t


def to_integer(model: nn.Module) -> nn.Module:
    """A copy of a MINT-quantised ``model`` (shared scale) that runs every layer after the encoder on
    integers, with spikes bit-identical to the model's at every layer and step (see the module docstring).

    Args:
        model: a model quantised by ``MintQuantizer`` with ``shared_scale`` (``--quantize w<b>u<b>``).

    Returns:
        The integer model, in evaluation mode: ``int32`` outputs ``[T, B, num_classes]`` (logits = the head's
        ``IntegerSynapse.scale`` × output).

    Raises:
        CompressionError: the model is not MINT-quantised with a shared scale, holds an unfolded BatchNorm or an
            average pooling after the encoder, or its integers would not fit (each names the layer).
    """
    names = dict(model.named_modules())
    q = mint_layers(model)
    if not q:
        raise CompressionError("to_integer: the model is not MINT-quantised; quantise it first "
                               "(--quantize w<b>u<b>, spikeforge.compress.MintQuantizer)")
    for name, m in names.items():
        if isinstance(m, _BatchNorm):
            raise CompressionError(f"to_integer: {name} is an unfolded {type(m).__name__}; integer inference needs "
                                   "it folded into the layer before it before quantisation-aware training "
                                   "(MintQuantizer does this; spikeforge.layers.fold_bn_pairs)")
    plan = _plan(model)
    order = list(names)
    encoder = plan[0]
    if not encoder.neurons:
        raise CompressionError(f"to_integer: the encoder {encoder.name} feeds no neuron, so the next layer would "
                               "get real values")
    start = order.index(encoder.name)
    for name in order[start:]:
        if isinstance(names[name], _AVG_POOLS):
            raise CompressionError(f"to_integer: {name} ({type(names[name]).__name__}) averages spikes into "
                                   "fractions after the encoder; integer inference needs max pooling "
                                   "(e.g. spiking_cnn_tiny(pool='max'))")
    last = plan[-1].name
    for name, wq in q.items():
        if wq.readout and name != last:
            raise CompressionError(f"to_integer: {name} feeds no neuron but is not the last synaptic layer; its real "
                                   "output would reach the next layer")
        if not wq.readout:
            n = names[cast(str, wq.neuron)]
            if getattr(n, "mint_mode", None) != "shared":
                raise CompressionError(f"to_integer: {wq.neuron} has a {getattr(n, 'mint_mode', 'full-precision')} "
                                       "membrane; integer inference needs the shared scale (--quantize w<b>u<b>)")
    acc = accumulator_bits(model)
    if acc > 24:
        raise CompressionError(f"to_integer: the layers' sums need {acc} bits; the float32 training path is exact "
                               "only up to 24")
    out = copy.deepcopy(model).eval()
    with torch.no_grad():
        for name, wq in q.items():
            layer = names[name]
            w = _integers(cast(Tensor, layer.weight), f"{name}.weight", 127)
            b = getattr(layer, "bias", None)
            b = None if b is None else _integers(cast(Tensor, b), f"{name}.bias", 2**31 - 1)
            _set(out, name, IntegerSynapse(name, layer, w, b, float(wq.scale())))
            if wq.readout:
                continue
            n = names[cast(str, wq.neuron)]
            p = n.params()                                      # type: ignore[operator]
            lv = n.mint_state_bits                              # type: ignore[union-attr]
            levels = int(2 ** (lv - 1) - 1)
            theta = _integers(torch.as_tensor(p.v_threshold), f"{wq.neuron} threshold", 2**31 - 1)
            _set(out, cast(str, wq.neuron), IntegerLIF(
                theta, n.leak_shift if isinstance(n, LIF) else None, bool(getattr(n, "decay_input", True)),
                None if n.v_reset is None else int(cast(float, n.v_reset)), -levels, levels))
        for nname, _ in encoder.neurons:
            _set(out, nname, EncoderSpikes(out.get_submodule(nname)))
    return out.requires_grad_(False)

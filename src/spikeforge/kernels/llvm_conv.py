"""Direct 2-d convolution on the CPU for a layer with few input channels: the first conv of a spiking CNN.

A network's first conv reads event frames (2 polarity channels) or a grey image (1 channel). oneDNN's kernels
block over input channels, so with 1–4 of them most of each vector is idle: on the ``spiking_cnn_tiny`` step
(``[320, 2, 34, 34] → 16`` channels) the first conv's forward takes as long as the second's, which does 4× the
arithmetic, and the channels-last input it wants costs a layout copy of the frames first. Here each output pixel's
``C_out`` channels are one vector (or a few), and each of the ``C_in·K_h·K_w`` taps is one fused multiply-add of
the input value, broadcast, by the tap's weight vector held in a register:

* forward: per image, the input (any strides: NCHW or channels-last, no copy first) is copied into a
  zero-bordered buffer of the thread's, then every output pixel sums its taps; the output is channels-last;
* backward: the weight gradient sums ``input tap × output gradient`` per image in registers (one partial per
  image, summed by torch afterwards in a fixed order: the same bits for any thread count); the bias gradient is
  the output gradient summed; an input gradient, when one is needed, comes from torch's own
  ``convolution_backward``.

A kernel is compiled per geometry (``C_in``, kernel size, padding, ``C_out``: constants, so the taps unroll and
the weights stay in registers), cached on disk like every LLVM kernel. ``why_not(conv, x)`` says when torch's
convolution runs instead (stride, dilation, groups, padding mode, dtype, more than ``MAX_IN`` input channels,
weights not channels-last, ...); ``conv2d_few(conv, x)`` runs it. Values and gradients equal torch's to float32
rounding (the sums run in another order).
"""

from __future__ import annotations

import threading
from typing import Any

import torch
from llvmlite import ir
from torch import Tensor, fx, nn

from ..core.hooks import hooks_why_not
from .llvm_backend import _run
from .llvm_kernels import _PROTO, _abi_function, _c, _link, _loop, _tm, _vload, _vstore, cached_object, vector_width
from .llvm_ops import Lanes, _intrinsic

__all__ = ["conv2d_few", "why_not", "geometry", "forward", "weight_grad", "input_grad", "MAX_IN"]

MAX_IN = 4              # input channels up to which the direct kernel runs
MAX_TAPS = 64           # C_in·K_h·K_w up to which the taps are unrolled
MAX_OUT = 256           # output channels
I64, I32, F32 = ir.IntType(64), ir.IntType(32), ir.FloatType()


class _Geo:
    """The compile-time part of a conv: input channels, kernel size, padding, output channels."""

    def __init__(self, cin: int, kh: int, kw: int, ph: int, pw: int, cout: int) -> None:
        self.cin, self.kh, self.kw, self.ph, self.pw, self.cout = cin, kh, kw, ph, pw, cout
        self.W = vector_width(32)
        self.chunks = -(-cout // self.W)
        self.cop = self.chunks * self.W          # output channels padded to whole vectors (weights, partials)
        self.taps = [(c, i, j) for c in range(cin) for i in range(kh) for j in range(kw)]

    @property
    def name(self) -> str:
        return f"{self.cin}x{self.kh}x{self.kw}p{self.ph}x{self.pw}o{self.cout}"


def _mask(g: _Geo, chunk: int) -> ir.Constant | None:
    """The lanes of output-channel chunk ``chunk`` that are real channels; ``None`` when all are."""
    n = g.cout - chunk * g.W
    if n >= g.W:
        return None
    return ir.Constant(ir.VectorType(ir.IntType(1), g.W), [ir.Constant(ir.IntType(1), int(k < n)) for k in range(g.W)])


def _masked(b: ir.IRBuilder, kind: str, ptr: ir.Value, mask: ir.Constant, value: ir.Value | None = None) -> Any:
    """``llvm.masked.load`` (the masked-off lanes read as 0) or ``llvm.masked.store`` of a float32 vector."""
    vt = mask.type.count
    vty = ir.VectorType(F32, vt)
    p = b.bitcast(ptr, vty.as_pointer())
    name = f"llvm.masked.{kind}.v{vt}f32.p0"
    fn = b.module.globals.get(name)
    if kind == "load":
        if fn is None:
            fn = ir.Function(b.module, ir.FunctionType(vty, [vty.as_pointer(), I32, mask.type, vty]), name=name)
        return b.call(fn, [p, ir.Constant(I32, 4), mask, ir.Constant(vty, [ir.Constant(F32, 0.0)] * vt)])
    if fn is None:
        fn = ir.Function(b.module, ir.FunctionType(ir.VoidType(), [vty, vty.as_pointer(), I32, mask.type]), name=name)
    return b.call(fn, [value, p, ir.Constant(I32, 4), mask])


def _pad_image(b: ir.IRBuilder, g: _Geo, x: ir.Value, work: ir.Value, n: ir.Value, geo: list[ir.Value]) -> None:
    """``work[c, ph + i, pw + j] = x[n, c, i, j]`` inside a zero border (``work``: ``[C_in, H + 2ph, W + 2pw]``)."""
    H, Wd, _, _, sN, sC, sH, sW = geo
    Hp, Wp = b.add(H, _c(2 * g.ph)), b.add(Wd, _c(2 * g.pw))
    with _loop(b, _c(0), b.mul(_c(g.cin), b.mul(Hp, Wp)), 1, "z") as z:
        b.store(ir.Constant(F32, 0.0), b.gep(work, [z], inbounds=True))
    with _loop(b, _c(0), _c(g.cin), 1, "pc") as c:
        with _loop(b, _c(0), H, 1, "pi") as i:
            src = b.add(b.add(b.mul(n, sN), b.mul(c, sC)), b.mul(i, sH))
            dst = b.add(b.mul(b.add(b.mul(c, Hp), b.add(i, _c(g.ph))), Wp), _c(g.pw))
            with _loop(b, _c(0), Wd, 1, "pj") as j:
                v = b.load(b.gep(x, [b.add(src, b.mul(j, sW))], inbounds=True))
                b.store(v, b.gep(work, [b.add(dst, j)], inbounds=True))


def _tap_offsets(b: ir.IRBuilder, g: _Geo, Hp: ir.Value, Wp: ir.Value) -> list[ir.Value]:
    """Each tap's offset in the padded image from its output pixel's top-left input."""
    return [b.add(b.mul(b.add(b.mul(_c(c), Hp), _c(i)), Wp), _c(j)) for c, i, j in g.taps]


KINDS = ("fwd", "fwdstats", "wgrad", "wgradaff")


def _build(mod: ir.Module, g: _Geo) -> None:
    """The four kernels of one geometry. ints ``[_, _, block lo, block hi, images per block, N]``; geo (int64)
    ``[H, W, Ho, Wo, sN, sC, sH, sW]`` (the input's strides in elements); the output and gradients are
    ``[N, Ho, Wo, C_out]`` (channels-last); ``work`` is the thread's padded image.

    * ``fwd``: ptrs ``x, wt [taps, cop], bias [cop], out, geo, work``;
    * ``fwdstats``: the same with ``stats [N, 2, cop]`` (float64: each image's per-channel ``Σu``, ``Σu²``)
      after ``out``;
    * ``wgrad``: ptrs ``x, gout, part [N, taps, cop], geo, work``;
    * ``wgradaff``: ptrs ``x, gu, u, k2 [cop], k1 [cop], part, geo, work``, the output gradient being
      ``fma(u, k2, gu) + k1`` per channel (a batch norm's input gradient, ``llvm_stats.channel_affine_add_``'s
      bits), never written."""
    for kind in KINDS:
        _build_one(mod, g, kind)


def _build_one(mod: ir.Module, g: _Geo, kind: str) -> None:
    W, L = g.W, Lanes(32, g.W)
    LD = Lanes(64, g.W)
    b = _abi_function(mod, f"sf_conv_{kind}_{g.name}")
    fn = b.function
    names = {"fwd": ("x", "wt", "bias", "out"), "fwdstats": ("x", "wt", "bias", "out", "stats"),
             "wgrad": ("x", "gout", "part"), "wgradaff": ("x", "gout", "u", "k2", "k1", "part")}[kind]
    raw = [b.load(b.gep(fn.args[0], [_c(k)])) for k in range(len(names) + 2)]
    ptr = {nm: b.bitcast(raw[k], (ir.DoubleType() if nm == "stats" else F32).as_pointer())
           for k, nm in enumerate(names)}
    ints = [b.load(b.gep(fn.args[1], [_c(k)])) for k in range(6)]
    blo, bhi, per, N = ints[2], ints[3], ints[4], ints[5]
    geo_p = b.bitcast(raw[len(names)], I64.as_pointer())
    geo = [b.load(b.gep(geo_p, [_c(k)])) for k in range(8)]
    work = b.bitcast(raw[len(names) + 1], F32.as_pointer())
    Ho, Wo = geo[2], geo[3]
    Hp, Wp = b.add(geo[0], _c(2 * g.ph)), b.add(geo[1], _c(2 * g.pw))
    accs = [b.alloca(L.ty) for _ in g.taps] if kind.startswith("wgrad") else []
    sums = [b.alloca(LD.ty) for _ in range(2)] if kind == "fwdstats" else []
    lo = b.mul(blo, per)
    hi = b.select(b.icmp_signed("<", b.mul(bhi, per), N), b.mul(bhi, per), N)
    ntap = len(g.taps)

    def load_out(name: str, at: ir.Value, mask: ir.Constant | None) -> ir.Value:
        return (_vload(b, ptr[name], at, W) if mask is None
                else _masked(b, "load", b.gep(ptr[name], [at], inbounds=True), mask))

    with _loop(b, lo, hi, 1, "n") as n:
        _pad_image(b, g, ptr["x"], work, n, geo)
        offs = _tap_offsets(b, g, Hp, Wp)
        for ch in range(g.chunks):
            mask = _mask(g, ch)
            if kind.startswith("fwd"):           # the chunk's tap weights, loaded once per image, in registers
                wv = [_vload(b, ptr["wt"], _c(t * g.cop + ch * W), W) for t in range(ntap)]
                bv = _vload(b, ptr["bias"], _c(ch * W), W)
            else:
                for a in accs:
                    b.store(L.c(0.0), a)
            if kind == "wgradaff":
                k2, k1 = (_vload(b, ptr[k], _c(ch * W), W) for k in ("k2", "k1"))
            for a in sums:
                b.store(LD.c(0.0), a)
            with _loop(b, _c(0), Ho, 1, "oh") as oh:
                row = b.mul(oh, Wp)
                orow = b.mul(b.add(b.mul(n, Ho), oh), Wo)
                with _loop(b, _c(0), Wo, 1, "ow") as ow:
                    base = b.add(row, ow)
                    at = b.add(b.mul(b.add(orow, ow), _c(g.cout)), _c(ch * W))
                    taps = [L.splat(b, b.load(b.gep(work, [b.add(base, off)], inbounds=True))) for off in offs]
                    if kind.startswith("fwd"):
                        acc = bv
                        for t in range(ntap):
                            acc = _intrinsic(b, "fma", L, taps[t], wv[t], acc)
                        if mask is None:
                            _vstore(b, acc, ptr["out"], at, W)
                        else:
                            _masked(b, "store", b.gep(ptr["out"], [at], inbounds=True), mask, acc)
                        if sums:
                            d = b.fpext(acc, LD.ty)
                            b.store(b.fadd(b.load(sums[0]), d), sums[0])
                            b.store(_intrinsic(b, "fma", LD, d, d, b.load(sums[1])), sums[1])
                    else:
                        gv = load_out("gout", at, mask)
                        if kind == "wgradaff":
                            gv = b.fadd(_intrinsic(b, "fma", L, load_out("u", at, mask), k2, gv), k1)
                        for t in range(ntap):
                            b.store(_intrinsic(b, "fma", L, taps[t], gv, b.load(accs[t])), accs[t])
            if kind.startswith("wgrad"):
                prow = b.mul(n, _c(ntap * g.cop))
                for t, a in enumerate(accs):
                    _vstore(b, b.load(a), ptr["part"], b.add(prow, _c(t * g.cop + ch * W)), W)
            for q, a in enumerate(sums):
                _vstore(b, b.load(a), ptr["stats"], b.add(b.mul(b.add(b.mul(n, _c(2)), _c(q)), _c(g.cop)),
                                                          _c(ch * W)), W)
    b.ret_void()


_kernels: dict[str, dict[str, tuple[Any, int]]] = {}
_lock = threading.Lock()


def _get(g: _Geo) -> dict[str, tuple[Any, int]]:
    with _lock:
        k = _kernels.get(g.name)
        if k is None:
            mod = ir.Module(name=f"sf_conv_{g.name}")
            mod.triple = _tm().triple
            _build(mod, g)
            names = [f"sf_conv_{kind}_{g.name}" for kind in KINDS]
            addrs = _link(cached_object("conv", str(mod), optimise=True), *names)
            k = _kernels[g.name] = {kind: (_PROTO(a), a) for kind, a in zip(KINDS, addrs)}
        return k


def _launch(g: _Geo, kind: str, ptrs: list[int], x: Tensor, out_hw: tuple[int, int]) -> None:
    N, _, H, Wd = x.shape
    geo = torch.tensor([H, Wd, *out_hw, *x.stride()], dtype=torch.int64)
    nt = max(1, min(torch.get_num_threads(), N))
    per = max(1, -(-N // (4 * nt)))             # four blocks of images per thread
    work = [torch.empty(g.cin * (H + 2 * g.ph) * (Wd + 2 * g.pw), dtype=torch.float32) for _ in range(nt)]
    fn, addr = _get(g)[kind]
    _run(fn, -(-N // per), [0, 0, 0, 0, per, N], [*ptrs, geo.data_ptr(), 0], [], work, addr=addr)


def geometry(conv: nn.Conv2d) -> _Geo:
    """The compile-time geometry of a conv that ``why_not`` accepts."""
    m: Any = conv                      # why_not has checked that the padding is numeric
    (kh, kw), (ph, pw) = m.kernel_size, m.padding
    return _Geo(m.in_channels, kh, kw, int(ph), int(pw), m.out_channels)


def _padded(v: Tensor | None, g: _Geo) -> Tensor:
    """A per-output-channel float32 vector padded with zeros to whole lane vectors (``None``: all zeros)."""
    out = torch.zeros(g.cop)
    if v is not None:
        out[:g.cout] = v.detach()
    return out


def _nhwc(t: Tensor) -> Tensor:
    """``[N, C, H, W]`` as its ``[N, H, W, C]`` memory (no copy for a channels-last tensor)."""
    return t.to(torch.float32).permute(0, 2, 3, 1).contiguous()


def forward(x: Tensor, weight: Tensor, bias: Tensor | None, g: _Geo, stats: bool = False
            ) -> tuple[Tensor, Tensor | None]:
    """The conv's output (channels-last ``[N, C_out, Ho, Wo]``) and, with ``stats``, each output channel's
    ``Σu`` and ``Σu²`` over ``N, Ho, Wo`` (float64 ``[2, C_out]``: summed per image in the kernel, the images
    by torch in order). No autograd."""
    N, _, H, Wd = x.shape
    Ho, Wo = H + 2 * g.ph - g.kh + 1, Wd + 2 * g.pw - g.kw + 1
    wt = torch.zeros(len(g.taps), g.cop)
    wt[:, :g.cout] = weight.detach().permute(1, 2, 3, 0).reshape(len(g.taps), g.cout)
    bv = _padded(bias, g)
    out = torch.empty(N, Ho, Wo, g.cout)
    part = torch.zeros(N, 2, g.cop, dtype=torch.float64) if stats else None
    if out.numel():
        ptrs = [x.data_ptr(), wt.data_ptr(), bv.data_ptr(), out.data_ptr()]
        if part is not None:
            ptrs.append(part.data_ptr())
        _launch(g, "fwdstats" if stats else "fwd", ptrs, x, (Ho, Wo))
    sums = part.sum(0)[:, :g.cout] if part is not None else None
    return out.permute(0, 3, 1, 2), sums


def weight_grad(x: Tensor, gout: Tensor, g: _Geo, affine: tuple[Tensor, Tensor, Tensor] | None = None) -> Tensor:
    """The weight gradient ``[C_out, C_in, K_h, K_w]`` for the output gradient ``gout``, or, with ``affine = (u, k2,
    k1)`` (``u`` the conv's output, ``k2``, ``k1`` float32 ``[C_out]``), for ``fma(u, k2, gout) + k1`` per channel
    computed on the fly (the bits of ``llvm_stats.channel_affine_add_``). No autograd."""
    N = x.shape[0]
    part = torch.empty(N, len(g.taps), g.cop)
    if part.numel() and gout.numel():
        go = _nhwc(gout)
        hw = (go.shape[1], go.shape[2])
        if affine is None:
            _launch(g, "wgrad", [x.data_ptr(), go.data_ptr(), part.data_ptr()], x, hw)
        else:
            u = _nhwc(affine[0])
            k2, k1 = _padded(affine[1], g), _padded(affine[2], g)
            _launch(g, "wgradaff", [x.data_ptr(), go.data_ptr(), u.data_ptr(), k2.data_ptr(), k1.data_ptr(),
                                    part.data_ptr()], x, hw)
        gw = part.sum(0)[:, :g.cout]
    else:
        gw = torch.zeros(len(g.taps), g.cout)
    return gw.reshape(g.cin, g.kh, g.kw, g.cout).permute(3, 0, 1, 2)


def _aten_backward(gout: Tensor, x: Tensor, weight: Tensor, g: _Geo, need: list[bool]) -> tuple[Tensor, ...]:
    """torch's ``convolution_backward`` for this geometry: the gradients of input, weight and bias where ``need``
    (the bias's only with ``need[2]``); differentiable itself under ``create_graph``."""
    return torch.ops.aten.convolution_backward(gout, x, weight, [g.cout] if need[2] else None, [1, 1],
                                               [g.ph, g.pw], [1, 1], False, [0, 0], 1, need)


def input_grad(x: Tensor, weight: Tensor, gout: Tensor, g: _Geo) -> Tensor:
    """The input gradient, from torch's ``convolution_backward``."""
    return _aten_backward(gout, x, weight, g, [True, False, False])[0]


class _ConvFew(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, g: _Geo) -> Tensor:  # type: ignore[override]
        out, _ = forward(x, weight, bias, g)
        ctx.save_for_backward(x, weight)
        ctx.g, ctx.has_bias = g, bias is not None
        return out

    @staticmethod
    def backward(ctx: Any, gout: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        g: _Geo = ctx.g
        if torch.is_grad_enabled():     # create_graph: torch's convolution_backward, which is itself differentiable
            need = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
            return (*_aten_backward(gout, x, weight, g, need), None)
        gx = input_grad(x, weight, gout, g) if ctx.needs_input_grad[0] else None
        gw = torch.empty_like(weight).copy_(weight_grad(x, gout, g)) if ctx.needs_input_grad[1] else None
        gb = gout.sum((0, 2, 3)).to(torch.float32) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb, None


def why_not(conv: nn.Module, x: Tensor) -> str | None:
    """``None`` when ``conv`` on ``x`` runs as the direct kernel; else why torch's convolution runs."""
    if type(conv) is not nn.Conv2d:
        return f"{type(conv).__name__} is not a plain nn.Conv2d"
    m: Any = conv
    if isinstance(x, fx.Proxy):
        return "traced with torch.fx"
    hooked = hooks_why_not(m)
    if hooked is not None:
        return hooked
    if m.in_channels > MAX_IN:
        return f"{m.in_channels} input channels: the direct kernel is for up to {MAX_IN} (oneDNN is faster beyond)"
    if m.out_channels > MAX_OUT:
        return f"{m.out_channels} output channels: the direct kernel is for up to {MAX_OUT}"
    if m.in_channels * m.kernel_size[0] * m.kernel_size[1] > MAX_TAPS:
        return f"{m.in_channels}x{m.kernel_size} taps: the direct kernel unrolls up to {MAX_TAPS}"
    if isinstance(m.padding, str) or m.padding_mode != "zeros" or tuple(m.stride) != (1, 1) \
            or tuple(m.dilation) != (1, 1) or m.groups != 1:
        return (f"only stride 1, dilation 1, groups 1 and numeric zero padding run direct (got {m.extra_repr()}, "
                f"padding_mode={m.padding_mode!r})")
    w = m._parameters.get("weight")
    if w is None or isinstance(w, nn.parameter.UninitializedParameter) \
            or not w.is_contiguous(memory_format=torch.channels_last):
        return "the weight is not channels-last (the direct kernel writes a channels-last output)"
    if x.device.type != "cpu" or x.dtype != torch.float32 or w.dtype != torch.float32:
        return f"runs on float32 CPU tensors, got input {x.dtype} on {x.device} and weight {w.dtype}"
    if x.dim() != 4 or x.shape[1] != m.in_channels:
        return f"expects an input [N, {m.in_channels}, H, W], got shape {tuple(x.shape)}"
    if x.shape[2] + 2 * m.padding[0] < m.kernel_size[0] or x.shape[3] + 2 * m.padding[1] < m.kernel_size[1]:
        return f"an input of {x.shape[2]}x{x.shape[3]} is smaller than the padded kernel (torch's conv raises on it)"
    return None


def conv2d_few(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """``conv(x)`` by the direct kernel (``why_not(conv, x)`` must be ``None``); the output is channels-last."""
    reason = why_not(conv, x)
    if reason is not None:
        raise ValueError(f"conv2d_few: {reason}")
    return _ConvFew.apply(x, conv.weight, conv.bias, geometry(conv))

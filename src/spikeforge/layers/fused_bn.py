"""A batch norm run inside the next neuron's kernel: ``SN(BN(f(x)))`` without writing ``BN(f(x))``.

``TimeFold(conv, nn.BatchNorm2d(C))`` followed by a neuron is the unit of every spiking CNN in the zoo. Run
as written, BN reads the conv output twice (statistics, then normalise), writes its output, and the neuron
reads that and keeps it for backward: two tensors of the conv output's size are kept per unit. Here:

* forward: the per-channel batch mean and variance in one read (``kernels.llvm_stats`` for float32 on the CPU),
  then the neuron runs on the conv output ``u`` with its step function preceded by the per-channel affine
  ``y = (u − μ)·a + β``, ``a = γ/√(σ² + ε)`` (``normed_step``): the fused kernels compute ``y`` in registers;
* backward: the neuron's kernel returns ``a·∂L/∂y`` and, as the gradients of its per-channel arrays,
  ``Σ ∂L/∂y·(u − μ)`` and ``Σ ∂L/∂y``; those are BN's two reductions, so the input gradient is one in-place
  pass (one LLVM kernel for float32 on the CPU), ``∂L/∂u = a·∂L/∂y − (a/M)·(Σ∂L/∂y + x̂·Σ∂L/∂y·x̂)``,
  ``x̂ = (u − μ)/√(σ² + ε)``.

Only ``u`` is kept (4 bytes per element instead of 8), and BN's output is never written. The running
statistics are updated as ``nn.BatchNorm`` updates them; in evaluation the running ones are used. Values and
gradients equal the unfused ``neuron(fold(x))`` to float32 rounding (a test compares them); a spike whose
membrane lands within rounding of the threshold may flip.

``bn_neuron(fold, neuron, x_seq)`` runs the pair; ``why_not(fold, neuron, x_seq)`` says when it runs unfused
(hooks, a module it does not know, a static input that the fold already computes once, ...).
``bn_neuron(fold, neuron, x_seq, pool)`` runs ``pool`` on the spikes too: they go to nothing else, so the pool's
input gradient may be handed to the neuron's kernel, which writes its own over it (``kernels.pool.handoff``: one
buffer of the spikes' size less at the peak of backward); ``handoff_why_not(neuron, pool)`` says when it is not.
``SpikingSequential`` is an ``nn.Sequential`` that runs each such pair (and the pool after it) this way.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import Tensor, fx, nn
from torch.autograd.function import once_differentiable
from torch.nn.modules import module as _module

from ..core import StepFn
from ..kernels.pool import handoff
from ..neurons import SpikingNeuron
from ..neurons.scan import scan
from .fold import TimeFold, _call, _global_hooks, _keep_grad_layout, _plain_bn, _update_running

__all__ = ["bn_neuron", "why_not", "handoff_why_not", "NormedInput", "normed_step", "SpikingSequential"]


@dataclass(frozen=True)
class NormedInput:
    """The record of ``normed_step``: the neuron's own record and the per-channel affine before it, each a
    tensor broadcastable to one step (``[C, 1, 1]`` for ``[B, C, H, W]``)."""

    inner: Any
    mean: Tensor
    scale: Tensor
    shift: Tensor


_normed: dict[StepFn, StepFn] = {}


def normed_step(step_fn: StepFn) -> StepFn:
    """``step_fn`` with its input normalised first: ``step((x − p.mean)·p.scale + p.shift, state, p.inner)``. One
    function object per ``step_fn`` (the kernels are cached by it)."""
    f = _normed.get(step_fn)
    if f is None:
        def f(x: Any, state: Any, p: NormedInput) -> Any:
            return step_fn((x - p.mean) * p.scale + p.shift, state, p.inner)
        f.__qualname__ = f"normed_step({getattr(step_fn, '__qualname__', step_fn)})"
        _normed[step_fn] = f
    return f


def _batch_mean_var(u: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and biased variance of ``u [T, B, C, ...]`` over every dim but 2, in double (one read of
    a float32 CPU tensor; torch's ``var_mean`` for other dtypes and devices)."""
    if u.dtype == torch.float32 and u.device.type == "cpu":
        from ..kernels import llvm_stats  # LLVM loads on first use, as the neurons' kernels do
        if llvm_stats.why_not(u, 2) is None:
            return llvm_stats.channel_mean_var(u, 2)
    dims = [d for d in range(u.dim()) if d != 2]
    var, mean = torch.var_mean(u.double(), dim=dims, correction=0)
    return mean, var


def _affine(weight: Tensor | None, bias: Tensor | None, eps: float, mean: Tensor, var: Tensor, C: int,
            dt: torch.dtype) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """BN with batch statistics as a per-channel affine: ``(μ, a, β)`` in ``dt``, and ``1/√(σ² + ε)`` and ``γ`` in
    float64 for backward."""
    invstd = (var + eps).rsqrt()
    w = weight.detach().to(torch.float64) if weight is not None else torch.ones(C, dtype=torch.float64)
    scale = (w * invstd).to(dt)
    shift = bias.detach().to(dt).clone() if bias is not None else torch.zeros(C, dtype=dt)
    return mean.to(dt), scale, shift, invstd, w


def _input_coeffs(ctx: Any, M: int, C: int, g_scale: Tensor | None, g_shift: Tensor | None
                  ) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """From the neuron's ``Σ g·(u−μ)`` and ``Σ g``: ``k2``, ``k1`` (float64) with ``∂L/∂u = gu + k2·u + k1`` (through
    ``μ`` and ``σ²``), and the gradients of BN's weight and bias when wanted (``ctx.needs_input_grad[wi]``,
    ``[wi + 1]``, ``ctx.wi`` the weight's position)."""
    r, mean = ctx.invstd, ctx.mean
    g1 = g_scale.to(torch.float64) if g_scale is not None else torch.zeros(C, dtype=torch.float64)  # Σ g·(u−μ)
    g0 = g_shift.to(torch.float64) if g_shift is not None else torch.zeros(C, dtype=torch.float64)  # Σ g
    a = ctx.w * r
    k2 = -a * r * r * g1 / M
    k1 = -a * g0 / M - k2 * mean
    gw = (g1 * r).to(ctx.dt) if ctx.needs_input_grad[ctx.wi] else None     # False for an absent weight or bias
    gb = g0.to(ctx.dt) if ctx.needs_input_grad[ctx.wi + 1] else None
    return k2, k1, gw, gb


class _BatchAffine(torch.autograd.Function):
    """``u -> (u, μ, a, β)``: the batch statistics of ``u`` as a per-channel affine; ``u`` passes through (the
    neuron reads it). Backward receives the neuron's gradients for all four and returns BN's input gradient."""

    @staticmethod
    def forward(ctx: Any, u: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float,  # type: ignore[override]
                mean: Tensor, var: Tensor) -> tuple[Tensor, ...]:
        mean_out, scale, shift, ctx.invstd, ctx.w = _affine(weight, bias, eps, mean, var, u.shape[2], u.dtype)
        ctx.save_for_backward(u)
        ctx.mean, ctx.dt, ctx.wi = mean, u.dtype, 1
        ctx.mark_non_differentiable(mean_out)
        return u.view_as(u), mean_out, scale, shift

    @staticmethod
    def backward(ctx: Any, gu: Tensor | None, _gm: Any, g_scale: Tensor | None, g_shift: Tensor | None
                 ) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        (u,) = ctx.saved_tensors
        C = u.shape[2]
        k2, k1, gw, gb = _input_coeffs(ctx, u.numel() // C, C, g_scale, g_shift)
        shape = [1, 1, C] + [1] * (u.dim() - 3)
        gx = _bn_input_grad(gu, u, k2.to(u.dtype).view(shape), k1.to(u.dtype).view(shape)) \
            if ctx.needs_input_grad[0] else None
        return gx, gw, gb, None, None, None


def _bn_input_grad(gu: Tensor | None, u: Tensor, k2t: Tensor, k1t: Tensor, dim: int = 2) -> Tensor:
    """``gu + k2·u + k1`` (channels at ``dim``): in place in the neuron's fresh gradient buffer where it can be."""
    if gu is not None and gu.stride() == u.stride() and gu.dtype == u.dtype:
        return _affine_add_(gu, u, k2t, k1t, dim)
    return torch.addcmul(k1t, u, k2t) if gu is None else gu + torch.addcmul(k1t, u, k2t)


class _ConvBatchAffine(torch.autograd.Function):
    """``x -> (u, μ, a, β, μ₆₄, σ²₆₄)`` for a fold of a direct conv (``kernels.llvm_conv``) and a batch norm in
    training: ``u`` is the conv's output, whose per-channel sums come out of the conv's own kernel (no pass over
    ``u`` for the statistics). Backward: BN's input gradient ``gu + k2·u + k1`` is folded into the conv's
    weight-gradient kernel and never written, unless the conv's input or bias needs a gradient (then it is
    written, in place, as ``_BatchAffine`` writes it). ``x`` is ``[N, C_in, H, W]``; ``u`` ``[N, C, Ho, Wo]``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, cw: Tensor, cb: Tensor | None, weight: Tensor | None,  # type: ignore[override]
                bias: Tensor | None, eps: float, geo: Any) -> tuple[Tensor, ...]:
        from ..kernels import llvm_conv, llvm_stats
        u, sums = llvm_conv.forward(x, cw, cb, geo, stats=True)
        assert sums is not None
        C = u.shape[1]
        mean64, var64 = llvm_stats.mean_var(sums[0], sums[1], u.numel() // max(1, C))
        mean_out, scale, shift, ctx.invstd, ctx.w = _affine(weight, bias, eps, mean64, var64, C, u.dtype)
        ctx.save_for_backward(x, cw, u)
        ctx.mean, ctx.dt, ctx.wi, ctx.geo, ctx.has_cb = mean64, u.dtype, 3, geo, cb is not None
        ctx.mark_non_differentiable(mean_out, mean64, var64)
        return u, mean_out, scale, shift, mean64, var64

    @staticmethod
    @once_differentiable          # its kernels are not differentiable: a second derivative raises, never silently 0
    def backward(ctx: Any, gu: Tensor | None, _gm: Any, g_scale: Tensor | None, g_shift: Tensor | None,
                 _gm64: Any, _gv64: Any) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        from ..kernels import llvm_conv
        x, cw, u = ctx.saved_tensors
        C = u.shape[1]
        k2, k1, gw, gb = _input_coeffs(ctx, u.numel() // C, C, g_scale, g_shift)
        k2f, k1f = k2.to(u.dtype), k1.to(u.dtype)
        need_x, need_cw = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        need_cb = ctx.has_cb and ctx.needs_input_grad[2]
        gx = gcw = gcb = None
        if gu is None:
            gu = torch.zeros_like(u)
        if need_x or need_cb:           # the input gradient of BN is wanted whole: written, then used
            shape = [1, C, 1, 1]
            geff = _bn_input_grad(gu, u, k2f.view(shape), k1f.view(shape), 1)
            gx = llvm_conv.input_grad(x, cw, geff, ctx.geo) if need_x else None
            gcb = geff.sum((0, 2, 3)) if need_cb else None
            if need_cw:
                gcw = llvm_conv.weight_grad(x, geff, ctx.geo)
        elif need_cw:
            gcw = llvm_conv.weight_grad(x, gu, ctx.geo, affine=(u, k2f, k1f))
        if gcw is not None:
            gcw = torch.empty_like(cw).copy_(gcw)
        return gx, gcw, gcb, gw, gb, None, None


def _affine_add_(g: Tensor, u: Tensor, k2: Tensor, k1: Tensor, dim: int = 2) -> Tensor:
    """``g.addcmul_(u, k2).add_(k1)`` for per-channel ``k2``, ``k1`` (channels at ``dim``): one LLVM pass for float32
    on the CPU (``kernels.llvm_stats``; the bits of torch's vector kernels), torch's two otherwise."""
    if g.dtype == torch.float32 and g.device.type == "cpu":
        from ..kernels import llvm_stats
        if llvm_stats.why_not(g, dim) is None:
            return llvm_stats.channel_affine_add_(g, u, k2.flatten(), k1.flatten(), dim)
    return g.addcmul_(u, k2).add_(k1)


def _not_standard(neuron: nn.Module) -> str | None:
    """``None`` for a scan neuron whose ``forward`` is one ``run`` returning the scan's spikes, else why not."""
    if not isinstance(neuron, SpikingNeuron) or type(neuron).forward is not SpikingNeuron.forward \
            or type(neuron).run is not SpikingNeuron.run:
        return f"{type(neuron).__name__} is not a scan neuron with the standard forward"
    return None


def why_not(fold: nn.Module, neuron: nn.Module, x_seq: Any) -> str | None:
    """``None`` when ``bn_neuron(fold, neuron, x_seq)`` runs fused; else why it runs as ``neuron(fold(x_seq))``."""
    if isinstance(x_seq, fx.Proxy):
        return "traced with torch.fx"
    if not isinstance(fold, TimeFold) or len(fold) == 0 or not _plain_bn(fold[-1]):
        return "the fold does not end with a torch BatchNorm"
    if not fold.fuse_bn:
        return "fuse_bn is off on the fold"
    why = _not_standard(neuron)
    if why is not None:
        return why
    if neuron.grad_rule is not None:
        return "the neuron's gradient comes from a gradient rule, which reads the normalised input"
    if not isinstance(x_seq, Tensor) or x_seq.dim() < 3 or x_seq.dtype not in (torch.float32, torch.float64):
        return "the input is not a float32 or float64 time-first tensor"
    if fold.static_once and fold.why_not(x_seq) is None:
        return "a static input: the fold computes the conv and the batch norm once for all steps"
    if _global_hooks():
        return "global forward hooks are registered, which expect each module's own forward"
    for m in (*fold.modules(), neuron):
        if m._forward_hooks or m._forward_pre_hooks:
            return f"{type(m).__name__} has forward hooks, which run with the module's own forward"
    return None


def handoff_why_not(neuron: nn.Module, pool: nn.Module) -> str | None:
    """``None`` when ``bn_neuron(fold, neuron, x, pool)`` lets ``pool`` hand its input gradient to ``neuron``
    (module docstring); else why the two keep separate buffers. Nobody else may see the gradient between them:
    no hooks on either module (a hook may keep the gradient it is shown) and no global ones, and a neuron with
    the standard forward (one scan whose spikes are its output). A hook put by hand on a node of the autograd
    graph between the two (``y.grad_fn.next_functions…register_hook``) is not seen: it must not keep the
    gradient it is shown, or the pool's fold must have ``hand_off = False``."""
    if not isinstance(pool, TimeFold) or len(pool) == 0 or type(pool[0]) is not nn.MaxPool2d:
        return "the pool is not a TimeFold starting with an nn.MaxPool2d"
    if not pool.hand_off:
        return "hand_off is off on the pool's fold"
    why = _not_standard(neuron)           # its own forward may use the spikes elsewhere
    if why is not None:
        return why
    if _global_hooks() or _module._global_backward_hooks or _module._global_backward_pre_hooks:
        return "global module hooks are registered"
    for m in (neuron, *pool.modules()):
        if m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks:
            return f"{type(m).__name__} has hooks, which may keep the gradient they are shown"
    return None


def bn_neuron(fold: nn.Module, neuron: nn.Module, x_seq: Tensor, pool: nn.Module | None = None) -> Tensor:
    """``neuron(fold(x_seq))`` with the fold's trailing batch norm computed inside the neuron (module docstring);
    unfused when ``why_not`` says so. ``x_seq [T, B, ...]`` → spikes ``[T, B, C, ...]``. With ``pool``:
    ``pool(neuron(fold(x_seq)))``, the pool's input gradient handed to the neuron unless ``handoff_why_not``."""
    if pool is None:
        return _bn_neuron(fold, neuron, x_seq, False)
    hand = not isinstance(x_seq, fx.Proxy) and handoff_why_not(neuron, pool) is None
    spikes = _bn_neuron(fold, neuron, x_seq, hand)
    with handoff() if hand else nullcontext():
        return pool(spikes)


def _bn_neuron(fold: nn.Module, neuron: nn.Module, x_seq: Tensor, hand: bool) -> Tensor:
    if why_not(fold, neuron, x_seq) is not None:
        u = fold(x_seq)
        with handoff() if hand else nullcontext():
            return neuron(u)
    mods, nrn = list(fold.children()), cast(SpikingNeuron, neuron)
    T, B = x_seq.shape[0], x_seq.shape[1]
    bn: Any = mods[-1]
    batch_stats = bn.training or bn.running_mean is None
    u = x_seq.flatten(0, 1)
    if batch_stats and _direct_conv(mods, bn, u):
        return _conv_bn_neuron(mods[0], bn, nrn, u, T, B, hand)
    for m in mods[:-1]:
        u = _call(m, u)
    bn._check_input_dim(u)
    u = _keep_grad_layout(u).unflatten(0, (T, B))
    C = u.shape[2]
    if C != bn.num_features:        # torch's BatchNorm raises a RuntimeError here too
        raise RuntimeError(f"{type(bn).__name__}({bn.num_features}) got {C} channels (input shape "
                           f"{tuple(u.shape)}, channels at dim 2)")
    if batch_stats:
        M = _batch_count(u.flatten(0, 1))
        with torch.profiler.record_function("spikeforge::batch_norm_stats"):
            mean64, var64 = _batch_mean_var(u.detach())
        u, mean, scale, shift = _BatchAffine.apply(u, bn.weight, bn.bias, bn.eps, mean64, var64)
        _track(bn, mean64, var64, M)
    else:
        mean = bn.running_mean.to(u.dtype)
        scale = torch.rsqrt(bn.running_var.to(u.dtype) + bn.eps)
        scale = scale * bn.weight if bn.weight is not None else scale
        shift = bn.bias if bn.bias is not None else torch.zeros_like(scale)
    return _normed_scan(nrn, u, mean, scale, shift, hand)


def _normed_scan(nrn: SpikingNeuron, u: Tensor, mean: Tensor, scale: Tensor, shift: Tensor, hand: bool) -> Tensor:
    shape = [u.shape[2]] + [1] * (u.dim() - 3)
    p = NormedInput(nrn.params(), mean.view(shape), scale.view(shape), shift.view(shape))
    with handoff() if hand else nullcontext():
        spikes, _ = scan(normed_step(type(nrn).step_fn), u, nrn.init_state(u[0]), p, nrn.backend, nrn.memory)
    return spikes


def _direct_conv(mods: list[nn.Module], bn: Any, x: Tensor) -> bool:
    """Whether the fold is one conv that runs direct (``kernels.llvm_conv``) and the batch norm after it, in
    float32 on the CPU: then the conv's kernel also sums its output for the batch statistics."""
    if len(mods) != 2 or type(mods[0]) is not nn.Conv2d or x.dtype != torch.float32 or x.device.type != "cpu":
        return False
    from ..kernels import llvm_conv
    return llvm_conv.why_not(mods[0], x) is None and cast(nn.Conv2d, mods[0]).out_channels == bn.num_features


def _conv_bn_neuron(conv: nn.Module, bn: Any, nrn: SpikingNeuron, x: Tensor, T: int, B: int, hand: bool) -> Tensor:
    from ..kernels import llvm_conv
    c = cast(nn.Conv2d, conv)
    u, mean, scale, shift, mean64, var64 = _ConvBatchAffine.apply(x, c.weight, c.bias, bn.weight, bn.bias, bn.eps,
                                                                   llvm_conv.geometry(c))
    _track(bn, mean64, var64, _batch_count(u))
    return _normed_scan(nrn, u.unflatten(0, (T, B)), mean, scale, shift, hand)


def _batch_count(u: Tensor) -> int:
    """The values per channel of BN's input ``u [N, C, ...]``; more than one when training (torch's message)."""
    M = u.numel() // max(1, u.shape[1])
    if M <= 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input size {list(u.shape)}")
    return M


def _track(bn: Any, mean64: Tensor, var64: Tensor, M: int) -> None:
    """Update ``bn``'s running statistics with the batch's, where ``nn.BatchNorm`` would."""
    if bn.training and bn.track_running_stats and bn.running_mean is not None:
        _update_running(bn, mean64, var64, M)


class SpikingSequential(nn.Sequential):
    """An ``nn.Sequential`` that runs each ``TimeFold`` ending in a batch norm together with the neuron after
    it as ``bn_neuron``, with the max-pool fold after them as its ``pool`` (the same modules, parameters and
    ``state_dict`` as ``nn.Sequential``; what ``why_not`` and ``handoff_why_not`` decline runs one module after
    the other, as there)."""

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        mods = list(self)
        i = 0
        while i < len(mods):
            m = mods[i]
            if i + 1 < len(mods) and isinstance(m, TimeFold) and isinstance(mods[i + 1], SpikingNeuron):
                pool = mods[i + 2] if i + 2 < len(mods) and _pool_fold(mods[i + 2]) else None
                x = bn_neuron(m, mods[i + 1], x, pool)
                i += 2 if pool is None else 3
            else:
                x = m(x)
                i += 1
        return x


def _pool_fold(m: nn.Module) -> bool:
    return isinstance(m, TimeFold) and len(m) > 0 and isinstance(m[0], nn.MaxPool2d)

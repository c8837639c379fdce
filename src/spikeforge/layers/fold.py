"""Time folding: stateless layers run once on ``[T·B, ...]``; the input stage that makes a sequence.

Only neurons and truly temporal layers see the time axis. Everything stateless (conv, linear, pooling,
flatten, batch norm) goes through the one wrapper here::

    TimeFold(nn.Conv2d(2, 16, 3, padding=1), nn.BatchNorm2d(16))     # [T, B, 2, H, W] -> [T, B, 16, H, W]

which is ``y = f(x.flatten(0, 1)).unflatten(0, (T, B))``, SpikingJelly's ``SeqToANNContainer`` and
``seq_to_ann_forward`` without the step-mode flags. Because the wrapped layers see all ``T·B`` samples
at once, a ``BatchNorm`` inside a ``TimeFold`` normalises over time and batch together (tdBN statistics).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, fx, nn
from torch.nn.modules import module as _module

__all__ = ["TimeFold", "time_fold", "ToSequence"]


def time_fold(fn: Callable[[Tensor], Tensor], x_seq: Tensor) -> Tensor:
    """``fn`` applied to ``x_seq [T, B, ...]`` folded to ``[T·B, ...]``; returns ``[T, B, ...']``.

    Equals ``torch.stack([fn(x) for x in x_seq])`` for any ``fn`` that treats samples independently
    (a test pins this for conv, pooling, linear and eval-mode BN).
    """
    if x_seq.dim() < 2:
        raise ValueError(f"time_fold expects a time-first tensor [T, B, ...], got shape {tuple(x_seq.shape)}")
    T, B = x_seq.shape[0], x_seq.shape[1]
    return fn(x_seq.flatten(0, 1)).unflatten(0, (T, B))


class _GradInLayout(torch.autograd.Function):
    """Identity forward; backward hands the gradient over in the forward output's memory format."""

    @staticmethod
    def forward(ctx: Any, y: Tensor) -> Tensor:  # type: ignore[override]
        return y.view_as(y)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> Tensor:  # type: ignore[override]
        return g.contiguous(memory_format=torch.channels_last)


def _keep_grad_layout(y: Tensor) -> Tensor:
    """Make a channels-last output receive channels-last gradients.

    A layer after the fold that reshapes (``Flatten``) or a neuron that returns contiguous tensors sends
    back plain-contiguous gradients; a channels-last conv, BN or pool then converts its saved tensors in
    backward (a pooling backward with mixed layouts costs ~3 full copies). Converting the gradient once
    here is cheaper. A pure layout choice, so it is skipped under ``torch.fx`` tracing.
    """
    if (isinstance(y, fx.Proxy) or y.dim() != 4 or not y.requires_grad or y.is_contiguous()
            or not y.is_contiguous(memory_format=torch.channels_last)):
        return y
    return _GradInLayout.apply(y)


class TimeFold(nn.Sequential):
    """Run stateless modules on all time steps at once: ``[T, B, ...] -> [T·B, ...] -> [T, B, ...]``.

    A ``nn.Sequential`` whose ``forward`` folds time into the batch first and unfolds it after, so the
    wrapped modules stay plain ``torch.nn`` layers (pruning, quantisation and ``torch.fx`` see them as
    they are). Do not put neurons or other stateful layers inside: they would mix time and batch.

    Built like ``nn.Sequential``: ``TimeFold(module, ...)``, each a stateless module taking ``[N, ...]``.

    Shapes: ``x_seq [T, B, *in] -> [T, B, *out]``.

    Channels-last convs and pools (``model.to(memory_format=torch.channels_last)``) keep that layout in
    the unfolded output, and their gradients arrive in it too. (Whether the neuron after the fold keeps
    it is up to its scan backend; when it does not, channels-last is slower, not faster.)

    A static input, the same sample at every step (direct encoding: ``ToSequence`` and ``encode.direct`` hand
    over ``x.expand(T, ...)``, whose time stride is 0), runs the modules once on ``[B, ...]`` and hands the
    result over expanded the same way, forward and backward (autograd sums the ``T`` gradients). A BatchNorm
    then normalises with the same statistics and updates its running ones as if it had seen all ``T·B``
    copies (the unbiased variance uses that count). ``why_not(x_seq)`` says when this cannot apply; set
    ``static_once = False`` on the fold to run every step.

    A plain ``nn.MaxPool2d(2)`` on a float32 CPU input (NCHW or channels-last) runs as
    ``kernels.llvm_pool.max_pool_2x2`` (the same values and gradients, 5–7× faster than torch's in NCHW, 1 byte
    kept per output element instead of 8).

    A fold that ends in a batch norm, followed by a scan neuron, runs that batch norm inside the neuron's kernel
    when a model calls ``bn_neuron(fold, neuron, x)`` (as every zoo CNN does, directly or through
    ``SpikingSequential``); set ``fuse_bn = False`` on the fold to run the two one after the other. A fold that
    starts with such a max pool, passed as ``bn_neuron``'s ``pool``, hands its input gradient's buffer to the
    neuron before it, which writes its own gradient over it (``kernels.pool.handoff``: one buffer of the
    neuron's output size less in backward); set ``hand_off = False`` on the pool's fold to keep them apart.
    """

    static_once: bool = True
    fuse_bn: bool = True
    hand_off: bool = True

    def forward(self, x_seq: Tensor) -> Tensor:
        T, B = x_seq.shape[0], x_seq.shape[1]
        if self.static_once and self.why_not(x_seq) is None:
            y = x_seq[0]
            for m in self:
                y = _bn_once(m, y, T) if _plain_bn(m) else _call(m, y)  # type: ignore[arg-type]
            return _keep_grad_layout(y).unsqueeze(0).expand(T, *y.shape)
        y = x_seq.flatten(0, 1)
        for m in self:
            y = _call(m, y)
        return _keep_grad_layout(y).unflatten(0, (T, B))

    def why_not(self, x_seq: Tensor) -> str | None:
        """``None`` when the modules run once for all steps of ``x_seq`` (see the class docstring), else why
        every step is run: the input differs between steps, or a module may treat equal steps differently."""
        if isinstance(x_seq, fx.Proxy):
            return "traced with torch.fx"
        if x_seq.dim() < 2 or x_seq.shape[0] < 2:
            return "a single step"
        if x_seq.stride(0) != 0:
            return ("the input differs between steps (event frames, encoded spikes or a layer's output); only an "
                    "input expanded over time (direct encoding) is computed once")
        if _global_hooks():
            return "global forward hooks are registered, which expect all T·B samples"
        for m in self:
            if not (_plain_bn(m) or isinstance(m, _SAME_EVERY_STEP)):
                return (f"{type(m).__name__} is not known to treat equal steps alike (dropout draws a mask per "
                        "step); only convolutions, linear layers, BatchNorm, pooling and reshapes are run once")
            if m._forward_hooks or m._forward_pre_hooks:
                return (f"{type(m).__name__} has forward hooks, which expect all T·B samples (recording, "
                        "counting or a user's hook)")
        return None


# modules whose output for a sample does not depend on the step it is in (so T equal steps give T equal outputs)
_SAME_EVERY_STEP = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d,
                    nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
                    nn.AdaptiveAvgPool3d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d,
                    nn.Flatten, nn.Unflatten, nn.Identity)


def _call(m: nn.Module, y: Tensor) -> Tensor:
    """``m(y)``; a plain ``nn.MaxPool2d(2)`` on a float32 CPU input runs the fused 2×2 kernel
    (``kernels.llvm_pool``: the same values and gradients, 1 byte kept per output; ``why_not`` there says when
    torch's pooling runs). A conv with channels-last weights gets a plain-contiguous input converted once here:
    left to the conv, the conversion runs twice, in forward and again for the weight gradient."""
    if type(m) is nn.Conv2d and not isinstance(y, fx.Proxy):
        from ..kernels import llvm_conv
        if llvm_conv.why_not(m, y) is None:
            return llvm_conv.conv2d_few(m, y)
    if isinstance(m, nn.Conv2d) and not isinstance(y, fx.Proxy) and y.dim() == 4 and y.shape[1] > 1 \
            and y.is_contiguous() and _cl_weight(m):
        y = y.contiguous(memory_format=torch.channels_last)
    if isinstance(m, nn.MaxPool2d):
        from ..kernels import llvm_pool  # the LLVM kernels load on first use, as the neurons' do
        if llvm_pool.why_not(m, y) is None:
            return llvm_pool.max_pool_2x2(y)
    return m(y)


def _cl_weight(m: nn.Conv2d) -> bool:
    """Whether the conv's own weight is stored channels-last (read from ``_parameters``: a parametrized weight is
    not computed for this, and a lazy one not yet made is not one)."""
    w = m._parameters.get("weight")
    if w is None or isinstance(w, nn.parameter.UninitializedParameter):
        return False
    return not w.is_contiguous() and w.is_contiguous(memory_format=torch.channels_last)


def _plain_bn(m: nn.Module) -> bool:
    """A torch BatchNorm with torch's own forward (not SyncBatchNorm, not a subclass that changes it)."""
    return isinstance(m, nn.modules.batchnorm._BatchNorm) and type(m).forward is nn.modules.batchnorm._BatchNorm.forward


def _bn_once(bn: nn.modules.batchnorm._BatchNorm, x: Tensor, T: int) -> Tensor:
    """``bn`` on one copy ``x [B, C, ...]`` of a batch repeated ``T`` times: the same normalisation (the mean and
    the biased variance of ``T`` equal copies are those of one), and the running statistics updated as torch
    updates them for the ``T·B`` copies."""
    if not (bn.training and bn.track_running_stats and bn.running_mean is not None):
        return bn(x)
    bn._check_input_dim(x)
    y, mean, invstd = torch.native_batch_norm(x, bn.weight, bn.bias, None, None, True, 0.0, bn.eps)
    with torch.no_grad():
        var = invstd.double().pow(-2).sub(bn.eps).float()       # the biased variance it normalised with
    _update_running(bn, mean, var, T * (x.numel() // x.shape[1]))
    return y


def _update_running(bn: nn.modules.batchnorm._BatchNorm, mean: Tensor, var: Tensor, n: int) -> None:
    """``nn.BatchNorm``'s running-statistics update from the batch mean and biased variance of ``n`` values."""
    with torch.no_grad():
        bn.num_batches_tracked.add_(1)  # type: ignore[operator,union-attr]
        f = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)  # type: ignore[arg-type]
        rm, rv = bn.running_mean, bn.running_var
        rm.mul_(1 - f).add_(mean.to(rm.dtype), alpha=f)  # type: ignore[union-attr]
        rv.mul_(1 - f).add_((var * (n / max(n - 1, 1))).to(rv.dtype), alpha=f)  # type: ignore[union-attr]


def _global_hooks() -> bool:
    """Whether global forward (pre-)hooks are registered: they expect every module's own forward."""
    return bool(_module._global_forward_hooks or _module._global_forward_pre_hooks)


class ToSequence(nn.Module):
    """The input stage of a model: a static sample is repeated ``T`` times (direct encoding), a sequence
    passes through.

    ``x [B, *sample] -> [T, B, *sample]`` (``x.dim() == sample_dims + 1``); ``x [T', B, *sample]``
    (event frames) is returned unchanged, keeping its own ``T'``. The first synaptic layer then sees the
    real-valued input at every step, as in the papers (Spikformer, SEW ResNet, STBP's encoding layer).

    Args:
        T: number of steps for static inputs.
        sample_dims: rank of one sample (3 for ``[C, H, W]`` images).

    ``spikeforge.models.fx`` treats this module as a leaf (its branch on the input rank is not traceable).
    """

    fx_leaf = True

    def __init__(self, T: int, sample_dims: int = 3) -> None:
        super().__init__()
        if int(T) < 1:
            raise ValueError(f"ToSequence: T must be >= 1, got {T}")
        self.T, self.sample_dims = int(T), int(sample_dims)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == self.sample_dims + 2:
            return x
        if x.dim() != self.sample_dims + 1:
            raise ValueError(f"expected a batch [B, ...] of {self.sample_dims}-d samples or a sequence "
                             f"[T, B, ...], got shape {tuple(x.shape)}")
        return x.unsqueeze(0).expand(self.T, *x.shape)

    def extra_repr(self) -> str:
        return f"T={self.T}, sample_dims={self.sample_dims}"

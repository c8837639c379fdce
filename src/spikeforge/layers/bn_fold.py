"""Fold a batch norm into the convolution or linear layer before it — exactly, once, for everyone.

In evaluation a batch norm is a per-channel affine map ``y = s ⊙ x + t`` with
``s = γ / sqrt(σ² + ε)`` and ``t = β − μ·s`` (``TDBatchNorm`` scales ``γ`` by ``α·V_th``). Folded into the
layer before it::

    W' = s[:, None, ...] ⊙ W        b' = s ⊙ b + t        (b = 0 when the layer has no bias)

computed in float64 and cast back. This is spikeforge's one batch-norm folding: whatever needs a model
without batch norms (conversion to an SNN, integer inference, export) calls ``fold_bn`` / ``fold_bn_pairs``.
"""

from __future__ import annotations

import copy
from typing import cast

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from .norm import TDBatchNorm

__all__ = ["bn_affine", "fold_bn", "fold_bn_pairs", "FOLDABLE"]

FOLDABLE: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
"""The layer types a following BatchNorm folds into exactly."""


def bn_affine(bn: _BatchNorm, name: str = "batch norm") -> tuple[Tensor, Tensor]:
    """``(scale, shift)`` per channel (float64) of ``bn`` in evaluation, from its running statistics.

    Raises ``ValueError`` naming ``name`` when ``bn`` keeps no running statistics (it would normalise each
    batch by itself, which no fixed affine map reproduces)."""
    if not isinstance(bn, _BatchNorm):
        raise TypeError(f"{name}: expected a BatchNorm, got {type(bn).__name__}")
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"{name}: {type(bn).__name__} has no running statistics (track_running_stats=False); "
                         "it cannot be folded")
    mean, var = bn.running_mean.double(), bn.running_var.double()
    gamma = bn.weight.detach().double() if bn.affine else torch.ones_like(mean)
    beta = bn.bias.detach().double() if bn.affine else torch.zeros_like(mean)
    if isinstance(bn, TDBatchNorm):
        gamma = gamma * (bn.alpha * bn.v_threshold)
    scale = gamma / torch.sqrt(var + bn.eps)
    return scale, beta - mean * scale


def fold_bn(layer: nn.Module, bn: _BatchNorm, name: str = "layer") -> nn.Module:
    """A copy of ``layer`` (``Linear``, ``Conv1d/2d/3d``) that computes ``bn(layer(x))`` as ``bn`` evaluates.

    The copy always has a bias; ``layer`` and ``bn`` are left untouched. ``name`` appears in errors.
    """
    if not isinstance(layer, FOLDABLE):
        raise TypeError(f"{name}: cannot fold a batch norm into {type(layer).__name__} "
                        f"(foldable: {', '.join(t.__name__ for t in FOLDABLE)})")
    out_features = layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels
    if bn.num_features != out_features:
        raise ValueError(f"{name}: the batch norm has {bn.num_features} channels, the layer outputs {out_features}")
    scale, shift = bn_affine(bn, name)
    weight, bias = cast(Tensor, layer.weight), cast("Tensor | None", layer.bias)
    w = weight.detach()
    b = bias.detach().double() if bias is not None else torch.zeros_like(shift)
    folded = copy.deepcopy(layer)
    new_w = (w.double() * scale.view(-1, *([1] * (w.dim() - 1)))).to(w.dtype)
    new_b = (b * scale + shift).to(w.dtype)
    folded.weight = nn.Parameter(new_w, requires_grad=weight.requires_grad)
    folded.bias = nn.Parameter(new_b, requires_grad=weight.requires_grad)
    return folded


def fold_bn_pairs(model: nn.Module) -> list[str]:
    """Fold, in place, every batch norm that directly follows a foldable layer in an ``nn.Sequential``
    (``TimeFold`` included); the batch norm becomes ``nn.Identity``. Returns the names of the folded layers.

    Batch norms elsewhere (after a pooling, a neuron, a residual sum) are left as they are; a caller that
    needs all of them folded checks what remains (``[m for m in model.modules() if isinstance(m, _BatchNorm)]``).
    """
    done: list[str] = []
    for prefix, seq in model.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        keys = list(seq._modules)
        for a, b in zip(keys, keys[1:]):
            layer, bn = seq._modules[a], seq._modules[b]
            if isinstance(layer, FOLDABLE) and isinstance(bn, _BatchNorm):
                name = f"{prefix}.{a}" if prefix else a
                seq._modules[a] = fold_bn(layer, bn, name)
                seq._modules[b] = nn.Identity()
                done.append(name)
    return done

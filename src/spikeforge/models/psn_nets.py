"""The sequential-CIFAR network of the PSN paper (Fang et al., "Parallel spiking neurons with high
efficiency and ability to learn long-term dependencies", NeurIPS 2023, arXiv 2304.12760; code
``fangwei123456/Parallel-Spiking-Neuron``, ``sequential_cifar/train_secf10.py``).

An image ``[B, C, H, W]`` is read one column per step, ``T = W``, each step a 1-D signal ``[C, H]``; an
event clip ``[T', B, C, H, W]`` is read frame by frame, each frame column by column (``T = T'·W`` steps):

    2 × (3 × [Conv1d(k=3) → BN → SN] → AvgPool1d(2)) → Flatten → Linear(c·H/4, c·H/16) → SN → Linear

The neuron is the point of the paper: ``PSN`` (full ``T×T`` weights), ``MaskedPSN`` (order ``k``),
``SlidingPSN`` (order ``k``, any ``T``) against LIF (soft reset, as the paper's baseline). Set
``MaskedPSN.lambda_`` from 0 to 1 during training (the paper: ``min(8·epoch/(epochs − 1), 1)``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..layers import NeuronSpec, SpikingSequential, TimeFold, make_neuron
from ..neurons import LIF, MaskedPSN, SlidingPSN
from ..surrogate import ATan
from .registry import SpikingClassifier, register_model

__all__ = ["SequentialCSNN", "columns"]


@torch.fx.wrap
def columns(x: Tensor) -> Tensor:
    """Image columns as steps: ``[B, C, H, W] -> [W, B, C, H]``; a clip ``[T', B, C, H, W] -> [T'·W, B, C, H]``.

    A leaf for ``torch.fx`` (the branch on the input's rank is not traceable)."""
    if x.dim() == 5:
        Tf, B, C, H, W = x.shape
        return x.permute(0, 4, 1, 2, 3).reshape(Tf * W, B, C, H)
    return x.permute(3, 0, 1, 2)


class SequentialCSNN(SpikingClassifier):
    """Convolutional SNN over image columns.

    Args:
        in_channels: as timm; ``T = img_size`` (one column per step), ``img_size >= 4``.
        img_size: as timm; ``T = img_size`` (one column per step), ``img_size >= 4``.
        num_classes: as timm; ``T = img_size`` (one column per step), ``img_size >= 4``.
        channels: conv width ``c`` (128 in the paper, for CIFAR).
        neuron: neuron spec; ``"psn"`` builds ``PSN(T=img_size)`` (static images only: its ``T`` is fixed).
        T: accepted for the registry's common signature; the number of steps is set by the input.

    Shapes: ``[B, C, H, W] -> [W, B, num_classes]``; ``[T', B, C, H, W] -> [T'·W, B, num_classes]``.
    """

    def __init__(self, in_channels: int = 3, img_size: int = 32, num_classes: int = 10, channels: int = 128,
                 neuron: NeuronSpec = "psn", T: int | None = None) -> None:
        super().__init__()
        if img_size < 4:
            raise ValueError(f"SequentialCSNN: img_size={img_size} must be at least 4 (two 2× pools)")
        self.T, self.in_channels, self.img_size = int(img_size), in_channels, img_size
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(2):
            for _ in range(3):
                layers += [TimeFold(nn.Conv1d(c, channels, 3, padding=1, bias=False), nn.BatchNorm1d(channels)),
                           make_neuron(neuron, T=self.T)]
                c = channels
            layers.append(TimeFold(nn.AvgPool1d(2)))
        self.features = SpikingSequential(*layers)
        flat = channels * (img_size // 2 // 2)
        self.pre_logits = nn.Sequential(TimeFold(nn.Flatten(), nn.Linear(flat, flat // 4)),
                                        make_neuron(neuron, T=self.T))
        self._set_head(flat // 4, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """``[steps, B, D]`` from ``x [B, C, H, W]`` (column ``t`` is step ``t``) or a clip ``[T', B, C, H, W]``
        (frame ``f``, column ``w`` is step ``f·W + w``)."""
        return self.pre_logits(self.features(columns(x)))


def _soft_lif() -> LIF:
    return LIF(tau=2.0, v_reset=None, surrogate=ATan(alpha=2.0), detach_reset=True)


@register_model(fixed_neuron=True)
def seq_csnn_psn(**kwargs: Any) -> SequentialCSNN:
    """Sequential-CIFAR net with ``PSN`` neurons (T = 32)."""
    return SequentialCSNN(**{"neuron": "psn", **kwargs})


@register_model(fixed_neuron=True)
def seq_csnn_masked_psn(k: int = 4, img_size: int = 32, **kwargs: Any) -> SequentialCSNN:
    """Sequential-CIFAR net with ``MaskedPSN(k)`` neurons (``lambda_`` starts at 0)."""
    return SequentialCSNN(img_size=img_size, neuron=lambda: MaskedPSN(k=k, T=img_size), **kwargs)


@register_model(fixed_neuron=True)
def seq_csnn_sliding_psn(k: int = 4, algorithm: str = "gemm", **kwargs: Any) -> SequentialCSNN:
    """Sequential-CIFAR net with ``SlidingPSN(k)`` neurons (exp init; ``algorithm`` ``"gemm"`` or ``"conv"``)."""
    return SequentialCSNN(neuron=lambda: SlidingPSN(k=k, exp_init=True, algorithm=algorithm), **kwargs)


@register_model(fixed_neuron=True)
def seq_csnn_lif(**kwargs: Any) -> SequentialCSNN:
    """Sequential-CIFAR net with the paper's serial baseline: LIF, soft reset, ``detach_reset``."""
    return SequentialCSNN(**{"neuron": _soft_lif(), **kwargs})


@register_model
def seq_csnn_tiny(**kwargs: Any) -> SequentialCSNN:
    """32 channels, sliding PSN (k = 4; any number of steps, so static images and event clips alike), for
    1×8×8 digits (8 steps), 1×28×28 images or 2×32×32 / 2×34×34 clips."""
    defaults = dict(in_channels=1, img_size=8, num_classes=10, channels=32,
                    neuron=lambda: SlidingPSN(k=4, exp_init=True))
    return SequentialCSNN(**{**defaults, **kwargs})

"""Spikformer (Zhou et al., "Spikformer: when spiking neural network meets transformer", ICLR 2023,
arXiv 2209.15425; code ``ZK-Zhou/spikformer``).

``SPS → depth × [X' = X + SSA(X); X'' = X' + MLP(X')] → mean over tokens → Linear`` at every step.
Each branch *ends* with a neuron, so the residual stream is a sum of spikes (integers ≥ 0) and the next
block's 1×1 convs multiply integers: not purely spike-driven (see ``spikingformer.py``).

Sizes (``depth-dim``): CIFAR 4-384 (32×32, patch 4: pools before SPS units 3, 4), ImageNet 8-384 /
8-512 / 8-768 (224×224, patch 16: pools before units 1–4), DVS 2-256 (128×128 frames, T = 16, patch 16).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from ..layers import SPS, NeuronSpec, Residual, SpikeDrivenResidual, SpikingMLP, SpikingSelfAttention, ToSequence
from .registry import SpikingClassifier, register_model

__all__ = ["Spikformer", "CIFAR", "IMAGENET", "DVS"]

CIFAR: dict[str, Any] = dict(img_size=32, in_channels=3, num_classes=10, pool_before=(3, 4), T=4)
IMAGENET: dict[str, Any] = dict(img_size=224, in_channels=3, num_classes=1000, pool_before=(1, 2, 3, 4), T=4)
DVS: dict[str, Any] = dict(img_size=128, in_channels=2, num_classes=10, pool_before=(1, 2, 3, 4), T=16)
TINY: dict[str, Any] = dict(img_size=34, in_channels=2, num_classes=10, pool_before=(3, 4), T=4, embed_dim=64,
                            depth=1, num_heads=4)


class Spikformer(SpikingClassifier):
    """Spikformer; ``Spikingformer`` is this class with ``spike_driven = True``.

    Args:
        img_size: as timm (``img_size`` is recorded; tokens are averaged).
        in_channels: as timm (``img_size`` is recorded; tokens are averaged).
        num_classes: as timm (``img_size`` is recorded; tokens are averaged).
        embed_dim: ``D``; depth: blocks; num_heads: SSA heads; mlp_ratio: MLP hidden = ``D·mlp_ratio``.
        T: steps for static inputs.
        neuron: neuron spec (default ``LIF(τ=2, ATan(2), detach_reset=True)``); the attention neuron is a
            copy with threshold ``attn_v_threshold``.
        pool_before: SPS units preceded by a max pool (``(3, 4)`` CIFAR, ``(1, 2, 3, 4)`` ImageNet / DVS).
        attn_scale: SSA scale ``s`` (0.125).
        attn_v_threshold: threshold of the attention neuron (0.5).

    Shapes: ``[B, C, H, W]`` or ``[T, B, C, H, W]`` -> ``[T, B, num_classes]``.
    """

    spike_driven = False

    def __init__(self, img_size: int = 32, in_channels: int = 3, num_classes: int = 10, embed_dim: int = 384,
                 depth: int = 4, num_heads: int = 12, mlp_ratio: float = 4.0, T: int = 4, neuron: NeuronSpec = None,
                 pool_before: Sequence[int] = (3, 4), attn_scale: float = 0.125,
                 attn_v_threshold: float = 0.5) -> None:
        super().__init__()
        self.T, self.in_channels, self.img_size = int(T), in_channels, img_size
        sd, res = self.spike_driven, SpikeDrivenResidual if self.spike_driven else Residual
        self.encode = ToSequence(self.T)
        self.patch_embed = SPS(in_channels, embed_dim, neuron, pool_before, spike_driven=sd, T=self.T)
        self.blocks = nn.Sequential(*(nn.Sequential(
            res(SpikingSelfAttention(embed_dim, num_heads, neuron, attn_scale, attn_v_threshold, sd, self.T)),
            res(SpikingMLP(embed_dim, int(embed_dim * mlp_ratio), neuron, sd, self.T)),
        ) for _ in range(depth)))
        self._set_head(embed_dim, num_classes)
        for m in self.head.modules():   # as the official code: truncated normal (std 0.02) for the linear head
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """``[T, B, D]``: the residual stream averaged over tokens."""
        return self.blocks(self.patch_embed(self.encode(x))).mean(-1)


def _spikformer(depth: int, dim: int, heads: int, base: dict[str, Any], **kwargs: Any) -> Spikformer:
    return Spikformer(**{**base, "depth": depth, "embed_dim": dim, "num_heads": heads, **kwargs})


@register_model
def spikformer_4_384(**kwargs: Any) -> Spikformer:
    """Spikformer-4-384, CIFAR (9.32M parameters)."""
    return _spikformer(4, 384, 12, CIFAR, **kwargs)


@register_model
def spikformer_8_384(**kwargs: Any) -> Spikformer:
    """Spikformer-8-384, ImageNet (16.81M)."""
    return _spikformer(8, 384, 12, IMAGENET, **kwargs)


@register_model
def spikformer_8_512(**kwargs: Any) -> Spikformer:
    """Spikformer-8-512, ImageNet (29.68M)."""
    return _spikformer(8, 512, 8, IMAGENET, **kwargs)


@register_model
def spikformer_8_768(**kwargs: Any) -> Spikformer:
    """Spikformer-8-768, ImageNet (66.34M)."""
    return _spikformer(8, 768, 12, IMAGENET, **kwargs)


@register_model
def spikformer_2_256(**kwargs: Any) -> Spikformer:
    """Spikformer-2-256, CIFAR10-DVS / DVS128 Gesture (2.57M; the official DVS code scales SSA by 0.25)."""
    return _spikformer(2, 256, 16, DVS, **{"attn_scale": 0.25, **kwargs})


@register_model
def spikformer_tiny(**kwargs: Any) -> Spikformer:
    """Spikformer-1-64, 4 heads, two pools; for 2×34×34 frames, 1×28×28 or 1×8×8 images."""
    return Spikformer(**{**TINY, **kwargs})

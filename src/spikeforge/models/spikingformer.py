"""Spikingformer (Zhou et al., "Spikingformer: spike-driven residual learning for transformer-based spiking
neural network", arXiv 2304.11954; code ``zhouchenlin2096/Spikingformer``).

Spikformer with pre-activation (spike-driven) residuals: every branch *starts* with a neuron
(``SN → conv → BN``), the residual stream is real-valued, and so every conv/linear receives binary
spikes, except the encoding conv (the image) and the classifier (the mean over time and tokens).
``tests/models`` checks that property with hooks on every ``nn.Conv*`` / ``nn.Linear``.

Sizes as Spikformer: CIFAR 4-384 (9.32M), ImageNet 8-384 (16.81M) / 8-512 (29.68M) / 8-768 (66.34M),
DVS 2-256 (2.57M, T = 16; the official DVS code uses LIF τ = 1.5, the default here for that variant).
"""

from __future__ import annotations

from typing import Any

from ..neurons import LIF
from ..surrogate import ATan
from .registry import register_model
from .spikformer import CIFAR, DVS, IMAGENET, TINY, Spikformer

__all__ = ["Spikingformer"]


class Spikingformer(Spikformer):
    """Spikingformer: ``Spikformer`` with ``SpikeDrivenResidual`` blocks and the spiking tokenizer
    (``SPS(spike_driven=True)``). Same arguments as ``Spikformer``."""

    spike_driven = True


def _spikingformer(depth: int, dim: int, heads: int, base: dict[str, Any], **kwargs: Any) -> Spikingformer:
    return Spikingformer(**{**base, "depth": depth, "embed_dim": dim, "num_heads": heads, **kwargs})


@register_model
def spikingformer_4_384(**kwargs: Any) -> Spikingformer:
    """Spikingformer-4-384, CIFAR (9.32M parameters)."""
    return _spikingformer(4, 384, 12, CIFAR, **kwargs)


@register_model
def spikingformer_8_384(**kwargs: Any) -> Spikingformer:
    """Spikingformer-8-384, ImageNet (16.81M)."""
    return _spikingformer(8, 384, 12, IMAGENET, **kwargs)


@register_model
def spikingformer_8_512(**kwargs: Any) -> Spikingformer:
    """Spikingformer-8-512, ImageNet (29.68M)."""
    return _spikingformer(8, 512, 8, IMAGENET, **kwargs)


@register_model
def spikingformer_8_768(**kwargs: Any) -> Spikingformer:
    """Spikingformer-8-768, ImageNet (66.34M)."""
    return _spikingformer(8, 768, 12, IMAGENET, **kwargs)


@register_model
def spikingformer_2_256(**kwargs: Any) -> Spikingformer:
    """Spikingformer-2-256, CIFAR10-DVS / DVS128 Gesture (2.57M)."""
    lif = LIF(tau=1.5, surrogate=ATan(alpha=2.0), detach_reset=True)
    return _spikingformer(2, 256, 16, DVS, **{"neuron": lif, **kwargs})


@register_model
def spikingformer_tiny(**kwargs: Any) -> Spikingformer:
    """Spikingformer-1-64, 4 heads, two pools; for 2×34×34 frames, 1×28×28 or 1×8×8 images."""
    return Spikingformer(**{**TINY, **kwargs})

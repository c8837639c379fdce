"""Spiking VGG: torchvision's VGG with BN and a neuron after every conv and hidden linear layer
(as SpikingJelly's ``spiking_vgg*_bn``; Simonyan & Zisserman 2015 for the layout).

Head ``"imagenet"``: ``AdaptiveAvgPool(7×7) → Linear(512·49, 4096) → SN → Dropout → Linear(4096, 4096) →
SN → Dropout → Linear(4096, classes)``, the dropouts sharing their mask over time (``SeqDropout``).
Head ``"small"``: global average pool ``→ Linear(C, classes)``, for CIFAR-size and event-frame inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor, nn

from ..layers import NeuronSpec, SeqDropout, SpikingSequential, TimeFold, ToSequence, make_neuron
from .registry import SpikingClassifier, register_model

__all__ = ["SpikingVGG", "VGG_CFGS"]

VGG_CFGS: dict[str, list[int | str]] = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "tiny": [16, "M", 32, "M", 64, 64, "M"],
}


class SpikingVGG(SpikingClassifier):
    """Spiking VGG.

    Args:
        cfg: channels of the 3×3 convs, ``"M"`` for a 2×2 max pool (a key of ``VGG_CFGS`` or a list).
        num_classes: as timm (``img_size`` is recorded; both heads pool adaptively).
        in_channels: as timm (``img_size`` is recorded; both heads pool adaptively).
        img_size: as timm (``img_size`` is recorded; both heads pool adaptively).
        T: steps for static inputs.
        neuron: neuron spec (default ``LIF(τ=2, ATan(2), detach_reset=True)``).
        head: ``"imagenet"`` or ``"small"`` (see the module docstring).
        dropout: drop probability of the ImageNet head.
        norm_layer: ``C -> module`` after every conv, or ``None`` for none (torchvision keeps the conv bias
            in both cases; so does this model, for equal parameter counts).

    Shapes: ``[B, C, H, W]`` or ``[T, B, C, H, W]`` -> ``[T, B, num_classes]``.
    """

    def __init__(self, cfg: str | Sequence[int | str] = "vgg11", num_classes: int = 1000, in_channels: int = 3,
                 img_size: int = 224, T: int = 4, neuron: NeuronSpec = None, head: str = "imagenet",
                 dropout: float = 0.5, norm_layer: Callable[[int], nn.Module] | None = nn.BatchNorm2d) -> None:
        super().__init__()
        if head not in ("imagenet", "small"):
            raise ValueError(f"SpikingVGG: head must be 'imagenet' or 'small', got {head!r}")
        spec = VGG_CFGS[cfg] if isinstance(cfg, str) else list(cfg)
        self.T, self.in_channels, self.img_size = int(T), in_channels, img_size
        self.encode = ToSequence(self.T)
        layers: list[nn.Module] = []
        c = in_channels
        for v in spec:
            if v == "M":
                layers.append(TimeFold(nn.MaxPool2d(2, 2)))
                continue
            conv = nn.Conv2d(c, int(v), 3, padding=1)
            layers += [TimeFold(conv) if norm_layer is None else TimeFold(conv, norm_layer(int(v))),
                       make_neuron(neuron, T=self.T)]
            c = int(v)
        self.features = SpikingSequential(*layers)
        if head == "imagenet":
            self.pre_logits = nn.Sequential(
                TimeFold(nn.AdaptiveAvgPool2d((7, 7)), nn.Flatten(), nn.Linear(c * 49, 4096)),
                make_neuron(neuron, T=self.T), SeqDropout(dropout),
                TimeFold(nn.Linear(4096, 4096)), make_neuron(neuron, T=self.T), SeqDropout(dropout))
            c = 4096
        else:
            self.pre_logits = nn.Sequential(TimeFold(nn.AdaptiveAvgPool2d(1), nn.Flatten()))
        self._set_head(c, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """``[T, B, D]``: the input of the last linear layer."""
        return self.pre_logits(self.features(self.encode(x)))


@register_model
def spiking_vgg11(**kwargs: Any) -> SpikingVGG:
    """Spiking VGG-11 with BN (torchvision ``vgg11_bn`` layout)."""
    return SpikingVGG("vgg11", **kwargs)


@register_model
def spiking_vgg16(**kwargs: Any) -> SpikingVGG:
    """Spiking VGG-16 with BN (torchvision ``vgg16_bn`` layout)."""
    return SpikingVGG("vgg16", **kwargs)


@register_model
def spiking_vgg_tiny(**kwargs: Any) -> SpikingVGG:
    """Four convs (16-32-64-64), three pools, small head; for 2×34×34 frames, 1×28×28 or 1×8×8 images."""
    return SpikingVGG("tiny", **{**dict(in_channels=2, img_size=34, num_classes=10, head="small"), **kwargs})

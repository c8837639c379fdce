"""Spiking ResNet and SEW ResNet (Fang et al., "Deep residual learning in spiking neural networks",
NeurIPS 2021, arXiv 2102.04159; code ``fangwei123456/Spike-Element-Wise-ResNet``).

Torchvision's ResNet layout with a neuron after every BN and the time axis in front:

* SEW block: ``A = SN(BN(Conv(SN(BN(Conv(S))))))``, ``O = g(A, S')`` with ``g`` ADD / AND / IAND and
  ``S' = SN(BN(Conv1×1(S)))`` when the block downsamples (``SEWResidual``);
* Spiking ResNet block: ``O = SN(BN(Conv(SN(BN(Conv(S))))) + S')``, ``S' = BN(Conv1×1(S))``
  (``SpikingResidual``).

Stems: ``"imagenet"`` (7×7/2 conv, BN, SN, 3×3/2 max pool) or ``"small"`` (3×3/1 conv, BN, SN) for
CIFAR-size and event-frame inputs. Head: global average pool, flatten, ``Linear`` at every step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor, nn

from ..layers import NeuronSpec, SEWResidual, SpikingResidual, SpikingSequential, TimeFold, ToSequence, make_neuron
from .registry import SpikingClassifier, register_model

__all__ = ["SpikingResNet", "basic_block", "bottleneck_block"]

NormLayer = Callable[[int], nn.Module]


def _conv_bn(cin: int, cout: int, k: int, stride: int, norm: NormLayer) -> TimeFold:
    return TimeFold(nn.Conv2d(cin, cout, k, stride, padding=k // 2, bias=False), norm(cout))


def _finish(kind: str, layers: list[nn.Module], cnf: str, mk: Callable[[], nn.Module],
            down: nn.Module | None) -> nn.Module:
    """SEW: the branch ends with a neuron and so does the downsample path; plain: one neuron after the sum."""
    if kind == "sew":
        return SEWResidual(SpikingSequential(*layers, mk()), cnf,
                           None if down is None else SpikingSequential(down, mk()))
    return SpikingResidual(nn.Sequential(*layers), mk(), down)


def basic_block(cin: int, planes: int, stride: int, kind: str, cnf: str, mk: Callable[[], nn.Module],
                norm: NormLayer) -> nn.Module:
    """Two 3×3 conv-BN units (``expansion = 1``)."""
    down = _conv_bn(cin, planes, 1, stride, norm) if stride != 1 or cin != planes else None
    layers = [_conv_bn(cin, planes, 3, stride, norm), mk(), _conv_bn(planes, planes, 3, 1, norm)]
    return _finish(kind, layers, cnf, mk, down)


def bottleneck_block(cin: int, planes: int, stride: int, kind: str, cnf: str, mk: Callable[[], nn.Module],
                     norm: NormLayer) -> nn.Module:
    """1×1 → 3×3 (stride here, torchvision v1.5) → 1×1 conv-BN units (``expansion = 4``)."""
    out = planes * 4
    down = _conv_bn(cin, out, 1, stride, norm) if stride != 1 or cin != out else None
    layers = [_conv_bn(cin, planes, 1, 1, norm), mk(), _conv_bn(planes, planes, 3, stride, norm), mk(),
              _conv_bn(planes, out, 1, 1, norm)]
    return _finish(kind, layers, cnf, mk, down)


_BLOCKS = {"basic": (basic_block, 1), "bottleneck": (bottleneck_block, 4)}


class SpikingResNet(SpikingClassifier):
    """SEW ResNet (``kind="sew"``) or plain Spiking ResNet (``kind="spiking"``).

    Args:
        block: ``"basic"`` or ``"bottleneck"``.
        layers: blocks per stage, e.g. ``(2, 2, 2, 2)`` for -18.
        kind: ``"sew"`` or ``"spiking"``.
        cnf: SEW function ``"ADD"``, ``"AND"`` or ``"IAND"`` (SEW only).
        num_classes: as timm (``img_size`` is recorded; the head pools globally).
        in_channels: as timm (``img_size`` is recorded; the head pools globally).
        img_size: as timm (``img_size`` is recorded; the head pools globally).
        T: steps for static inputs.
        neuron: neuron spec (default ``LIF(τ=2, ATan(2), detach_reset=True)``; the paper used IF on ImageNet
            and PLIF on DVS data).
        widths: channels per stage (``(64, 128, 256, 512)``); stage ``i > 0`` halves the resolution.
        stem: ``"imagenet"`` or ``"small"``.
        norm_layer: ``C -> module`` for ``[N, C, H, W]`` (``nn.BatchNorm2d``; ``TDBatchNorm`` and
            ``L1BatchNorm`` fit too).

    Shapes: ``[B, C, H, W]`` or ``[T, B, C, H, W]`` -> ``[T, B, num_classes]``.
    """

    def __init__(self, block: str = "basic", layers: Sequence[int] = (2, 2, 2, 2), kind: str = "sew",
                 cnf: str = "ADD", num_classes: int = 1000, in_channels: int = 3, img_size: int = 224, T: int = 4,
                 neuron: NeuronSpec = None, widths: Sequence[int] = (64, 128, 256, 512), stem: str = "imagenet",
                 norm_layer: NormLayer = nn.BatchNorm2d) -> None:
        super().__init__()
        if kind not in ("sew", "spiking"):
            raise ValueError(f"SpikingResNet: kind must be 'sew' or 'spiking', got {kind!r}")
        if block not in _BLOCKS or stem not in ("imagenet", "small") or len(layers) != len(widths):
            raise ValueError(f"SpikingResNet: block={block!r} (basic|bottleneck), stem={stem!r} (imagenet|small), "
                             f"layers={tuple(layers)} and widths={tuple(widths)} must have the same length")
        self.kind, self.cnf, self.T, self.in_channels, self.img_size = kind, cnf, int(T), in_channels, img_size
        make_block, expansion = _BLOCKS[block]

        def mk() -> nn.Module:
            return make_neuron(neuron, T=self.T)

        self.encode = ToSequence(self.T)
        w0 = widths[0]
        stem_layers: list[nn.Module] = (
            [_conv_bn(in_channels, w0, 7, 2, norm_layer), mk(), TimeFold(nn.MaxPool2d(3, 2, 1))]
            if stem == "imagenet" else [_conv_bn(in_channels, w0, 3, 1, norm_layer), mk()])
        self.stem = SpikingSequential(*stem_layers)
        stages, cin = [], w0
        for i, (n, w) in enumerate(zip(layers, widths)):
            blocks = []
            for j in range(n):
                blocks.append(make_block(cin, w, 2 if (i > 0 and j == 0) else 1, kind, cnf, mk, norm_layer))
                cin = w * expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = TimeFold(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self._set_head(cin, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """``[T, B, D]``: globally pooled output spikes of the last stage."""
        return self.pool(self.stages(self.stem(self.encode(x))))


def _resnet(kind: str, block: str, layers: Sequence[int], **kwargs: Any) -> SpikingResNet:
    return SpikingResNet(block=block, layers=layers, kind=kind, **kwargs)


def _tiny(kind: str, **kwargs: Any) -> SpikingResNet:
    """Three stages (16, 32, 64), one basic block each by default, small stem; for 2×34×34 event frames,
    1×28×28 or 1×8×8 images on a CPU."""
    cfg: dict[str, Any] = dict(layers=(1, 1, 1), widths=(16, 32, 64), stem="small", in_channels=2, img_size=34,
                               num_classes=10)
    return _resnet(kind, "basic", **{**cfg, **kwargs})


@register_model
def spiking_resnet18(**kwargs: Any) -> SpikingResNet:
    """Spiking ResNet-18: the plain residual ``SN(F(S) + S)``."""
    return _resnet("spiking", "basic", (2, 2, 2, 2), **kwargs)


@register_model
def spiking_resnet34(**kwargs: Any) -> SpikingResNet:
    """Spiking ResNet-34."""
    return _resnet("spiking", "basic", (3, 4, 6, 3), **kwargs)


@register_model
def spiking_resnet_tiny(**kwargs: Any) -> SpikingResNet:
    """Small Spiking ResNet (``layers=(n, n, n)`` sets the depth: ``6n + 2`` layers)."""
    return _tiny("spiking", **kwargs)


@register_model
def sew_resnet18(**kwargs: Any) -> SpikingResNet:
    """SEW ResNet-18 (``cnf="ADD"`` by default; 11.69M parameters at ImageNet size)."""
    return _resnet("sew", "basic", (2, 2, 2, 2), **kwargs)


@register_model
def sew_resnet34(**kwargs: Any) -> SpikingResNet:
    """SEW ResNet-34."""
    return _resnet("sew", "basic", (3, 4, 6, 3), **kwargs)


@register_model
def sew_resnet50(**kwargs: Any) -> SpikingResNet:
    """SEW ResNet-50 (bottleneck blocks)."""
    return _resnet("sew", "bottleneck", (3, 4, 6, 3), **kwargs)


@register_model
def sew_resnet_tiny(**kwargs: Any) -> SpikingResNet:
    """Small SEW ResNet (``layers=(n, n, n)`` sets the depth: ``6n + 2`` layers)."""
    return _tiny("sew", **kwargs)

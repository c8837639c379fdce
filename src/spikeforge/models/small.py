"""Small networks for the demo, the CLI's quick runs and the engine's tests.

* ``spiking_cnn_tiny``: Conv(C→16)-BN-LIF-MaxPool-Conv(16→32)-BN-LIF-MaxPool-Linear — the spiking CNN of
  the peer benchmark (``benchmarks/models.py``), sized by ``img_size``;
* ``spiking_mlp_tiny``: Flatten-Linear-LIF-Linear, BatchNorm-free by default (so data-parallel runs equal a
  single process exactly; ``bn=True`` puts a BatchNorm1d before the neuron).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..layers import ToSequence, bn_neuron
from ..layers.fold import TimeFold
from ..layers.neuron_spec import NeuronSpec, make_neuron
from .registry import SpikingClassifier, register_model

__all__ = ["SmallSpikingCNN", "SmallSpikingMLP"]


class SmallSpikingCNN(SpikingClassifier):
    """Two conv-BN-LIF-pool stages and a linear head. ``x [B, C, H, W]`` or ``[T, B, C, H, W]`` →
    ``[T, B, num_classes]``; ``forward_features`` → ``[T, B, 32·(H/4)·(W/4)]``.

    ``pool="avg"`` pools by averaging instead of the maximum: the form NIR export and ANN→SNN conversion
    can express (an average of spikes is a linear map; a maximum is not).
    """

    def __init__(self, in_channels: int = 2, num_classes: int = 10, img_size: int = 34, T: int = 8,
                 neuron: NeuronSpec = None, width: int = 16, pool: str = "max") -> None:
        super().__init__()
        if pool not in ("max", "avg"):
            raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
        Pool = nn.MaxPool2d if pool == "max" else nn.AvgPool2d
        self.T, self.in_channels, self.img_size = T, in_channels, img_size
        w = width
        self.stem = ToSequence(T, sample_dims=3)
        self.block1 = TimeFold(nn.Conv2d(in_channels, w, 3, padding=1, bias=False), nn.BatchNorm2d(w))
        self.sn1 = make_neuron(neuron)
        self.pool1 = TimeFold(Pool(2))
        self.block2 = TimeFold(nn.Conv2d(w, 2 * w, 3, padding=1, bias=False), nn.BatchNorm2d(2 * w))
        self.sn2 = make_neuron(neuron)
        self.pool2 = TimeFold(Pool(2), nn.Flatten())
        side = img_size // 4
        self._set_head(2 * w * side * side, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        x = bn_neuron(self.block1, self.sn1, self.stem(x), self.pool1)
        return bn_neuron(self.block2, self.sn2, x, self.pool2)


class SmallSpikingMLP(SpikingClassifier):
    """Flatten-Linear-LIF and a linear head; no normalisation layer unless ``bn=True`` (a BatchNorm1d
    before the neuron, as DSR's reproduction uses)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, img_size: int = 8, T: int = 8,
                 neuron: NeuronSpec = None, hidden: int = 128, bn: bool = False) -> None:
        super().__init__()
        self.T, self.in_channels, self.img_size = T, in_channels, img_size
        self.stem = ToSequence(T, sample_dims=3)
        fc = nn.Linear(in_channels * img_size * img_size, hidden)
        self.fc = TimeFold(nn.Flatten(), fc, nn.BatchNorm1d(hidden)) if bn else TimeFold(nn.Flatten(), fc)
        self.sn = make_neuron(neuron)
        self._set_head(hidden, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.sn(self.fc(self.stem(x)))


@register_model
def spiking_cnn_tiny(**kwargs: Any) -> SmallSpikingCNN:
    """16-32 channel spiking CNN; defaults for 2×34×34 event frames (``pool="avg"``: average pooling)."""
    return SmallSpikingCNN(**kwargs)


@register_model
def spiking_mlp_tiny(**kwargs: Any) -> SmallSpikingMLP:
    """One hidden LIF layer of 128; defaults for 1×8×8 digits."""
    return SmallSpikingMLP(**kwargs)

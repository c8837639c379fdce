"""The model registry: ``create_model(name, **kwargs)``, ``list_models()``, ``@register_model``.

As timm: every variant is a small function registered under its own name, whose keyword arguments
override the family's defaults (``in_channels``, ``num_classes``, ``img_size``, plus ``T`` and
``neuron``)::

    from spikeforge.models import create_model
    from spikeforge.neurons import LIF
    net = create_model("sew_resnet18", num_classes=10, neuron=LIF(tau=2.0), cnf="IAND")

Every model returns ``[T, B, num_classes]`` and has ``forward_features -> [T, B, D]``. Build on the meta
device to count parameters without allocating them: ``with torch.device("meta"): create_model(...)``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any, TypeVar

from torch import Tensor, nn

from ..core import Registry
from ..layers import TimeFold

__all__ = ["MODELS", "register_model", "create_model", "list_models", "is_model", "SpikingClassifier"]

F = TypeVar("F", bound=Callable[..., nn.Module])
MODELS: Registry[Callable[..., nn.Module]] = Registry("model")


def register_model(fn: F) -> F:
    """Decorator: register a model variant under its function name (its docstring's first line is the
    summary ``spikeforge list models`` prints)."""
    MODELS.register(fn.__name__, fn)
    return fn


def is_model(name: str) -> bool:
    return name in MODELS


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style ``pattern`` (e.g. ``"sew_*"``, ``"*_tiny"``), sorted."""
    return [n for n in MODELS if fnmatch.fnmatchcase(n, pattern)]


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name``; keyword arguments override the variant's defaults. An unknown
    name raises ``UnknownNameError`` (a ``ValueError``) with the closest registered names."""
    return MODELS[name](**kwargs)


class SpikingClassifier(nn.Module):
    """What every zoo model is: ``forward(x) = head(forward_features(x))``.

    ``x`` is a static batch ``[B, C, H, W]`` (repeated over ``T`` steps by the model's input stage) or a
    sequence ``[T, B, C, H, W]`` (event frames, kept as they are). ``forward_features`` returns
    ``[T, B, num_features]``; ``head`` is a ``Linear`` applied at every step, so ``forward`` returns
    ``[T, B, num_classes]`` and averaging over ``T`` is left to the loss (for a linear head the mean of the
    per-step logits equals the papers' ``head(mean_t features)``).
    """

    T: int
    num_classes: int
    num_features: int
    in_channels: int
    img_size: int

    def _set_head(self, num_features: int, num_classes: int) -> None:
        self.num_features, self.num_classes = int(num_features), int(num_classes)
        self.head: nn.Module = TimeFold(nn.Linear(num_features, num_classes)) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, H, W]`` or ``[T, B, C, H, W]`` -> logits ``[T, B, num_classes]``."""
        return self.head(self.forward_features(x))

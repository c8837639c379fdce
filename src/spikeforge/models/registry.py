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

from torch import Tensor, fx, nn

from ..core import Registry
from ..layers import TimeFold

__all__ = ["MODELS", "register_model", "create_model", "list_models", "is_model", "SpikingClassifier"]

F = TypeVar("F", bound=Callable[..., nn.Module])
MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
"""The model zoo by name; ``create_model`` builds from it and ``list_models`` lists it."""


def register_model(fn: F | None = None, **info: Any) -> Any:
    """Decorator: register a model variant under its function name (its docstring's first line is the
    summary ``spikeforge list models`` prints). ``@register_model(fixed_neuron=True)`` marks a variant whose
    neuron is its point (the PSN nets): a run's ``--neuron`` template is not passed to it."""
    if fn is None:
        return lambda f: register_model(f, **info)
    MODELS.register(fn.__name__, fn, **info)
    return fn


def is_model(name: str) -> bool:
    """Whether ``name`` is a registered model."""
    return name in MODELS


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style ``pattern`` (e.g. ``"sew_*"``, ``"*_tiny"``), sorted."""
    return [n for n in MODELS if fnmatch.fnmatchcase(n, pattern)]


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name``; keyword arguments override the variant's defaults. An unknown
    name raises ``UnknownNameError`` (a ``ValueError``) with the closest registered names; a size that is not a
    positive integer (``in_channels``, ``img_size``, ``T``; ``num_classes`` may be 0: no head) a ``ValueError``."""
    factory = MODELS[name]
    for key in ("in_channels", "img_size", "T", "num_classes"):
        if key in kwargs:
            v, low = kwargs[key], 0 if key == "num_classes" else 1
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name}: {key} must be an integer >= {low}, got {v!r}")
    return factory(**kwargs)


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
        self.check_input(x)
        return self.head(self.forward_features(x))

    def check_input(self, x: Tensor) -> None:
        """Raise ``ValueError`` naming the expected shape if ``x`` is not ``[B, C, H, W]`` / ``[T, B, C, H, W]``
        with ``C = in_channels``."""
        if isinstance(x, fx.Proxy):
            return
        if x.dim() not in (4, 5) or x.shape[-3] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects [B, {self.in_channels}, H, W] or "
                             f"[T, B, {self.in_channels}, H, W] (in_channels={self.in_channels}), got shape "
                             f"{tuple(x.shape)}")

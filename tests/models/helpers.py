"""Helpers shared by the model tests: small inputs for every registered model."""

from __future__ import annotations

import torch
from torch import nn

from spikeforge.models import SequentialCSNN, SpikingClassifier

# the smallest sizes that keep each paper-size variant valid (its pools leave ≥ 1 pixel)
SMALL_IMG = {"spikformer_8": 16, "spikingformer_8": 16, "spikformer_2": 16, "spikingformer_2": 16}


def small_kwargs(name: str) -> dict[str, object]:
    """Overrides that make a registered model cheap to run without changing its layers."""
    if name.startswith("seq_csnn"):
        return {} if name.endswith("_tiny") else {"img_size": 8}
    if name.endswith("_tiny"):
        return {"T": 2}
    for prefix, size in SMALL_IMG.items():
        if name.startswith(prefix):
            return {"img_size": size, "T": 2}
    return {"img_size": 32, "T": 2}


def example_input(model: SpikingClassifier, T: int = 2, B: int = 2, seed: int = 0) -> torch.Tensor:
    """A static batch for image models (repeated over T by the model) or ``[T, B, C, H, W]`` frames when
    the model's default input is event frames (2 channels)."""
    g = torch.Generator().manual_seed(seed)
    s = model.img_size
    if isinstance(model, SequentialCSNN) or model.in_channels != 2:
        return torch.rand(B, model.in_channels, s, s, generator=g)
    return (torch.rand(T, B, model.in_channels, s, s, generator=g) < 0.3).float()


def first_synapse(model: nn.Module) -> nn.Module:
    return next(m for m in model.modules() if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Linear))

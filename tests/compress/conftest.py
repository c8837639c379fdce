"""Helpers for the compression tests."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from spikeforge.models import create_model
from spikeforge.neurons import LIF


def tiny(seed: int = 0, **kw: object) -> nn.Module:
    """spiking_cnn_tiny on 1×8×8, threshold 0.2: both layers fire on random inputs (θ = 2 LSBs at w2u2)."""
    torch.manual_seed(seed)
    kw.setdefault("neuron", LIF(v_threshold=0.2))
    return create_model("spiking_cnn_tiny", in_channels=1, img_size=8, num_classes=10, T=4, **kw)


def spikes_of(model: nn.Module, names: list[str], x: Tensor) -> tuple[dict[str, Tensor], Tensor]:
    """The outputs of the modules ``names`` (by forward hook) and the model's output on ``x``, without grad."""
    seen: dict[str, Tensor] = {}
    hs = [model.get_submodule(n).register_forward_hook(lambda m, a, o, n=n: seen.__setitem__(n, o)) for n in names]
    with torch.no_grad():
        out = model(x)
    for h in hs:
        h.remove()
    return seen, out

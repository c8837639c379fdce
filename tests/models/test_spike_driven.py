"""Spikingformer's defining property: every conv/linear input is binary except the encoding conv and the
classifier head; Spikformer's residual sums of spikes reach its convs as integers ≥ 2."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeforge.models import create_model

SYNAPSES = (nn.Conv1d, nn.Conv2d, nn.Linear)


def synapse_inputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The input of every conv/linear layer during one forward pass (forward pre-hooks)."""
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_pre_hook(lambda mod, inp, name=name: seen.__setitem__(name, inp[0].detach()))
             for name, m in model.named_modules() if isinstance(m, SYNAPSES)]
    try:
        model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def is_binary(t: torch.Tensor) -> bool:
    return bool(((t == 0) | (t == 1)).all())


@pytest.mark.parametrize("name,kwargs", [("spikingformer_tiny", {"in_channels": 3, "img_size": 16}),
                                         ("spikingformer_4_384", {"T": 2})])
def test_spikingformer_synapses_see_only_spikes(name: str, kwargs: dict[str, int]) -> None:
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    seen = synapse_inputs(model, torch.randn(2, model.in_channels, model.img_size, model.img_size))
    non_binary = {k for k, v in seen.items() if not is_binary(v)}
    assert non_binary == {"patch_embed.units.0.0", "head.0"}           # the encoding conv and the classifier
    assert len(seen) == 5 + len(model.blocks) * 6 + 1                   # tokenizer, q/k/v/proj + 2 MLP, head
    rates = [float(v.mean()) for k, v in seen.items() if k not in non_binary]
    assert min(rates) >= 0 and sum(r > 0 for r in rates) >= len(rates) - 2   # spikes actually flow


def test_spikformer_residual_sums_are_not_binary() -> None:
    torch.manual_seed(0)
    model = create_model("spikformer_tiny", in_channels=3, img_size=16, depth=2)
    seen = synapse_inputs(model, torch.randn(2, 3, 16, 16))
    sums = [k for k in seen if k.startswith("blocks.") and (".q." in k or ".fc1." in k)]
    assert len(sums) == 4                                                 # q and fc1 of both blocks
    for k in sums:
        v = seen[k]
        assert torch.equal(v, v.round()) and v.min() >= 0                 # integer spike counts
    assert any(seen[k].max() >= 2 for k in sums)                          # ... that exceed 1: MACs, not ACs
    assert not is_binary(seen["blocks.1.0.branch.q.0"])
    # the units inside a branch still see spikes
    assert is_binary(seen["blocks.0.0.branch.proj.0"]) and is_binary(seen["blocks.0.1.branch.fc2.0"])

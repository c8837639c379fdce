"""Every registered model: forward and backward on CPU at a small size, deterministic under a seed, output
shapes, gradients reaching the first layer, and a ``torch.fx`` trace (neurons as leaves) equal to the model.

Tiny variants run as registered. Paper-size variants keep every layer but get a small input
(``helpers.small_kwargs``); their weights other than the first layer's are frozen, so backward computes
activation gradients through the whole network without allocating weight gradients for 10⁸ parameters.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeforge.layers import is_neuron
from spikeforge.models import create_model, fx, list_models

from .helpers import example_input, first_synapse, small_kwargs


def build(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model(name, **small_kwargs(name))


def loss_of(y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the time-averaged logits (a plain ``sum`` is blind to a BN right before the head)."""
    return nn.functional.cross_entropy(y.mean(0), torch.arange(y.shape[1]) % y.shape[-1])


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_determinism_and_fx(name: str) -> None:
    model, again = build(name), build(name)
    # deterministic: the same seed builds the same weights
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    x = example_input(model)
    T = x.shape[0] if x.dim() == 5 else model.T
    first = first_synapse(model)
    if not name.endswith("_tiny"):
        for p in model.parameters():
            p.requires_grad_(first.weight is p)
    y = model(x)
    assert y.shape == (T, x.shape[1] if x.dim() == 5 else x.shape[0], model.num_classes)
    assert torch.isfinite(y).all()
    loss_of(y).backward()
    g = first.weight.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, "no gradient reached the first layer"
    feats = model.forward_features(x)
    assert feats.shape == (*y.shape[:2], model.num_features)

    # ... and the same outputs (train mode, where BN uses batch statistics; then eval twice)
    assert torch.equal(again(x), y.detach())
    model.eval()
    again.eval()
    with torch.no_grad():
        out = model(x)
        assert torch.equal(out, model(x))

        # fx: neurons stay leaves, synapses are plain torch.nn modules, the graph computes the same thing
        gm = fx.trace(model)
        called = {n.target for n in gm.graph.nodes if n.op == "call_module"}
        mods = dict(model.named_modules())
        neurons = {k for k, m in mods.items() if is_neuron(m)}
        assert neurons and neurons <= called
        assert any(isinstance(mods[k], nn.Conv1d | nn.Conv2d | nn.Linear) for k in called)
        assert torch.equal(gm(x), out)


def test_fx_trace_on_meta_device() -> None:
    with torch.device("meta"):
        model = create_model("spikingformer_8_768")
    gm = fx.trace(model)
    assert sum(n.op == "call_module" for n in gm.graph.nodes) > 100


def test_static_and_sequence_inputs() -> None:
    model = create_model("spiking_vgg_tiny", in_channels=1, img_size=28, T=3)
    assert model(torch.rand(4, 1, 28, 28)).shape == (3, 4, 10)
    assert model(torch.rand(5, 4, 1, 28, 28)).shape == (5, 4, 10)
    assert create_model("seq_csnn_tiny", img_size=28, channels=8)(torch.rand(2, 1, 28, 28)).shape == (28, 2, 10)

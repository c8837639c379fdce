"""TimeFold / time_fold equal running the module step by step; ToSequence; SeqDropout shares its mask."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeforge.layers import SeqDropout, SeqDropout2d, TimeFold, ToSequence, time_fold


def per_step(module: nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
    return torch.stack([module(x) for x in x_seq])


@pytest.mark.parametrize("module", [
    nn.Conv2d(3, 5, 3, padding=1), nn.MaxPool2d(2), nn.AvgPool2d(3, 2, 1), nn.Flatten(),
    nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)),
])
def test_timefold_equals_per_step(module: nn.Module) -> None:
    x = torch.randn(5, 3, 3, 8, 8)
    folded = TimeFold(module)(x)
    assert torch.allclose(folded, per_step(module, x), atol=1e-6)
    assert torch.allclose(time_fold(module, x), folded)


def test_timefold_eval_batchnorm_equals_per_step_and_train_uses_time_and_batch() -> None:
    bn = nn.BatchNorm2d(3)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    x = torch.randn(4, 2, 3, 5, 5) * 2 + 1
    bn.eval()
    assert torch.allclose(TimeFold(bn)(x), per_step(bn, x), atol=1e-6)
    bn.train()
    y = TimeFold(bn)(x)      # statistics over T·B·H·W per channel: normalised over all steps together
    m = y.transpose(0, 2).reshape(3, -1)
    assert torch.allclose(m.mean(1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(m.var(1, unbiased=False), torch.ones(3), atol=1e-3)


def test_timefold_is_sequential_of_plain_layers_and_keeps_grad() -> None:
    conv = nn.Conv2d(2, 4, 3)
    tf = TimeFold(conv, nn.BatchNorm2d(4))
    assert tf[0] is conv and isinstance(tf[1], nn.BatchNorm2d)
    x = torch.randn(3, 2, 2, 6, 6, requires_grad=True)
    tf(x).square().sum().backward()
    assert x.grad is not None and conv.weight.grad is not None
    with pytest.raises(ValueError, match="time-first"):
        time_fold(conv, torch.randn(4))


def test_to_sequence_repeats_static_and_passes_sequences() -> None:
    enc = ToSequence(T=3)
    x = torch.randn(2, 1, 4, 4)
    y = enc(x)
    assert y.shape == (3, 2, 1, 4, 4) and all(torch.equal(y[t], x) for t in range(3))
    seq = torch.randn(7, 2, 1, 4, 4)
    assert enc(seq) is seq
    with pytest.raises(ValueError, match="expected a batch"):
        enc(torch.randn(4, 4))


def test_seq_dropout_shares_mask_over_time() -> None:
    d = SeqDropout(0.5)
    x = torch.ones(6, 4, 50)
    y = d(x)
    zero = y == 0
    assert all(torch.equal(zero[t], zero[0]) for t in range(6))
    assert 0.3 < zero[0].float().mean() < 0.7
    assert torch.all((y == 0) | (y == 2.0))          # kept units scaled by 1/(1 − p)
    d.eval()
    assert d(x) is x


def test_seq_dropout2d_drops_whole_channels() -> None:
    d = SeqDropout2d(0.5)
    y = d(torch.ones(3, 2, 40, 5, 5))
    per_channel = y.flatten(3)
    assert torch.all(per_channel.amin(-1) == per_channel.amax(-1))       # constant over H, W
    assert torch.equal(y[0], y[2])                                        # and over time
    with pytest.raises(ValueError, match="p must lie"):
        SeqDropout(1.0)


def test_channels_last_layers_get_channels_last_gradients() -> None:
    cl = torch.channels_last
    conv = nn.Conv2d(2, 4, 3, padding=1).to(memory_format=cl)
    seen: list[bool] = []
    conv.register_full_backward_hook(lambda m, gin, gout: seen.append(gout[0].is_contiguous(memory_format=cl)))
    x = torch.randn(3, 2, 2, 6, 6, requires_grad=True)
    y = TimeFold(conv)(x)
    assert y.flatten(0, 1).is_contiguous(memory_format=cl)          # the layout survives the unfold
    (y.flatten(2) * torch.randn(3, 2, 144)).sum().backward()        # flatten: a plain-contiguous gradient
    assert seen == [True]
    ref = torch.stack([conv(xt) for xt in x.detach()])
    assert torch.allclose(y, ref, atol=1e-6)

"""tdBN, BNTT, NeuNorm and L1-norm BN against their formulas (and SpikingJelly where it has the layer)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from spikeforge.layers import BNTT, L1BatchNorm, NeuNorm, TDBatchNorm, TimeFold

from ..conftest import has_module


def test_tdbn_is_bn_scaled_by_alpha_vth_over_time_and_batch() -> None:
    x = torch.randn(4, 3, 5, 6, 6) * 3 + 1
    td = TDBatchNorm(5, alpha=1 / math.sqrt(2), v_threshold=0.5)
    with torch.no_grad():
        td.weight.uniform_(0.5, 2)
        td.bias.uniform_(-1, 1)
    y = TimeFold(td)(x)
    flat = x.transpose(0, 2).reshape(5, -1)                                   # per channel, over T·B·H·W
    mu, var = flat.mean(1), flat.var(1, unbiased=False)
    shape = (1, 1, 5, 1, 1)
    want = td.weight.view(shape) * (0.5 / math.sqrt(2)) * (x - mu.view(shape)) / torch.sqrt(var.view(shape) + 1e-5) \
        + td.bias.view(shape)
    assert torch.allclose(y, want, atol=1e-5)
    bn = nn.BatchNorm2d(5)
    TimeFold(bn)(x)
    assert torch.allclose(td.running_mean, bn.running_mean) and torch.allclose(td.running_var, bn.running_var)
    td.eval()
    assert torch.allclose(td(x[0]), td.weight.view(1, 5, 1, 1) * (0.5 / math.sqrt(2)) * (x[0] - td.running_mean.view(
        1, 5, 1, 1)) / torch.sqrt(td.running_var.view(1, 5, 1, 1) + 1e-5) + td.bias.view(1, 5, 1, 1), atol=1e-5)


@pytest.mark.parametrize("shape", [(4, 8, 3, 5, 5), (4, 8, 3)])
def test_bntt_equals_one_batchnorm_per_step(shape: tuple[int, ...]) -> None:
    T, C = shape[0], shape[2]
    bntt = BNTT(C, T, bias=True)
    with torch.no_grad():
        bntt.weight.uniform_(0.5, 2)
        bntt.bias.uniform_(-1, 1)
    ref = [nn.BatchNorm2d(C) if len(shape) == 5 else nn.BatchNorm1d(C) for _ in range(T)]
    for t, bn in enumerate(ref):
        bn.weight.data.copy_(bntt.weight[t])
        bn.bias.data.copy_(bntt.bias[t])
    x = torch.randn(shape) * torch.arange(1, T + 1).view(-1, *[1] * (len(shape) - 1)) + 0.5   # scale changes with t
    for _ in range(2):
        y = bntt(x)
        want = torch.stack([bn(x[t]) for t, bn in enumerate(ref)])
        assert torch.allclose(y, want, atol=1e-5)
    assert torch.allclose(bntt.running_var, torch.stack([bn.running_var for bn in ref]), atol=1e-5)
    bntt.eval()
    for bn in ref:
        bn.eval()
    assert torch.allclose(bntt(x), torch.stack([bn(x[t]) for t, bn in enumerate(ref)]), atol=1e-5)
    with pytest.raises(ValueError, match="T=4"):
        bntt(torch.randn(3, 8, C))


def test_bntt_has_no_shift_by_default() -> None:
    assert BNTT(3, 4).bias is None and BNTT(3, 4).weight.shape == (4, 3)


def test_neunorm_recursion_by_hand() -> None:
    nn_ = NeuNorm(2, 1, 1, k=0.5)
    with torch.no_grad():
        nn_.weight.copy_(torch.tensor([[[1.0]], [[2.0]]]))
    o = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]).view(3, 1, 2, 1, 1)   # [T, B, F, 1, 1]
    c = (1 - 0.5) / 4
    a = [c * 2, 0.5 * c * 2 + c * 1, 0.5 * (0.5 * c * 2 + c * 1)]
    want = torch.stack([o[t] - torch.tensor([1.0, 2.0]).view(1, 2, 1, 1) * a[t] for t in range(3)])
    assert torch.allclose(nn_(o), want)


@pytest.mark.skipif(not has_module("spikingjelly"), reason="spikingjelly not installed")
def test_neunorm_equals_spikingjelly() -> None:
    from spikingjelly.activation_based import functional
    from spikingjelly.activation_based.layer import NeuNorm as SJNeuNorm
    ours = NeuNorm(4, 5, 6, k=0.8)
    sj = SJNeuNorm(4, 5, 6, k=0.8, step_mode="m")
    sj.w.data.copy_(ours.weight.data)
    o = (torch.rand(6, 3, 4, 5, 6) < 0.3).float()
    functional.reset_net(sj)
    assert torch.allclose(ours(o), sj(o), atol=1e-6)


def test_l1_batchnorm_formula_and_gaussian_equivalence() -> None:
    x = torch.randn(64, 3, 4, 4) * torch.tensor([0.5, 2.0, 4.0]).view(1, 3, 1, 1) + 3
    l1 = L1BatchNorm(3)
    y = l1(x)
    dims = (0, 2, 3)
    mu = x.mean(dims, keepdim=True)
    mad = (x - mu).abs().mean(dims, keepdim=True)
    assert torch.allclose(y, (x - mu) / (math.sqrt(math.pi / 2) * mad + 1e-5), atol=1e-5)
    # for Gaussian data c·mean|x − μ| ≈ σ, so L1 BN ≈ BN
    bn = nn.BatchNorm2d(3)
    assert (y - bn(x)).abs().max() < 0.1 * bn(x).abs().max()
    assert torch.allclose(l1.running_mean, 0.1 * mu.flatten())
    l1.eval()
    assert torch.allclose(l1(x), (x - l1.running_mean.view(1, 3, 1, 1)) / (
        math.sqrt(math.pi / 2) * l1.running_mad.view(1, 3, 1, 1) + 1e-5), atol=1e-5)


def test_l1_batchnorm_gradcheck() -> None:
    l1 = L1BatchNorm(2).double()
    x = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: l1(z), (x,))

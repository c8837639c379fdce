"""PSN family: masked/sliding step-by-step equals multi-step; the GEMM and conv forms agree."""

from __future__ import annotations

import pytest
import torch

from spikeforge.neurons import PSN, MaskedPSN, SlidingPSN
from spikeforge.neurons.psn import band_mask, toeplitz_weight


def test_band_mask_and_toeplitz_numbers() -> None:
    assert band_mask(4, 2).tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]]
    w = torch.tensor([0.25, 0.5, 1.0])
    assert toeplitz_weight(w, 4).tolist() == [[1.0, 0, 0, 0], [0.5, 1.0, 0, 0], [0.25, 0.5, 1.0, 0],
                                              [0, 0.25, 0.5, 1.0]]


def test_psn_is_one_gemm() -> None:
    m = PSN(T=6)
    x = torch.randn(6, 3, 4)
    h = m.weight @ x.reshape(6, -1) + m.bias
    assert torch.equal(m(x), (h >= 0).float().view(6, 3, 4))
    with pytest.raises(ValueError, match="built for T=6.*T=5"):
        m(torch.randn(5, 3))


@pytest.mark.parametrize("k", [1, 2, 4])
def test_masked_psn_single_step_equals_multi_step(k: int) -> None:
    torch.manual_seed(k)
    m = MaskedPSN(k=k, T=8, lambda_init=1.0)
    x = torch.randn(8, 5, 3) * 6
    multi = m(x)
    st, outs = None, []
    for xt in x:
        s, st = m.step(xt, st)
        outs.append(s)
    assert torch.equal(torch.stack(outs), multi)
    assert multi.sum() > 0
    with pytest.raises(RuntimeError, match="already run 8 steps"):
        m.step(x[0], st)


def test_masked_psn_progressive_mask() -> None:
    m = MaskedPSN(k=2, T=5, lambda_init=0.0)
    assert torch.equal(m.effective_weight(), m.weight)                     # λ = 0: the full PSN
    m.lambda_ = 0.5
    torch.testing.assert_close(m.effective_weight(), m.weight * (0.5 * band_mask(5, 2) + 0.5))
    with pytest.raises(RuntimeError, match="lambda_ = 1"):
        m.step(torch.randn(3))
    m.lambda_ = 1.0
    assert torch.equal(m.effective_weight(), m.weight * band_mask(5, 2))


@pytest.mark.parametrize("exp_init", [True, False])
def test_sliding_psn_step_gemm_conv_agree(exp_init: bool) -> None:
    torch.manual_seed(0)
    m = SlidingPSN(k=3, exp_init=exp_init)
    x = torch.randn(10, 4, 6, requires_grad=True)
    h_gemm, h_conv = m.charge(x, "gemm"), m.charge(x, "conv")
    torch.testing.assert_close(h_gemm, h_conv, rtol=1e-6, atol=1e-6)
    # gradients of the two forms agree as well
    g = torch.randn_like(h_gemm)
    gx_gemm, gw_gemm = torch.autograd.grad((h_gemm * g).sum(), (x, m.weight))
    gx_conv, gw_conv = torch.autograd.grad((h_conv * g).sum(), (x, m.weight))
    torch.testing.assert_close(gx_gemm, gx_conv, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gw_gemm, gw_conv, rtol=1e-5, atol=1e-5)
    # step by step equals the multi-step output
    multi = m(x.detach())
    st, outs = None, []
    for xt in x.detach():
        s, st = m.step(xt, st)
        outs.append(s)
    assert torch.equal(torch.stack(outs), multi)
    # by hand: H[t] = Σ_i w_i X[t-k+1+i] + b
    t = 5
    want = sum(m.weight[i] * x[t - 2 + i] for i in range(3)) + m.bias
    torch.testing.assert_close(h_gemm[t], want, rtol=1e-6, atol=1e-6)


def test_sliding_psn_exp_init_and_any_T() -> None:
    m = SlidingPSN(k=4)
    assert m.weight.tolist() == [0.125, 0.25, 0.5, 1.0]
    assert m(torch.randn(3, 2)).shape == (3, 2) and m(torch.randn(17, 2)).shape == (17, 2)

"""PSN networks: the GEMM and convolution forms of the sliding PSN agree inside the sequential-CIFAR net;
masked PSN's λ schedule; T must match."""

from __future__ import annotations

import pytest
import torch

from spikeforge.models import create_model
from spikeforge.neurons import MaskedPSN, SlidingPSN


def test_sliding_psn_gemm_equals_conv_in_the_network() -> None:
    torch.manual_seed(0)
    gemm = create_model("seq_csnn_sliding_psn", img_size=16, channels=8, k=3).double()
    conv = create_model("seq_csnn_sliding_psn", img_size=16, channels=8, k=3, algorithm="conv").double()
    conv.load_state_dict(gemm.state_dict())
    assert all(m.algorithm == "conv" for m in conv.modules() if isinstance(m, SlidingPSN))
    x = torch.rand(4, 3, 16, 16, dtype=torch.float64)
    # the charges of every layer agree to rounding; so do the spikes and the gradients
    charges: dict[str, list[torch.Tensor]] = {"gemm": [], "conv": []}
    for tag, net in (("gemm", gemm), ("conv", conv)):
        for m in net.modules():
            if isinstance(m, SlidingPSN):
                m.register_forward_hook(lambda mod, inp, out, tag=tag: charges[tag].append(mod.charge(inp[0])))
    y_gemm, y_conv = gemm(x), conv(x)
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(charges["gemm"], charges["conv"]))
    assert torch.equal(y_gemm, y_conv)
    y_gemm.square().sum().backward()
    y_conv.square().sum().backward()
    for (n, a), b in zip(gemm.named_parameters(), conv.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-9), n


def test_masked_psn_network_and_lambda() -> None:
    net = create_model("seq_csnn_masked_psn", img_size=8, channels=4, k=2)
    masked = [m for m in net.modules() if isinstance(m, MaskedPSN)]
    assert len(masked) == 7 and all(m.k == 2 and m.T == 8 and m.lambda_ == 0.0 for m in masked)
    x = torch.rand(2, 3, 8, 8)
    before = net(x)
    for m in masked:
        m.lambda_ = 1.0          # fully causal: step t sees inputs t-1 and t only
    assert before.shape == net(x).shape == (8, 2, 10)


def test_psn_needs_matching_T() -> None:
    net = create_model("seq_csnn_psn", img_size=8, channels=4)
    with pytest.raises(ValueError, match="T=8"):
        net(torch.rand(2, 3, 8, 12))           # 12 columns = 12 steps

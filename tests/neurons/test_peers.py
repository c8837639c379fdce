"""IF, LIF and PLIF equal SpikingJelly 2.0's multi-step nodes: spikes identical, gradients to tolerance."""

from __future__ import annotations

import pytest
import torch

from spikeforge import neurons as N
from spikeforge.surrogate import ATan, Sigmoid
from tests.conftest import has_module

pytestmark = [pytest.mark.peers,
              pytest.mark.skipif(not has_module("spikingjelly"), reason="spikingjelly not installed")]

CONFIGS = [  # (v_reset, detach_reset, surrogate)
    (0.0, False, "sigmoid4"),      # the configuration
    (None, False, "sigmoid4"),
    (0.0, True, "atan2"),
    (None, True, "atan2"),
]


def _sg(name: str, sj: bool):
    from spikingjelly.activation_based import surrogate as sjs
    if name == "sigmoid4":
        return sjs.Sigmoid(alpha=4.0) if sj else Sigmoid(alpha=4.0)
    return sjs.ATan(alpha=2.0) if sj else ATan(alpha=2.0)


def _compare(ours: torch.nn.Module, theirs: torch.nn.Module, x: torch.Tensor) -> None:
    xa = x.clone().requires_grad_()
    xb = x.clone().requires_grad_()
    ya, yb = ours(xa), theirs(xb)
    assert ya.sum() > 0 and ya.sum() < ya.numel()
    assert torch.equal(ya, yb), f"{(ya != yb).sum().item()} of {ya.numel()} spikes differ"
    w = torch.randn_like(ya)
    (ya * w).sum().backward()
    (yb * w).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("v_reset,detach,sg", CONFIGS)
def test_lif_equals_spikingjelly(v_reset, detach, sg) -> None:
    from spikingjelly.activation_based import neuron
    for decay_input in (True, False):
        theirs = neuron.LIFNode(tau=2.0, decay_input=decay_input, v_threshold=1.0, v_reset=v_reset,
                                surrogate_function=_sg(sg, True), detach_reset=detach, step_mode="m")
        ours = N.LIF(tau=2.0, decay_input=decay_input, v_threshold=1.0, v_reset=v_reset,
                     surrogate=_sg(sg, False), detach_reset=detach, backend="auto")
        _compare(ours, theirs, torch.randn(16, 8, 64) * 1.5 + 0.4)


@pytest.mark.parametrize("v_reset,detach,sg", CONFIGS)
def test_if_equals_spikingjelly(v_reset, detach, sg) -> None:
    from spikingjelly.activation_based import neuron
    theirs = neuron.IFNode(v_threshold=1.0, v_reset=v_reset, surrogate_function=_sg(sg, True),
                           detach_reset=detach, step_mode="m")
    ours = N.IF(v_threshold=1.0, v_reset=v_reset, surrogate=_sg(sg, False), detach_reset=detach)
    _compare(ours, theirs, torch.randn(16, 8, 64) * 0.8 + 0.1)


@pytest.mark.parametrize("v_reset,detach,sg", CONFIGS)
def test_plif_equals_spikingjelly(v_reset, detach, sg) -> None:
    from spikingjelly.activation_based import neuron
    theirs = neuron.ParametricLIFNode(init_tau=2.0, v_threshold=1.0, v_reset=v_reset,
                                      surrogate_function=_sg(sg, True), detach_reset=detach, step_mode="m")
    ours = N.PLIF(init_tau=2.0, v_threshold=1.0, v_reset=v_reset, surrogate=_sg(sg, False), detach_reset=detach)
    assert torch.equal(ours.w.detach(), theirs.w.detach())
    x = torch.randn(16, 8, 64) * 1.5 + 0.4
    _compare(ours, theirs, x)
    torch.testing.assert_close(ours.w.grad, theirs.w.grad, rtol=1e-5, atol=1e-6)

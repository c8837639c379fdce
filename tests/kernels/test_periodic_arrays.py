"""Per-neuron arrays that repeat every ``P`` neurons (``llvm_kernels.PERIODIC_FLAG``): a per-channel value is
handed to the CPU kernels as one period and its gradient summed per block (``BLOCK_GRADS_FLAG``) where those
rows are small. Spikes, state and every gradient equal the reference backend's, over blocks whose first neuron
is not at the start of a period."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from spikeforge import neurons as N
from spikeforge.kernels.llvm_backend import LLVMLauncher


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, int, bool, int]]:
    """(pass, N, period, block_grads, block) of every LLVM kernel call."""
    seen: list[tuple[str, int, int, bool, int]] = []
    fwd, bwd = LLVMLauncher.forward, LLVMLauncher.backward

    def spy_fwd(self: Any, c: Any, *a: Any) -> None:
        seen.append(("fwd", c.N, c.period, c.block_grads, c.block))
        fwd(self, c, *a)

    def spy_bwd(self: Any, c: Any, *a: Any) -> None:
        seen.append(("bwd", c.N, c.period, c.block_grads, c.block))
        bwd(self, c, *a)

    monkeypatch.setattr(LLVMLauncher, "forward", spy_fwd)
    monkeypatch.setattr(LLVMLauncher, "backward", spy_bwd)
    return seen


def _input(channels_last: bool, C: int, side: int = 24) -> torch.Tensor:
    x = torch.rand(5, 8, C, side, side, generator=torch.Generator().manual_seed(0)) * 2
    if channels_last:
        x = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (5, 8))
    return x


# Channels-last the values are read from a window of P + 16 (a period shorter than a lane vector, 12; longer, 40)
# and the per-block gradient sums run a vector at a time where vectors do not wrap around a period (32: blocks
# start on a period; 48: 4,096 mod 48 = 16 into one) or one at a time (12: 4,096 mod 12 = 4; 40). NCHW: the
# period is one sample (12·24·24 = 6,912 neurons), copied per block, its gradient rows too large to sum per block
@pytest.mark.parametrize("channels_last,C,period,block_grads", [(True, 12, 12, True), (True, 32, 32, True),
                                                                (True, 40, 40, True), (True, 48, 48, True),
                                                                (False, 12, 12 * 24 * 24, False)])
def test_per_channel_threshold_equals_the_reference(calls: list[Any], channels_last: bool, C: int, period: int,
                                                    block_grads: bool) -> None:
    x = _input(channels_last, C)
    th = torch.linspace(0.6, 1.4, C).view(C, 1, 1)
    m = N.PLIF(v_threshold=th, learn_threshold=True)
    ref = N.PLIF(v_threshold=th, learn_threshold=True, backend="torch")
    xg, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    s, (v,) = m.run(xg)
    s_ref, (v_ref,) = ref.run(xr)
    assert torch.equal(s, s_ref) and torch.allclose(v, v_ref)
    assert 0 < float(s.detach().mean()) < 1
    w = torch.rand(s.shape, generator=torch.Generator().manual_seed(1))
    (s * w).sum().backward()
    (s_ref * w).sum().backward()
    torch.testing.assert_close(xg.grad, xr.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m.v_threshold.grad, ref.v_threshold.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(m.w.grad, ref.w.grad, rtol=1e-4, atol=1e-5)
    n = 8 * C * 24 * 24
    assert [c[:4] for c in calls] == [("fwd", n, period, block_grads), ("bwd", n, period, block_grads)]
    if channels_last:                                   # where a block boundary falls inside a period
        assert (calls[0][4] % C != 0) == (C != 32)


def test_a_per_neuron_array_is_read_per_neuron(calls: list[Any]) -> None:
    """An array that differs between samples has no period shorter than a step: it is handed over whole."""
    x = _input(True, 4, side=6)
    th = torch.rand(8, 4, 6, 6, generator=torch.Generator().manual_seed(2)) + 0.5
    m, ref = N.LIF(v_threshold=th), N.LIF(v_threshold=th, backend="torch")
    assert torch.equal(m(x), ref(x))
    assert calls[0][2] == calls[0][1] == 8 * 4 * 6 * 6


@pytest.mark.parametrize("channels_last", [True, False])
def test_an_expanded_value_gets_its_gradient(channels_last: bool) -> None:
    """A per-channel value that is itself one learnable number expanded (stride 0 along its own channel dim) is
    still a value per channel: its period comes from its shape, and its gradient is summed back to the number."""
    C = 12
    x = _input(channels_last, C, side=16)
    grads = []
    for backend in ("torch", "auto"):
        q = torch.tensor(1.0, requires_grad=True)
        m = N.LIF(v_threshold=torch.ones(C, 1, 1), backend=backend)
        m.v_threshold = q.expand(C, 1, 1)
        s = m(x)
        (s * torch.rand(s.shape, generator=torch.Generator().manual_seed(1))).sum().backward()
        grads.append(q.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-3)
    assert abs(float(grads[0])) > 1

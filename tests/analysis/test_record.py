"""Recording spikes and membrane potentials through hooks: numbers by hand, memory bound, no side effects."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeforge.analysis import membrane_trace, record
from spikeforge.neurons import LIF, PSN


class Two(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = LIF(tau=2.0), LIF(tau=2.0, v_threshold=0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


def test_rates_per_layer_and_step_by_hand() -> None:
    # LIF τ=2 on a constant 1.5: H = 0.75, 1.125 (fire, reset to 0), 0.75 -> spikes 0, 1, 0
    x = torch.full((3, 2, 4), 1.5)
    net = Two()
    with record(net, full=True, membrane=True) as rec:
        net(x)
        net(x[:, :1])
    assert rec.rates()["a"] == pytest.approx(1 / 3)
    assert rec.rates_per_step()["a"].tolist() == [0.0, 1.0, 0.0]
    assert rec.sparsity()["a"] == pytest.approx(2 / 3)
    # b sees 0, 1, 0 with V_th = 0.5: H = 0, 0.5 (fires: >= V_th), 0 -> spikes 0, 1, 0
    assert rec.rates_per_step()["b"].tolist() == [0.0, 1.0, 0.0]
    assert rec.spikes("a").shape == (3, 3, 4) and rec.spikes("a").dtype == torch.uint8
    assert rec.membrane("a")[:, 0, 0].tolist() == [0.75, 0.0, 0.75]
    assert rec.records["a"].samples == 3 and rec.records["a"].neurons == 4
    assert not net.a._forward_hooks                               # hooks gone after the block
    row = rec.summary()[0]
    assert row["layer"] == "a" and row["rate_per_step"] == [0.0, 1.0, 0.0]


def test_membrane_trace_matches_the_neuron() -> None:
    torch.manual_seed(0)
    lif = LIF(tau=3.0, v_reset=None)                              # soft reset
    x = torch.rand(6, 2, 5) * 2
    v = membrane_trace(lif, x)
    s = lif(x)
    # soft reset: V[t] = H[t] − S[t], with H[t] = V[t−1] + (X[t] − V[t−1]) / τ
    prev = torch.zeros(2, 5)
    for t in range(6):
        h = prev + (x[t] - prev) / 3.0
        assert torch.allclose(v[t], h - s[t], atol=1e-6)
        prev = v[t]
    with pytest.raises(TypeError, match="scan neuron"):
        membrane_trace(PSN(T=6), x)


def test_layer_choice_by_glob_and_errors() -> None:
    net = Two()
    with record(net, layers=["?"]) as rec:
        net(torch.rand(2, 1, 3))
    assert set(rec.rates()) == {"a", "b"}
    with pytest.raises(ValueError, match="no module named 'c'"):
        record(net, layers=["c"])
    with pytest.raises(ValueError, match="full=True"):
        rec.spikes("a")
    with pytest.raises(KeyError, match="was not recorded"):
        rec.spikes("x")


def test_memory_bound_keeps_summaries() -> None:
    net = Two()
    x = torch.full((3, 2, 4), 1.5)
    with pytest.warns(UserWarning, match="max_bytes"), record(net, full=True, max_bytes=30) as rec:
        net(x)                      # 24 bytes of uint8 spikes for a, then b does not fit
        net(x)
    assert rec.truncated and rec.bytes == 24 and len(rec.records["a"].spikes) == 1
    assert rec.records["b"].samples == 4 and rec.rates()["b"] == pytest.approx(1 / 3)

"""The conventions decided once (docs/guide/conventions.md), pinned."""

from __future__ import annotations

import inspect

import torch

from spikeforge import neurons as N
from spikeforge.neurons.dynamics import euler_leak
from spikeforge.surrogate import Sigmoid


def test_spike_condition_is_greater_or_equal() -> None:
    # exactly at threshold fires (SpikingJelly); one ulp below does not
    x = torch.tensor([[1.0, torch.nextafter(torch.tensor(1.0), torch.tensor(0.0)).item()]])
    assert N.IF()(x).tolist() == [[1.0, 0.0]]


def test_defaults_are_spikingjelly_defaults() -> None:
    m = N.LIF()
    assert (m.tau, m.v_threshold, m.v_reset, m.decay_input, m.dt) == (2.0, 1.0, 0.0, True, 1.0)
    assert m.detach_reset is False            # the reset passes gradient unless asked otherwise
    assert m.surrogate == Sigmoid(alpha=4.0)


def test_decay_is_euler_dt_over_tau_in_one_helper() -> None:
    assert euler_leak(4.0, 2.0) == 0.5 and euler_leak(2.0) == 0.5
    x = torch.rand(20, 3, 7) * 2
    # only the ratio dt/tau matters: (tau=4, dt=2) is (tau=2, dt=1)
    assert torch.equal(N.LIF(tau=4.0, dt=2.0)(x), N.LIF(tau=2.0)(x))
    # every leaky family computes its decay through the helper, never inline
    for mod in (N.lif, N.alif, N.cuba, N.multispike):
        src = inspect.getsource(mod)
        assert "euler_leak(" in src and "1.0 / p.tau" not in src and "/ p.tau" not in src, mod.__name__


def test_hard_and_soft_reset() -> None:
    x = torch.tensor([[1.7]])
    _, (v_hard,) = N.IF(v_reset=-0.5).run(x)
    _, (v_soft,) = N.IF(v_reset=None).run(x)
    assert v_hard.item() == -0.5
    assert abs(v_soft.item() - 0.7) < 1e-6

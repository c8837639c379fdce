"""Extension points later issues build on: the state quantiser and gradient rules."""

from __future__ import annotations

import pytest
import torch

from spikeforge import neurons as N
from spikeforge.neurons import StateQuantizer


def test_quantizer_keeps_state_on_the_grid_and_saturates() -> None:
    q = StateQuantizer(step=0.25, lo=-1.0, hi=1.0)
    m = N.LIF(tau=3.0, v_reset=None, quantizer=q)
    x = torch.randn(20, 50) * 2
    _, (v,) = m.run(x)
    assert torch.equal(v, torch.round(v / 0.25) * 0.25)
    assert v.min() >= -1.0 and v.max() <= 1.0
    assert torch.equal(q(torch.tensor([0.3, 0.4, 5.0, -7.0])), torch.tensor([0.25, 0.5, 1.0, -1.0]))


def test_quantizer_passes_gradient_straight_through() -> None:
    q = StateQuantizer(step=0.5, lo=-2.0, hi=2.0)
    v = torch.tensor([0.3, 1.1, 3.0], requires_grad=True)
    q(v).sum().backward()
    assert v.grad.tolist() == [1.0, 1.0, 0.0]     # the clamp stops gradient outside [lo, hi]
    # through a neuron: the quantised LIF still trains
    x = (torch.randn(8, 4) + 0.5).requires_grad_()
    N.LIF(quantizer=StateQuantizer(step=1 / 16))(x).sum().backward()
    assert x.grad.abs().sum() > 0


def test_integer_simulation_matches_float() -> None:
    x = torch.randint(-3, 6, (30, 4, 7), dtype=torch.int32)
    with torch.no_grad():
        s_int, (v_int,) = N.IF(v_threshold=8.0, v_reset=None).run(x)
        s_f, (v_f,) = N.IF(v_threshold=8.0, v_reset=None).run(x.float())
        assert s_int.dtype == torch.int32 and v_int.dtype == torch.int32
        assert torch.equal(s_int.float(), s_f) and torch.equal(v_int.float(), v_f)
        # a leak of 1/2 with integer state: fire on H, then the quantiser rounds the stored state
        # (half to even), which stays int32
        s_l, (v_l,) = N.LIF(tau=2.0, v_threshold=8.0, quantizer=StateQuantizer()).run(x * 4)
        assert v_l.dtype == torch.int32
        v = torch.zeros(4, 7)
        for t in range(30):
            h = v + 0.5 * (x[t] * 4 - v)
            s = (h >= 8).float()
            v = torch.round(h * (1 - s))
            assert torch.equal(s_l[t].float(), s)
        assert torch.equal(v_l.float(), v)


class DoubleRule:
    """A toy rule: the input gradient is twice the spike gradient (and records what it saw)."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, ...]] = []

    def __call__(self, grad_spikes, x_seq, spikes, state, params):
        self.seen = [tuple(grad_spikes.shape), tuple(x_seq.shape), tuple(spikes.shape), tuple(state[0].shape)]
        return 2.0 * grad_spikes


def test_gradient_rule_replaces_surrogate() -> None:
    rule = DoubleRule()
    m = N.PLIF(grad=rule)
    x = (torch.randn(5, 3, 4) + 0.8).requires_grad_()
    spikes = m(x)
    assert torch.equal(spikes, N.PLIF()(x))          # the forward is the neuron's
    w = torch.randn_like(spikes)
    (spikes * w).sum().backward()
    torch.testing.assert_close(x.grad, 2.0 * w)
    assert rule.seen == [(5, 3, 4), (5, 3, 4), (5, 3, 4), (3, 4)]
    assert m.w.grad is None                           # the rule returned none for the neuron's parameter
    with pytest.raises(ValueError, match="grad must be 'surrogate' or a GradientRule"):
        N.LIF(grad="dsr")


def test_gradient_rule_shape_is_checked() -> None:
    m = N.LIF(grad=lambda g, x, s, st, p: g[0])
    x = torch.randn(4, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"returned shape \(3,\), expected the input's \(4, 3\)"):
        m(x).sum().backward()


class ThresholdRule:
    """Returns a known gradient for the learnable threshold (and for ``x``), as DSR does."""

    def __init__(self, g_th: torch.Tensor) -> None:
        self.g_th, self.params = g_th, None

    def __call__(self, grad_spikes, x_seq, spikes, state, params):
        self.params = params
        return grad_spikes * 0.5, {"v_threshold": self.g_th}


def test_gradient_rule_reaches_the_neurons_parameters_exactly() -> None:
    g = torch.tensor(-0.3125)
    rule = ThresholdRule(g)
    m = N.LIF(learn_threshold=True, v_threshold=0.7, grad=rule)
    x = torch.rand(6, 4, 5, requires_grad=True)
    (m(x) * 3.0).sum().backward()
    assert torch.equal(m.v_threshold.grad, g)             # exactly the rule's value, nothing added
    assert torch.equal(x.grad, torch.full_like(x, 1.5))
    assert float(rule.params.v_threshold.detach()) == pytest.approx(0.7)   # the record the steps saw
    # per-channel thresholds: the shape is the parameter's
    gc = torch.arange(5.0)
    m = N.LIF(learn_threshold=True, v_threshold=torch.ones(5), grad=ThresholdRule(gc))
    m(torch.rand(3, 2, 5)).sum().backward()                # no input gradient wanted: the parameter still gets it
    assert torch.equal(m.v_threshold.grad, gc)


def test_gradient_rule_parameter_names_and_shapes_are_checked() -> None:
    m = N.LIF(learn_threshold=True, grad=lambda g, x, s, st, p: (g, {"tau": torch.ones(())}))
    with pytest.raises(RuntimeError, match=r"gradient for 'tau', which is not a parameter of the neuron "
                                           r"\(its parameters: \['v_threshold'\]\)"):
        m(torch.rand(3, 2, requires_grad=True)).sum().backward()
    m = N.LIF(learn_threshold=True, grad=lambda g, x, s, st, p: (g, {"v_threshold": torch.ones(2)}))
    with pytest.raises(RuntimeError, match=r"returned shape \(2,\) for 'v_threshold', expected the parameter's \(\)"):
        m(torch.rand(3, 2, requires_grad=True)).sum().backward()

"""Surrogates: the backward of each equals the finite difference of its primitive, and where SpikingJelly
has the same surrogate, its gradient is SpikingJelly's to float precision."""

from __future__ import annotations

import math

import pytest
import torch

from spikeforge import surrogate as S
from tests.conftest import has_module

ALL = [cls() for cls in S.SURROGATES.values()]
# kinks of the piecewise surrogates, where a central difference straddles two pieces
KINKS = {
    "piecewise_quadratic": [-1.0, 1.0], "triangle": [-1.0, 1.0], "rectangle": [-0.5, 0.5],
    "log_tailed_relu": [0.0, 1.0], "s2nn": [0.0], "piecewise_exp": [0.0], "q_pseudo_spike": [0.0],
    "superspike": [0.0], "fast_sigmoid": [0.0], "softsign": [0.0],
}


def _grid(sg: S.Surrogate) -> torch.Tensor:
    x = torch.linspace(-3, 3, 601, dtype=torch.float64)
    for k in KINKS.get(sg.name, []):
        x = x[(x - k).abs() > 1e-3]
    return x


@pytest.mark.parametrize("sg", ALL, ids=lambda s: s.name)
def test_backward_is_derivative_of_primitive(sg: S.Surrogate) -> None:
    x = _grid(sg).requires_grad_()
    sg(x).sum().backward()
    h = 1e-6
    fd = (sg.primitive(x.detach() + h) - sg.primitive(x.detach() - h)) / (2 * h)
    torch.testing.assert_close(x.grad, fd, rtol=1e-5, atol=1e-7)
    # the surrogate is not flat: something could fail above
    assert x.grad.abs().max() > 0.1


@pytest.mark.parametrize("sg", ALL, ids=lambda s: s.name)
def test_forward_is_heaviside_with_boundary_firing(sg: S.Surrogate) -> None:
    x = torch.tensor([-1.0, -1e-7, 0.0, 1e-7, 2.0])
    assert sg(x).tolist() == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert sg(x.double()).dtype == torch.float64


@pytest.mark.parametrize("sg", ALL, ids=lambda s: s.name)
def test_smooth_mode_forward_is_primitive_and_gradchecks(sg: S.Surrogate) -> None:
    smooth = type(sg)(**sg.params(), spiking=False)
    x = (_grid(sg)[::40]).clone().requires_grad_()
    torch.testing.assert_close(smooth(x), sg.primitive(x.detach()))
    assert torch.autograd.gradcheck(smooth, (x,))


def test_primitives_are_cdfs_of_unit_step() -> None:
    # a surrogate's primitive goes from ~0 to ~1 across the threshold (S2NN and LogTailedReLU grow on)
    for sg in (S.Sigmoid(), S.ATan(), S.Erf(), S.SoftSign(), S.PiecewiseQuadratic(), S.Rectangle(),
               S.PiecewiseExp(), S.QPseudoSpike()):
        p = sg.primitive(torch.tensor([-50.0, 0.0, 50.0]))
        assert p[0] < 0.05 and abs(p[1] - 0.5) < 1e-6 and p[2] > 0.95, sg


def test_known_values() -> None:
    x = torch.zeros(1, requires_grad=True)
    expect = {S.Sigmoid(alpha=4.0): 1.0, S.ATan(alpha=2.0): 1.0, S.Erf(alpha=2.0): 2 / math.sqrt(math.pi),
              S.Rectangle(alpha=1.0): 1.0, S.PiecewiseQuadratic(alpha=1.0): 1.0, S.SuperSpike(alpha=1.0): 1.0,
              S.FastSigmoid(slope=25.0): 1.0, S.Triangle(): 0.3, S.SoftSign(alpha=2.0): 1.0,
              S.PiecewiseExp(alpha=1.0): 0.5}
    for sg, g in expect.items():
        x.grad = None
        sg(x).sum().backward()
        assert x.grad.item() == pytest.approx(g, rel=1e-6), sg


def test_factory() -> None:
    assert S.get_surrogate("atan", alpha=3.0) == S.ATan(alpha=3.0)
    obj = S.Sigmoid(alpha=2.0)
    assert S.get_surrogate(obj) is obj
    with pytest.raises(ValueError, match="unknown surrogate 'nope'.*atan"):
        S.get_surrogate("nope")
    with pytest.raises(ValueError, match="alpha > 1"):
        S.QPseudoSpike(alpha=1.0)


# -- equality with SpikingJelly 2.0 -------------------------------------------------------------------
SJ_PAIRS = [
    ("Sigmoid", S.Sigmoid, {"alpha": 4.0}), ("Sigmoid", S.Sigmoid, {"alpha": 2.5}),
    ("ATan", S.ATan, {"alpha": 2.0}), ("ATan", S.ATan, {"alpha": 3.0}),
    ("SuperSpike", S.SuperSpike, {"alpha": 1.0}), ("PiecewiseQuadratic", S.PiecewiseQuadratic, {"alpha": 1.5}),
    ("Rect", S.Rectangle, {"alpha": 1.0}), ("Erf", S.Erf, {"alpha": 2.0}), ("SoftSign", S.SoftSign, {"alpha": 2.0}),
    ("PiecewiseExp", S.PiecewiseExp, {"alpha": 1.0}), ("LogTailedReLU", S.LogTailedReLU, {"alpha": 0.1}),
    ("S2NN", S.S2NN, {"alpha": 4.0, "beta": 1.0}), ("QPseudoSpike", S.QPseudoSpike, {"alpha": 2.0}),
    ("DeterministicPass", S.StraightThrough, {}),
]


@pytest.mark.peers
@pytest.mark.skipif(not has_module("spikingjelly"), reason="spikingjelly not installed")
@pytest.mark.parametrize("sj_name,cls,kw", SJ_PAIRS, ids=[f"{p[0]}-{p[2]}" for p in SJ_PAIRS])
def test_equals_spikingjelly(sj_name: str, cls: type, kw: dict) -> None:
    from spikingjelly.activation_based import surrogate as sjs

    x = torch.linspace(-3, 3, 1201).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    theirs = getattr(sjs, sj_name)(**kw)
    ours = cls(**kw)
    theirs(x).sum().backward()
    ours(x2).sum().backward()
    assert torch.equal(theirs(x.detach()), ours(x2.detach()))
    torch.testing.assert_close(x2.grad, x.grad, rtol=2e-6, atol=1e-7)

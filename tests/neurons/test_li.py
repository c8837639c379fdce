"""The leaky-integrator readout: its closed form, fused = torch loop, continuation, gradients."""

from __future__ import annotations

import pytest
import torch

from spikeforge.neurons import LI


@pytest.mark.parametrize("decay_input", [True, False])
def test_constant_input_follows_the_closed_form(decay_input: bool) -> None:
    lam, x, v0 = 0.25, 0.8, 0.1
    out = LI(tau=4.0, v_rest=v0, decay_input=decay_input, backend="torch")(torch.full((12, 1), x, dtype=torch.float64))
    t = torch.arange(1, 13, dtype=torch.float64)
    fixed = v0 + x if decay_input else v0 + x / lam          # where V settles
    want = fixed + (v0 - fixed) * (1 - lam) ** t             # V_t = fixed + (V_0 - fixed)(1 - λ)^t
    torch.testing.assert_close(out.flatten(), want, rtol=1e-12, atol=1e-12)


def test_fused_equals_the_torch_loop_and_gradients_agree() -> None:
    x = torch.randn(20, 4, 33, requires_grad=True)
    a, b = LI(tau=3.0, backend="cpu")(x), LI(tau=3.0, backend="torch")(x)
    assert torch.equal(a, b)
    (ga,) = torch.autograd.grad((a * a).sum(), x)
    (gb,) = torch.autograd.grad((b * b).sum(), x)
    torch.testing.assert_close(ga, gb, rtol=1e-5, atol=1e-5)


def test_a_split_sequence_equals_the_whole_and_gradcheck() -> None:
    li = LI(tau=2.5, v_rest=-0.3, backend="torch")
    x = torch.randn(10, 3, 5, dtype=torch.float64, requires_grad=True)
    first, state = li.run(x[:4])
    second, _ = li.run(x[4:], state)
    torch.testing.assert_close(torch.cat([first, second]), li(x), rtol=0, atol=0)
    assert torch.autograd.gradcheck(li, (x,))


def test_bad_arguments_name_themselves() -> None:
    with pytest.raises(ValueError, match="tau must be >= dt"):
        LI(tau=0.5)
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        LI(backend="gpu")
    with pytest.raises(ValueError, match=r"time-first tensor \[T, B, ...\] with T >= 1"):
        LI()(torch.zeros(3))

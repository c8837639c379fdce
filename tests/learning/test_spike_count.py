"""The spike-count rule: spiking output, the rate penalty and its gradient by hand, training."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from spikeforge.data import build_dataset
from spikeforge.learning import CountRule, RateNeuron, SpikeCount, SpikingReadout, rate_penalty
from spikeforge.models import create_model
from spikeforge.training import StepContext, fit, mean_ce


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """Small tensors: a second OpenMP thread only waits at barriers on the shared CI machine (the root
    conftest puts the thread count back after each test)."""
    torch.set_num_threads(1)


def _ctx(model: torch.nn.Module, loss: Any = mean_ce, lr: float = 1e-2) -> StepContext:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    return StepContext(loss, opt, torch.amp.GradScaler("cpu", enabled=False), lambda *a: None, None, model)


def _model(hidden: int = 16, T: int = 4, **kw: Any) -> torch.nn.Module:
    return SpikeCount(**kw).prepare(create_model("spiking_mlp_tiny", hidden=hidden, T=T))


def test_penalty_and_its_gradient_by_hand() -> None:
    """relu(c/T − 0.5) = [[0, 0.3], [0.1, 0.5]]: mean of squares 0.0875, ∂/∂c = 2·relu/(T·N)."""
    c = torch.tensor([[2.0, 8.0], [6.0, 10.0]], dtype=torch.float64, requires_grad=True)
    other = torch.tensor([4.0, 9.0], dtype=torch.float64, requires_grad=True)      # a second layer, N = 2
    p = rate_penalty([c, other], T=10, r_max=0.5)
    p.backward()
    assert p.item() == pytest.approx(0.0875 + 0.4 ** 2 / 2, abs=1e-15)
    torch.testing.assert_close(c.grad, torch.tensor([[0.0, 0.015], [0.005, 0.025]], dtype=torch.float64))
    torch.testing.assert_close(other.grad, torch.tensor([0.0, 2 * 0.4 / 20], dtype=torch.float64))
    assert rate_penalty([], T=10).item() == 0.0


def test_step_adds_the_hidden_penalty_and_its_gradient_reaches_the_weights() -> None:
    """With the task loss zeroed, the step's gradient on the hidden weights is λ·∂P/∂c through the count
    rule: ∂/∂W = λ·(2·relu(c/T − r_max)/(T·N))·(1/ϑ)·1[0 < u < Tϑ] ⊗ (T·x) for a constant input x; the
    output neurons' counts are not penalised (the head gets no gradient)."""
    torch.manual_seed(1)
    T, lam, r_max, vth = 4, 3.0, 0.25, 1.0
    model = _model(hidden=16, T=T, rate_limit=lam, r_max=r_max, out_bias=0.0).double()
    with torch.no_grad():
        model.fc[1].weight.mul_(4)
    x = torch.rand(5, 1, 8, 8, dtype=torch.float64)
    x_seq = x.expand(T, *x.shape).contiguous()
    out = SpikeCount(rate_limit=lam, r_max=r_max)(model, (x_seq, torch.zeros(5, dtype=torch.long)),
                                                  _ctx(model, loss=lambda o, y, aux: 0 * o.sum()))
    W, b = model.fc[1].weight, model.fc[1].bias
    with torch.no_grad():
        xf = x.flatten(1)
        u = T * (xf @ W.T + b)
        c = model.sn(model.fc(x_seq)).sum(0)
        excess = torch.relu(c / T - r_max)
        dc = lam * 2 * excess / (T * c.numel())
        du = dc * ((u > 0) & (u < T * vth)) / vth
    assert (excess > 0).any() and (excess == 0).any() and ((u > 0) & (u < T * vth) & (excess > 0)).any()
    assert out.extra["rate_penalty"] == pytest.approx(excess.square().mean().item(), rel=1e-12)
    assert out.loss.item() == pytest.approx(lam * excess.square().mean().item(), rel=1e-12)
    torch.testing.assert_close(W.grad, du.T @ (T * xf), atol=1e-12, rtol=0)
    torch.testing.assert_close(b.grad, T * du.sum(0), atol=1e-12, rtol=0)
    assert model.head.linear[0].weight.grad.abs().sum() == 0


def test_output_is_spikes_and_ce_is_on_the_output_count() -> None:
    model = _model(T=8, scale=2.0)
    assert isinstance(model.head, SpikingReadout) and isinstance(model.head.neuron.grad_rule, CountRule)
    assert all(isinstance(n.grad_rule, CountRule) for n in model.modules() if isinstance(n, RateNeuron))
    x_seq = torch.rand(8, 3, 1, 8, 8)
    out = model(x_seq)
    assert set(out.unique().tolist()) <= {0.0, 2.0}
    c = model.head.neuron(model.head.linear(model.sn(model.fc(x_seq)))).sum(0)
    y = torch.tensor([0, 1, 2])
    torch.testing.assert_close(mean_ce(out, y), F.cross_entropy(2.0 * c / 8, y))
    assert _model().head.linear[0].bias.eq(0.5).all()                             # the default: ϑ/2 per step
    assert _model(out_bias=0.25, vth=2.0).head.linear[0].bias.eq(0.5).all()      # out_bias·ϑ


def test_check_and_settings() -> None:
    kw = dict(in_channels=1, img_size=8, T=4)
    assert "head" in (SpikeCount().check(create_model("spiking_mlp_tiny", num_classes=0, **kw)) or "")
    assert "attention" in (SpikeCount().check(create_model("spikformer_tiny", num_classes=10, **kw)) or "")
    for bad in ({"vth": 0}, {"rate_limit": -1}, {"r_max": 2}, {"scale": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SpikeCount(**bad)  # type: ignore[arg-type]
    assert SpikeCount(out_bias=0).options()["out_bias"] == 0.0
    m = _model()
    assert SpikeCount().prepare(m) is m and isinstance(m.head.linear, torch.nn.Module)
    assert not isinstance(m.head.linear, SpikingReadout)                          # prepared once only


@pytest.fixture(scope="module")
def digits() -> Any:
    return build_dataset("digits", T=8, progress=False)


def _batch(data: Any, n: int) -> tuple[Tensor, Tensor]:
    x = torch.stack([data.train[i][0] for i in range(n)])
    y = torch.stack([torch.as_tensor(data.train[i][1]) for i in range(n)])
    return x, y


def test_overfits_one_batch(digits: Any) -> None:
    torch.manual_seed(0)
    T = 8
    x, y = _batch(digits, 32)
    x_seq = x.expand(T, *x.shape).contiguous()
    model = _model(hidden=64, T=T)
    ctx, step = _ctx(model), SpikeCount()
    for _ in range(80):
        ctx.optimizer.zero_grad()
        out = step(model, (x_seq, y), ctx)
        ctx.optimizer.step()
    assert (out.outputs.mean(0).argmax(-1) == y).all()
    with torch.no_grad():
        assert (model(x_seq).mean(0).argmax(-1) == y).all()


def test_training_is_deterministic_under_a_seed(digits: Any) -> None:
    def run() -> dict[str, Tensor]:
        torch.manual_seed(0)
        model = create_model("spiking_mlp_tiny", hidden=32, T=8)
        fit(model, digits, T=8, encoding="direct", epochs=1, max_steps=6, method="spike-count", progress=False,
            seed=5)
        return model.state_dict()
    a, b = run(), run()
    assert all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(0)
    assert not torch.equal(a["fc.1.weight"], create_model("spiking_mlp_tiny", hidden=32, T=8).fc[1].weight)

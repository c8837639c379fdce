"""Tandem learning: the IF count identity, the count backward against hand gradients, training."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeforge.data import build_dataset
from spikeforge.learning import CountRule, RateNeuron, Tandem, count_activation, count_neuron, if_count
from spikeforge.models import create_model
from spikeforge.neurons import call_rule
from spikeforge.training import fit, mean_ce


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """Small tensors: a second OpenMP thread only waits at barriers on the shared CI machine (the root
    conftest puts the thread count back after each test)."""
    torch.set_num_threads(1)


def _count(x_seq: torch.Tensor, vth: float) -> torch.Tensor:
    return count_neuron(vth, backend="torch")(x_seq).sum(0)


@pytest.mark.parametrize("vth", [1.0, 0.5, 2.0])
@pytest.mark.parametrize("T", [1, 4, 8, 16])
def test_count_of_a_constant_current_is_the_clamped_floor_exactly(T: int, vth: float) -> None:
    """x[t] = x for all t, I = T·x: c = clamp(⌊I/ϑ⌋, 0, T), boundaries I = kϑ included (fire at V ≥ ϑ).
    Dyadic x and ϑ keep every sum exact, so the identity holds to the last bit."""
    x = torch.arange(-32, 81, dtype=torch.float64) / 16            # −2 … 5 in steps of 1/16
    c = _count(x.expand(T, -1).contiguous(), vth)
    assert torch.equal(c, if_count(T * x, vth, T))
    assert c.max() == T and c.min() == 0


def test_count_is_exact_for_inputs_between_zero_and_the_threshold() -> None:
    """0 ≤ x[t] ≤ ϑ keeps V in [0, ϑ) after every reset, so c = ⌊Σx/ϑ⌋ even when x changes over time."""
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 17, (8, 500), generator=g).double() / 16         # dyadic, in [0, ϑ = 1]
    assert torch.equal(_count(x, 1.0), if_count(x.sum(0), 1.0, 8))


def test_count_error_exceeds_one_for_a_current_that_changes_sign() -> None:
    """Two spikes early, then inhibition: I = 0 predicts no spike, the neuron fired twice (error 2).
    The other way round, a late burst above ϑ fires once per step at most (error −3)."""
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 5.0]])
    c = _count(x.unsqueeze(1), 1.0)[0]
    assert c.tolist() == [2.0, 1.0]
    assert (c - if_count(x.sum(0), 1.0, 4)).tolist() == [2.0, -3.0]


def test_count_activation_is_the_clamped_ratio() -> None:
    u = torch.tensor([-1.0, 0.0, 1.5, 7.5, 8.0, 20.0])
    assert count_activation(u, 1.0, 8).tolist() == [0.0, 0.0, 1.5, 7.5, 8.0, 8.0]
    assert count_activation(u, 2.0, 8).tolist() == [0.0, 0.0, 0.75, 3.75, 4.0, 8.0]


def test_rule_on_hand_values() -> None:
    """∂L/∂x[t] = mean_t′(∂L/∂S[t′])·(1/ϑ)·1[0 < u < Tϑ], the same at every step; the interval is open."""
    T, vth = 4, 0.5
    # columns: u = Σ_t x = 1 (inside, varying over time), 0 and 2 = Tϑ (the boundaries), −1 (below), 3 (above)
    x = torch.tensor([[1.0, 0.0, 0.5, -0.25, 0.75],
                      [-0.5, 0.0, 0.5, -0.25, 0.75],
                      [0.5, 0.0, 0.5, -0.25, 0.75],
                      [0.0, 0.0, 0.5, -0.25, 0.75]])
    grad = torch.tensor([1.0, 2.0, 3.0, 4.0]).unsqueeze(1).expand(T, 5)       # mean 2.5
    params = RateNeuron(v_threshold=vth, backend="torch").params()
    gx = call_rule(CountRule(), grad, x, torch.zeros_like(x), None, params)
    assert gx[:, 0].tolist() == [5.0] * T                                      # 2.5 / ϑ
    assert gx[:, 1:].abs().sum() == 0
    with pytest.raises(ValueError, match="alpha=1"):
        call_rule(CountRule(), grad, x, x, None, RateNeuron(alpha=0.5).params())


def test_two_layer_hand_gradient() -> None:
    """x → W1 → IF → W2 → IF → L = Σ w·c2. By hand, with u the aggregate currents:
    δ2 = w·(1/ϑ)·1[0 < u2 < Tϑ],  δ1 = (W2ᵀ δ2)·(1/ϑ)·1[0 < u1 < Tϑ],
    ∂L/∂W2 = δ2 c1ᵀ,  ∂L/∂W1 = δ1 (Σ_t x[t])ᵀ,  ∂L/∂x[t] = W1ᵀ δ1."""
    torch.manual_seed(3)
    T, vth, B = 8, 0.75, 16
    l1, l2 = nn.Linear(6, 12).double(), nn.Linear(12, 5).double()
    n1, n2 = count_neuron(vth, backend="torch"), count_neuron(vth, backend="torch")
    x = (torch.rand(T, B, 6, dtype=torch.float64) * 2 - 0.5).requires_grad_(True)
    w = torch.randn(5, dtype=torch.float64)
    s1 = n1(l1(x))
    c2 = n2(l2(s1)).sum(0)
    (c2 * w).sum().backward()
    with torch.no_grad():
        c1 = s1.sum(0)
        u1 = (x @ l1.weight.T + l1.bias).sum(0)
        u2 = c1 @ l2.weight.T + T * l2.bias
        d2 = w * ((u2 > 0) & (u2 < T * vth)) / vth
        d1 = (d2 @ l2.weight) * ((u1 > 0) & (u1 < T * vth)) / vth
    assert 0 < ((u1 > 0) & (u1 < T * vth)).double().mean() < 1                 # both sides of the window
    assert 0 < ((u2 > 0) & (u2 < T * vth)).double().mean() < 1
    torch.testing.assert_close(l2.weight.grad, d2.T @ c1, atol=1e-6, rtol=0)
    torch.testing.assert_close(l2.bias.grad, T * d2.sum(0), atol=1e-6, rtol=0)
    torch.testing.assert_close(l1.weight.grad, d1.T @ x.detach().sum(0), atol=1e-6, rtol=0)
    torch.testing.assert_close(x.grad, (d1 @ l1.weight).expand(T, -1, -1), atol=1e-6, rtol=0)


def test_backward_keeps_only_the_aggregate_current() -> None:
    """What autograd saves for a count neuron is ``u`` ``[B, ...]``, nothing with the time axis."""
    x = torch.rand(16, 3, 5, requires_grad=True)
    shapes: list[tuple[int, ...]] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        s = count_neuron(backend="torch")(x)
    assert shapes == [(3, 5)]
    s.sum().backward()
    torch.testing.assert_close(x.grad, ((x.sum(0) > 0) & (x.sum(0) < 16)).float().expand(16, -1, -1))


def test_prepare_swaps_every_neuron_and_check_refuses_attention() -> None:
    kw = dict(in_channels=1, img_size=8, num_classes=10, T=4)
    m = Tandem(vth=0.5).prepare(create_model("spiking_cnn_tiny", pool="avg", **kw))
    ns = [n for n in m.modules() if isinstance(n, RateNeuron)]
    assert len(ns) == 2 and all(isinstance(n.grad_rule, CountRule) and n.v_threshold == 0.5 for n in ns)
    assert not any(p.requires_grad for n in ns for p in n.parameters())
    assert "attention" in (Tandem().check(create_model("spikformer_tiny", **kw)) or "")
    with pytest.raises(ValueError, match="vth"):
        Tandem(vth=0)


@pytest.fixture(scope="module")
def digits() -> object:
    return build_dataset("digits", T=4, progress=False)


def test_overfits_one_batch(digits: object) -> None:
    torch.manual_seed(0)
    x = torch.stack([digits.train[i][0] for i in range(32)])                 # type: ignore[attr-defined]
    y = torch.stack([torch.as_tensor(digits.train[i][1]) for i in range(32)])  # type: ignore[attr-defined]
    model = Tandem().prepare(create_model("spiking_mlp_tiny", hidden=64, T=4))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x_seq = x.expand(4, *x.shape).contiguous()
    for _ in range(60):
        opt.zero_grad()
        mean_ce(model(x_seq), y).backward()
        opt.step()
    with torch.no_grad():
        assert (model(x_seq).mean(0).argmax(-1) == y).all()


def test_training_is_deterministic_under_a_seed(digits: object) -> None:
    def run() -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = create_model("spiking_mlp_tiny", hidden=32, T=4)
        fit(model, digits, T=4, encoding="direct", epochs=1, max_steps=6, method="tandem",  # type: ignore[arg-type]
            progress=False, seed=5)
        return model.state_dict()
    a, b = run(), run()
    assert all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(0)
    assert not torch.equal(a["fc.1.weight"], create_model("spiking_mlp_tiny", hidden=32, T=4).fc[1].weight)

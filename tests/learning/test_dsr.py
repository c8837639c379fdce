"""DSR: the rate bounds, the backward against the official formulas, learned thresholds, 0/1 spikes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeforge.analysis import audit
from spikeforge.learning import DSR, DSRRule, RateNeuron, rate_neurons, weighted_rate
from spikeforge.models import create_model
from spikeforge.neurons import call_rule


def _if(alpha: float, vth: float = 1.0, **kw: object) -> RateNeuron:
    return RateNeuron(v_threshold=vth, alpha=alpha, emit=True, backend="torch", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("alpha", "bound"), [(1.0, 1.0), (0.5, 0.5)])
def test_if_rate_of_a_constant_input_is_within_the_bound(alpha: float, bound: float) -> None:
    """|a − x| ≤ max(α, 1 − α)·V_th/T for a constant input x in [0, V_th]: V_th/T at α = 1, V_th/(2T) at 0.5."""
    vth = 1.5
    x = torch.linspace(0, vth, 301, dtype=torch.float64)
    worst = {}
    for T in (4, 8, 16, 64):
        a = _if(alpha, vth)(x.expand(T, -1).contiguous()).mean(0)
        err = (a - x).abs().max().item()
        assert err <= bound * vth / T + 1e-12, (T, err)
        worst[T] = err
    assert worst[64] < worst[4] and worst[4] > 0.9 * bound * vth / 4      # the bound is reached, and shrinks


def test_lif_weighted_rate_of_a_constant_input_is_within_the_bound() -> None:
    """Euler LIF: a = λr − V[T]/S_w, so |a − clamp(λr, 0, V_th)| ≤ max(α, 1 − α)·V_th/S_w, S_w = (1 − β^T)/λ."""
    tau, T, alpha, vth = 4.0, 16, 0.5, 1.0
    lam, beta = 1 / tau, 1 - 1 / tau
    x = torch.linspace(0, vth / lam, 201, dtype=torch.float64)
    n = RateNeuron(v_threshold=vth, alpha=alpha, tau=tau, emit=True, backend="torch")
    a = weighted_rate(n(x.expand(T, -1).contiguous()), beta)
    s_w = (1 - beta ** T) / lam
    err = (a - (lam * x).clamp(0, vth)).abs().max().item()
    assert 0 < err <= 0.5 * vth / s_w + 1e-12


def _official_if(x: torch.Tensor, grad_value: torch.Tensor, vth: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The official IFFunction.backward, restated: g = T·mean_t(grad); ∂x = g/T·1[0 ≤ r ≤ V_th], repeated;
    ∂V_th = Σ g·1[r > V_th]."""
    T = x.shape[0]
    r, g = x.mean(0), grad_value.mean(0) * T
    gx = torch.where((r < 0) | (r > vth), 0.0, g).expand_as(x) / T
    return gx, torch.where(r <= vth, 0.0, g).sum()


def test_if_backward_equals_the_official_formulas_on_hand_values() -> None:
    # three neurons over T = 4: r = 0.5 (inside), r = 2 (above V_th = 1), r = −0.125 (below 0)
    x = torch.tensor([[0.5, 2.0, -1.0], [0.5, 2.0, 0.5], [0.5, 2.0, 0.0], [0.5, 2.0, 0.0]], dtype=torch.float64)
    grad = torch.tensor([[1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [3.0, 3.0, 3.0], [4.0, 4.0, 4.0]], dtype=torch.float64)
    n = _if(1.0)
    params = n.params()
    gx, gp = call_rule(DSRRule(), grad, x, torch.zeros_like(x), None, params)
    assert gx[:, 0].tolist() == [2.5] * 4 and gx[:, 1:].abs().sum() == 0          # g = 10, g/T = 2.5
    assert gp["v_threshold"].item() == 10.0                                        # only the neuron above
    ox, oth = _official_if(x, grad, 1.0)
    assert torch.equal(gx, ox) and gp["v_threshold"].item() == oth.item()


def test_lif_backward_equals_the_official_formulas_at_dt_1() -> None:
    """Official lif_grad with Δt = 1: ∂x = (g/τ)·1[0 < r < V_th·τ]/T, ∂V_th = Σ g·1[r > V_th·τ], with the
    weighted rates over Euler's β = 1 − 1/τ. Hand values: τ = 2 (λ = β = 0.5), T = 2, w = (0.5, 1), S_w = 1.5."""
    x = torch.tensor([[1.0, 1.0], [1.0, 4.0]], dtype=torch.float64)      # r = 1 (inside: < 2), r = 3 (above)
    grad = torch.ones(2, 2, dtype=torch.float64)                          # g = T·(0.5 + 1)/1.5 = 2
    n = RateNeuron(v_threshold=1.0, alpha=0.5, tau=2.0, emit=True, backend="torch")
    gx, gp = call_rule(DSRRule(), grad, x, torch.zeros_like(x), None, n.params())
    assert gx[:, 0].tolist() == [0.5, 0.5] and gx[:, 1].tolist() == [0.0, 0.0]     # g·λ/T = 2·0.5/2
    assert gp["v_threshold"].item() == 2.0


def test_folded_threshold_gives_the_value_gradient_and_vth_learns() -> None:
    """Through a Linear that carries V_th = 2 in its weight, the neuron's input gets the official gradient of
    the value V_th·S, and V_th's .grad is DSR's Σ g·1[r > V_th] (the fold passes it none)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Identity(), RateNeuron(v_threshold=2.0, alpha=1.0, learn_threshold=True,
                                                    grad=DSRRule(), backend="torch"), nn.Linear(3, 1, bias=False))
    from spikeforge.learning import fold_thresholds
    plan = fold_thresholds(model)
    assert plan.groups == [["1"]] and plan.consumers == [["2"]] and not plan.emit
    w = torch.tensor([[1.0, -2.0, 3.0]])
    with torch.no_grad():
        model[2].parametrizations.weight.original.copy_(w)
    x = torch.tensor([[1.0, 3.0, -1.0]]).expand(4, 1, 3).contiguous().requires_grad_(True)   # r = 1, 3, −1
    out = model(x)
    spikes = model[1](x)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    assert torch.allclose(out, 2.0 * spikes @ w.T)                        # the value V_th·S reaches the Linear
    out.sum().backward()
    g = 4 * w[0]                                                           # Σ_t ∂L/∂value = T·w
    assert torch.allclose(x.grad[0, 0], g / 4 * torch.tensor([1.0, 0.0, 0.0]))
    assert model[1].v_threshold.grad.item() == pytest.approx(g[1].item())  # only r = 3 > V_th = 2


def test_threshold_is_clamped_from_below_before_each_forward() -> None:
    n = RateNeuron(v_threshold=1.0, learn_threshold=True, vth_bound=0.05, grad=DSRRule(), backend="torch")
    with torch.no_grad():
        n.v_threshold.fill_(-0.3)
    n(torch.ones(2, 1, 1))
    assert n.v_threshold.item() == pytest.approx(0.05)


def _prepared(name: str, **kw: object) -> nn.Module:
    torch.manual_seed(0)
    m = create_model(name, in_channels=1, img_size=8, num_classes=10, T=4, **kw)
    DSR().prepare(m)
    return m


def test_fold_plan_of_the_zoo() -> None:
    sew = _prepared("sew_resnet_tiny")
    ns = rate_neurons(sew)
    assert not any(n.emit for n in ns.values())
    assert ns["stem.1"].v_threshold is ns["stages.0.0.branch.3"].v_threshold          # summed by SEW ADD: tied
    assert ns["stages.1.0.branch.3"].v_threshold is ns["stages.1.0.shortcut.1"].v_threshold
    plain = rate_neurons(_prepared("spiking_resnet_tiny"))
    assert [k for k, n in plain.items() if n.emit] == ["stem.1"]     # added to a BN output: emits V_th·S
    assert not any(n.emit for n in rate_neurons(_prepared("spiking_vgg_tiny")).values())   # max pool commutes


@pytest.mark.parametrize("name", ["spiking_cnn_tiny", "sew_resnet_tiny", "spiking_vgg_tiny"])
def test_folded_model_equals_the_model_that_emits_values(name: str) -> None:
    """Folding V_th into the next weights changes nothing but where the multiplication happens."""
    kw = {"pool": "avg"} if name == "spiking_cnn_tiny" else {}
    folded = _prepared(name, **kw)
    for n in rate_neurons(folded).values():
        with torch.no_grad():
            n.v_threshold.fill_(0.7)
    from torch.nn.utils import parametrize
    plain = _prepared(name, **kw)
    plain.load_state_dict(folded.state_dict())
    for mod in list(plain.modules()):
        if parametrize.is_parametrized(mod):
            parametrize.remove_parametrizations(mod, "weight", leave_parametrized=False)
    for n in rate_neurons(plain).values():
        n.emit = True
    x = torch.rand(4, 3, 1, 8, 8) * 2
    folded.eval(), plain.eval()
    with torch.no_grad():
        a, b = folded(x), plain(x)
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


@pytest.mark.parametrize(("name", "kw"), [("spiking_vgg_tiny", {}), ("spiking_mlp_tiny", {"bn": True}),
                                          ("sew_resnet_tiny", {})])
def test_dsr_model_is_spike_driven_after_the_first_layer(name: str, kw: dict[str, object]) -> None:
    """The spikes stay 0/1 (V_th is in the next weights: a constant scale that folds), so every synaptic
    layer after the encoder accumulates. (SEW ADD sums spikes: there the audit finds the sums, as for BPTT.)"""
    m = _prepared(name, **kw)
    m.eval()
    with torch.no_grad():
        for n in rate_neurons(m).values():
            n.v_threshold.fill_(0.3)                # fire on random input
    a = audit(m, torch.rand(4, 2, 1, 8, 8))
    assert a.fired and a.categories["ac"] > 0 and a.categories["foldable"] > 0
    if name == "sew_resnet_tiny":
        assert a.nonspike_macs() and all("residual sum" in f.cause for f in a.nonspike_macs())
    else:
        assert a.nonspike_mac_count() == 0, a.table()


def test_dsr_rejects_what_it_cannot_train() -> None:
    kw = dict(in_channels=1, img_size=8, num_classes=10, T=4)
    assert "SEW AND" in (DSR().check(create_model("sew_resnet_tiny", cnf="AND", **kw)) or "")
    assert "attention" in (DSR().check(create_model("spikformer_tiny", **kw)) or "")
    with pytest.raises(ValueError, match="alpha"):
        DSR(alpha=0)
    with pytest.raises(ValueError, match="neuron"):
        DSR(neuron="izh")


def test_tied_thresholds_survive_a_checkpoint(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """SEW ADD ties thresholds (one Parameter under two names): the checkpoint stores both, and a rebuilt
    model loads them back tied."""
    from spikeforge.training import load_checkpoint, save_checkpoint
    sew = _prepared("sew_resnet_tiny")
    with torch.no_grad():
        rate_neurons(sew)["stem.1"].v_threshold.fill_(0.625)
    save_checkpoint(tmp_path / "c.safetensors", model=sew.state_dict())
    again = _prepared("sew_resnet_tiny")
    again.load_state_dict(load_checkpoint(tmp_path / "c.safetensors")["model"])
    ns = rate_neurons(again)
    assert ns["stem.1"].v_threshold is ns["stages.0.0.branch.3"].v_threshold
    assert ns["stages.0.0.branch.3"].v_threshold.item() == 0.625

"""ANN→SNN conversion: the QCFS activation against the official formula, the first layer's bound, deeper
layers' error falling with T, thresholds from statistics, SEW ADD groups, the models it refuses, and the
twins learning (one batch overfitted, deterministic under a seed)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from spikeforge.data import build_dataset
from spikeforge.learning import (
    ANN,
    QCFS,
    QCFSActivation,
    RateNeuron,
    ReLUTwin,
    convert,
    layer_errors,
    rate_neurons,
    sew_groups,
    threshold_statistics,
    twin_activations,
)
from spikeforge.models import create_model
from spikeforge.training import fit


def _twin(name: str, method: ANN, **kw: object) -> nn.Module:
    """A prepared twin for 1×8×8 inputs with batch norms that hold non-trivial statistics."""
    model = method.prepare(create_model(name, in_channels=1, num_classes=10, img_size=8, T=1, **kw))
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def test_qcfs_matches_the_official_formula_and_its_gradient() -> None:
    """h(z) = λ·clamp(⌊z·L/λ + φ⌋/L, 0, 1) (the official MyFloor); with the floor's straight-through gradient
    and the clamp's (it passes at its bounds), ∂h/∂z = 1 and ∂h/∂λ = ⌊·⌋/L − z/λ where 0 ≤ ⌊·⌋ ≤ L;
    ∂h/∂λ = 1 above, 0 below."""
    act = QCFSActivation(levels=4, clip=2.0, shift=0.5)
    z = torch.linspace(-1, 3, 401, dtype=torch.float64, requires_grad=True)
    act.double()
    h = act(z)
    lam = 2.0
    q = torch.floor(z.detach() * 4 / lam + 0.5) / 4
    assert torch.equal(h.detach(), q.clamp(0, 1) * lam)
    h.sum().backward()
    u = z.detach() * 4 / lam + 0.5
    inside = (torch.floor(u) >= 0) & (torch.floor(u) <= 4)
    want_z = inside.double()
    want_lam = torch.where(inside, torch.floor(u) / 4 - z.detach() / lam, (torch.floor(u) > 4).double())
    assert torch.allclose(z.grad, want_z) and act.clip.grad is not None
    assert act.clip.grad.item() == pytest.approx(want_lam.sum().item(), rel=1e-9)


@pytest.mark.parametrize(("method", "alpha", "bound"), [(ANN(), 1.0, 1.0), (QCFS(), 0.5, 0.5)])
def test_first_layer_rate_is_within_theta_over_T(method: ANN, alpha: float, bound: float) -> None:
    """|r·θ − clamp(z, 0, θ)| ≤ θ/T (IF from 0), ≤ θ/(2T) (QCFS: from θ/2), BN folded, θ in the next weights."""
    ann = _twin("spiking_cnn_tiny", method, pool="avg")
    x = torch.rand(32, 1, 8, 8)
    th = threshold_statistics(ann, [x.unsqueeze(0)], "max")
    z = {}
    ann.sn1.register_forward_hook(lambda m, i, o: z.update(z=i[0][0]))
    ann(x.unsqueeze(0))
    worst = {}
    for T in (4, 8, 16, 32):
        snn = convert(copy.deepcopy(ann), th, alpha=alpha, T=T)
        assert isinstance(snn.sn1, RateNeuron) and not any(isinstance(m, nn.BatchNorm2d) for m in snn.modules())
        out: dict[str, torch.Tensor] = {}
        snn.sn1.register_forward_hook(lambda m, i, o, out=out: out.update(s=o))
        snn(x)                                          # [B, ...]: the model's ToSequence repeats it T times
        s = out["s"]
        assert s.shape[0] == T and set(s.unique().tolist()) <= {0.0, 1.0}      # 0/1 spikes: θ sits in conv2
        theta = th["sn1"]
        err = (s.mean(0) * theta - z["z"].clamp(0, theta)).abs().max().item()
        assert err <= bound * theta / T + 1e-5, (T, err)
        worst[T] = err
    assert worst[32] < worst[4] and worst[4] > 0.8 * bound * th["sn1"] / 4       # the bound is reached


def test_qcfs_snn_at_T_equal_L_reproduces_the_first_qcfs_layer_exactly() -> None:
    ann = _twin("spiking_mlp_tiny", QCFS(levels=4, clip=1.5), bn=True)
    x = torch.rand(64, 1, 8, 8)
    want = {}
    ann.sn.register_forward_hook(lambda m, i, o: want.update(h=o[0]))
    ann(x.unsqueeze(0))
    snn = convert(copy.deepcopy(ann), threshold_statistics(ann, [], "clip"), alpha=0.5, T=4)
    got = {}
    snn.sn.register_forward_hook(lambda m, i, o: got.update(s=o))
    snn(x)
    assert torch.allclose(got["s"].mean(0) * 1.5, want["h"], atol=1e-5)


@pytest.mark.parametrize(("name", "kw"), [("spiking_cnn_tiny", {"pool": "avg"}), ("sew_resnet_tiny", {}),
                                          ("spiking_resnet_tiny", {})])
@pytest.mark.parametrize("method", [ANN(), QCFS()], ids=["ann", "qcfs"])
def test_every_layers_error_falls_monotonically_over_T(name: str, kw: dict[str, object], method: ANN) -> None:
    ann = _twin(name, method, **kw)
    x = torch.rand(16, 1, 8, 8)
    th = threshold_statistics(ann, [x.unsqueeze(0)], "max" if isinstance(method, QCFS) else "percentile", 99.9)
    alpha = 0.5 if isinstance(method, QCFS) else 1.0
    errors = {T: layer_errors(convert(copy.deepcopy(ann), th, alpha=alpha, T=T), ann, x, T) for T in (8, 16, 32, 64)}
    layers = list(errors[8])
    assert layers == list(twin_activations(ann))
    print(f"\n{name} {method.name}: mean |r·θ − clamp(z, 0, θ)|/θ per layer at T = 8, 16, 32, 64")
    for layer in layers:
        seq = [errors[T][layer] for T in (8, 16, 32, 64)]
        print(f"  {layer:24s} " + "  ".join(f"{e:.4f}" for e in seq))
        assert all(a > b for a, b in zip(seq, seq[1:])), (layer, seq)
        assert seq[-1] < 0.35 * seq[0]


def test_thresholds_from_statistics() -> None:
    ann = _twin("spiking_mlp_tiny", ANN(), bn=True)
    xs = [torch.rand(1, 40, 1, 8, 8) for _ in range(3)]
    acts = []
    ann.sn.register_forward_hook(lambda m, i, o: acts.append(o.detach().flatten()))
    th_max = threshold_statistics(ann, xs, "max")
    a = torch.cat(acts)
    assert th_max == {"sn": pytest.approx(a.max().item())}
    assert threshold_statistics(ann, xs, "percentile", 100.0) == th_max
    pos = a[a > 0].numpy()
    want = float(np.percentile(pos, 99.0, method="inverted_cdf"))
    assert threshold_statistics(ann, xs, "percentile", 99.0)["sn"] == pytest.approx(want)
    assert ann.training is False
    with pytest.raises(ValueError, match="norm must be one of max, percentile, clip"):
        threshold_statistics(ann, xs, "mean")
    with pytest.raises(ValueError, match=r"percentile must be in \(0, 100\]"):
        threshold_statistics(ann, xs, "percentile", 0.0)
    with pytest.raises(ValueError, match="norm 'clip' reads the trained QCFS clip, but sn is a ReLUTwin"):
        threshold_statistics(ann, xs, "clip")
    dead = _twin("spiking_mlp_tiny", ANN(), bn=True)
    dead.fc[1].bias.data.fill_(-100.0)
    assert threshold_statistics(dead, xs, "max") == {"sn": 1.0}        # never fires: any θ will do


def test_sew_add_groups_share_one_threshold_and_qcfs_ties_its_clip() -> None:
    q = _twin("sew_resnet_tiny", QCFS())
    groups = sew_groups(q)
    assert ["stem.1", "stages.0.0.branch.3"] in groups and len(groups) == 3
    acts = twin_activations(q)
    for g in groups:
        assert all(acts[n].threshold() is acts[g[0]].threshold() for n in g)       # one trained λ per group
        assert all(f"{n}.clip" not in q.state_dict() for n in g[1:])
    ann = _twin("sew_resnet_tiny", ANN())
    x = torch.rand(8, 1, 8, 8)
    th = threshold_statistics(ann, [x.unsqueeze(0)], "max")
    snn = convert(copy.deepcopy(ann), th, T=4)
    neurons = rate_neurons(snn)
    for g in sew_groups(ann):
        top = max(th[n] for n in g)
        assert all(float(neurons[n].v_threshold) == pytest.approx(top) for n in g)


@pytest.mark.parametrize(("name", "kw", "why"), [
    ("spiking_vgg_tiny", {}, "max pooling"),
    ("spiking_cnn_tiny", {}, "max pooling"),
    ("spikformer_tiny", {}, "self-attention"),
    ("seq_csnn_tiny", {}, "parallel neuron"),
    ("sew_resnet_tiny", {"cnf": "AND"}, "SEW AND residual"),
    ("sew_resnet_tiny", {"cnf": "IAND"}, "SEW IAND residual"),
])
@pytest.mark.parametrize("method", [ANN(), QCFS()], ids=["ann", "qcfs"])
def test_incompatible_models_are_refused_with_the_reason(name: str, kw: dict[str, object], why: str,
                                                          method: ANN) -> None:
    model = create_model(name, in_channels=1, num_classes=10, img_size=8 if "former" not in name else 32, T=1, **kw)
    reason = method.check(model)
    assert reason is not None and why in reason, reason


@pytest.mark.parametrize(("name", "kw"), [("spiking_mlp_tiny", {}), ("spiking_cnn_tiny", {"pool": "avg"}),
                                          ("spiking_resnet_tiny", {}), ("sew_resnet_tiny", {})])
def test_compatible_models_are_prepared_once(name: str, kw: dict[str, object]) -> None:
    model = create_model(name, in_channels=1, num_classes=10, img_size=8, T=1, **kw)
    assert ANN().check(model) is None and QCFS().check(model) is None
    QCFS().prepare(model)
    acts = twin_activations(model)
    assert acts and all(isinstance(a, QCFSActivation) for a in acts.values())
    assert QCFS().prepare(model) is model and twin_activations(model) == acts        # a second call: nothing
    assert isinstance(ANN().prepare(create_model(name, in_channels=1, num_classes=10, img_size=8, T=1, **kw))
                      .get_submodule(next(iter(acts))), ReLUTwin)


def test_qcfs_settings_are_checked() -> None:
    for kw, msg in [({"levels": 0}, "levels must be an integer"), ({"clip": 0.0}, "clip must be a finite number > 0"),
                    ({"clip": float("inf")}, "clip must be a finite number > 0"),
                    ({"shift": 1.0}, r"shift must be in \[0, 1\)")]:
        with pytest.raises(ValueError, match=msg):
            QCFS(**kw)  # type: ignore[arg-type]
    assert QCFS(levels=8).options() == {"levels": 8, "clip": 2.0, "shift": 0.5}


@pytest.fixture(scope="module")
def one_batch() -> object:
    return build_dataset("digits", T=1, progress=False, limit_train=32, val_fraction=0.0)


@pytest.mark.parametrize("method", ["ann", "qcfs"])
def test_the_twin_overfits_one_batch_and_is_deterministic(method: str, one_batch: object) -> None:
    def run() -> tuple[float, dict[str, torch.Tensor]]:
        torch.manual_seed(0)
        model = create_model("spiking_cnn_tiny", in_channels=1, num_classes=10, img_size=8, T=1, pool="avg")
        res = fit(model, one_batch, T=1, encoding="direct", epochs=60, batch_size=32, method=method, progress=False,
                  optimizer=lambda ps: torch.optim.Adam(ps, lr=1e-2), seed=0, eval_every=60)
        return res.history[-1]["train_accuracy"], {k: v.clone() for k, v in model.state_dict().items()}

    acc, weights = run()
    assert acc == 1.0
    again = run()[1]
    assert all(torch.equal(weights[k], again[k]) for k in weights)

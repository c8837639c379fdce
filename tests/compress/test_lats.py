"""LATS soft-threshold pruning: the mapping and its straight-through gradient, the four schedules against the
official trainer's formulas, the ISTA step under SGD, calibration, the spec's bad inputs, and a pruned run
through --resume (exact), report and torch.fx."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from spikeforge.compress import (
    CompressionError,
    LATSPrune,
    SoftThreshold,
    applied,
    lats_schedule,
    lats_sparsity,
    parse_spec,
    soft_threshold,
)


def test_soft_threshold_values_and_straight_through_gradient() -> None:
    theta = torch.tensor([-0.3, -0.05, 0.0, 0.04, 0.2], requires_grad=True)
    w = soft_threshold(theta, 0.05)
    assert torch.allclose(w, torch.tensor([-0.25, 0.0, 0.0, 0.0, 0.15]), atol=1e-7, rtol=0)
    c = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    (w * c).sum().backward()
    # ∂w/∂θ = sign(θ)² (the official PseudoRelu passes the gradient through the threshold): 1, and 0 at θ = 0
    assert theta.grad is not None and torch.equal(theta.grad, torch.tensor([1.0, 2.0, 0.0, 4.0, 5.0]))


# the official trainer's threshold functions (Yanqi-Chen/LATS trainer.py, commit e140def), transcribed
def _sinp_inc(n: int, N: int) -> float:
    return math.sin(math.pi * float(n) / N) / math.pi + float(n) / N


def _sinp_lowf_base_inc(n: int, N: int) -> float:
    return 0.5 * (1.0 + 2 * n + (math.sin(math.pi * (n - 0.5) / N) / math.sin(math.pi * 0.5 / N))) / (N + 1.0)


@pytest.mark.parametrize(("E", "nb"), [(4, 10), (7, 3), (1, 5)])
def test_schedules_match_the_official_trainer(E: int, nb: int) -> None:
    official_lowf, official_sinp = [], []
    step = 0
    for epoch in range(E):                 # the official loop: the threshold is set after each optimizer step
        base = _sinp_lowf_base_inc(epoch, E)
        flat = (1 + math.cos(epoch * math.pi / E)) / nb / (1 + E)
        for b in range(1, nb + 1):
            step += 1
            official_lowf.append(base + b * flat)
            official_sinp.append(_sinp_inc(step, E * nb))
    ours_lowf = [lats_schedule("lats", k, nb, E) for k in range(1, E * nb + 1)]
    ours_sinp = [lats_schedule("slats", k, nb, E) for k in range(1, E * nb + 1)]
    assert ours_lowf == pytest.approx(official_lowf, abs=1e-12)
    assert ours_sinp == pytest.approx(official_sinp, abs=1e-12)
    for s in ("linear", "slats", "lats"):
        f = [lats_schedule(s, k, nb, E) for k in range(E * nb + 3)]
        assert f[0] == 0 and f[E * nb] == pytest.approx(1.0, abs=1e-12) and f[-1] == 1.0
        assert all(b >= a - 1e-12 for a, b in zip(f, f[1:])), f"{s} must not decrease"
    assert lats_schedule("linear", nb, nb, E) == pytest.approx(1 / E)
    assert lats_schedule("constant", 0, nb, E) == 1.0
    # S-LATS rises as the cosine learning rate: its increments are ∝ 1 + cos(πx)
    N = E * nb
    inc = [lats_schedule("slats", k + 1, nb, E) - lats_schedule("slats", k, nb, E) for k in range(N)]
    lr = [1 + math.cos(math.pi * (k + 0.5) / N) for k in range(N)]          # at the middle of step k
    assert [N * i for i in inc] == pytest.approx(lr, abs=0.5 / N**2)


def _digits(limit: int = 256, T: int = 2):  # type: ignore[no-untyped-def]
    from spikeforge.data import build_dataset
    return build_dataset("digits", T=T, progress=False, limit_train=limit)


def _mlp(hidden: int = 32) -> nn.Module:
    from spikeforge.models import create_model
    return create_model("spiking_mlp_tiny", in_channels=1, img_size=8, num_classes=10, T=2, hidden=hidden)


def test_under_sgd_an_active_weight_takes_the_ista_step_and_a_pruned_one_follows_its_hidden_theta() -> None:
    """w_{k+1} = S_{Δd}(w_k − η·g_k) for weights active before and after with the same sign (ISTA with
    λ = Δd/η). A pruned weight is not at 0 in θ: θ ∈ [−d, d] moves by the gradient, and w_{k+1} =
    S_{d_{k+1}}(θ_k − η·g_k), which differs from the proximal step started at 0."""
    from spikeforge.training import Callback, fit

    torch.manual_seed(1)
    model = _mlp()
    lats = LATSPrune(D=0.08, schedule="linear")
    lats.apply(model)
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    seen = {"active": 0, "pruned": 0, "steps": 0}

    class Check(Callback):
        def on_after_backward(self, trainer) -> None:  # type: ignore[no-untyped-def]
            self.before = []
            for m in layers:
                theta = m.parametrizations.weight.original
                d = m.parametrizations.weight[0].threshold.clone()
                self.before.append((m.weight.detach().clone(), theta.detach().clone(), theta.grad.clone(), d))

        def on_step_end(self, trainer, info) -> None:  # type: ignore[no-untyped-def]
            seen["steps"] += 1
            for m, (w0, theta0, g, d0) in zip(layers, self.before):
                w1 = m.weight.detach()
                d1 = m.parametrizations.weight[0].threshold
                dd, eta = d1 - d0, info.lr
                assert float(dd) > 0
                ista = soft_threshold(w0 - eta * g, dd)
                active = (w0 != 0) & (w1 != 0) & (torch.sign(w0) == torch.sign(w1))
                assert (w1 - ista)[active].abs().max() <= 1e-7
                pruned = w0 == 0
                assert torch.allclose(w1[pruned], soft_threshold(theta0 - eta * g, d1)[pruned], atol=1e-7, rtol=0)
                seen["active"] += int(active.sum())
                seen["pruned"] += int(pruned.sum())

    fit(model, _digits(), T=2, encoding="direct", epochs=2, batch_size=64, progress=False,
        callbacks=[*lats.callbacks(), Check()], optimizer=lambda ps: torch.optim.SGD(ps, lr=0.5, momentum=0.0))
    assert seen["steps"] == 8 and seen["active"] > 1000 and seen["pruned"] > 100
    zeros, total = lats_sparsity(model)
    assert 0 < zeros < total and float(layers[0].parametrizations.weight[0].threshold) == pytest.approx(0.08)


def test_a_pruned_weight_remembers_its_theta_where_ista_restarts_from_zero() -> None:
    """d: 0.1 → 0.11 (Δd = 0.01), η·g = −0.02 on two pruned weights (w = 0) with θ = ±0.099 and one active
    one: ISTA would give S_{0.01}(0 + 0.02) = 0.01 to both pruned ones; the hidden θ gives 0.009 and 0."""
    layer = nn.Linear(3, 1, bias=False)
    LATSPrune(D=0.11, schedule="linear").apply(layer)
    p = layer.parametrizations.weight
    with torch.no_grad():
        p.original.copy_(torch.tensor([[0.099, -0.099, 0.5]]))
        p[0].threshold.fill_(0.1)
    w0 = layer.weight.detach().clone()
    assert torch.allclose(w0, torch.tensor([[0.0, 0.0, 0.4]]))
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    (layer.weight * torch.tensor([[-0.2, -0.2, -0.2]])).sum().backward()   # g = −0.2, η·g = −0.02
    opt.step()
    with torch.no_grad():
        p[0].threshold.fill_(0.11)
    w1 = layer.weight.detach()
    ista = soft_threshold(w0 + 0.02, 0.01)
    assert torch.allclose(ista, torch.tensor([[0.01, 0.01, 0.41]]), atol=1e-7)
    assert torch.allclose(w1, torch.tensor([[0.009, 0.0, 0.41]]), atol=1e-7)     # equal only where active


def test_calibration_and_the_constant_schedule_start_from_the_dense_init() -> None:
    model = nn.Sequential(nn.Linear(64, 32), nn.Linear(32, 10))
    dense = [m.weight.detach().clone() for m in model]
    mags = torch.cat([w.abs().flatten() for w in dense])
    lats = parse_spec("prune", "lats:schedule=constant@0.9")
    assert isinstance(lats, LATSPrune)
    lats.apply(model)
    D = lats.describe(model)["D"]
    assert float((mags <= D).float().mean()) == pytest.approx(0.9, abs=1e-3)
    # constant: θ = sign(w)(|w| + D), d = D, so the first forward uses the dense weights
    for m, w in zip(model, dense):
        assert torch.allclose(m.weight, w, atol=1e-6, rtol=0)
    assert applied(model) == {"prune": "lats:schedule=constant@0.9"}
    with pytest.raises(CompressionError, match="already compressed"):
        LATSPrune(D=0.1).apply(model)
    other = nn.Sequential(nn.Linear(2, 2))
    torch.nn.utils.parametrize.register_parametrization(other[0], "weight", nn.Identity())
    with pytest.raises(CompressionError, match="the weight of layer '0' is already reparametrised"):
        LATSPrune(D=0.1).apply(other)
    ramp = nn.Sequential(nn.Linear(8, 8))
    LATSPrune(target=0.5).apply(ramp)                       # the ramped schedules start at d = 0: dense
    assert lats_sparsity(ramp) == (0, 64) and isinstance(ramp[0].parametrizations.weight[0], SoftThreshold)


@pytest.mark.parametrize(("spec", "message"), [
    ("lats", "give the final threshold D"), ("lats:D=0.1@0.9", "not both"),
    ("lats:D=-0.1", "D (the final threshold) must be a finite number >= 0"),
    ("lats:D=abc", "must be a finite number"), ("lats:D=true", "must be a finite number"),
    ("lats@1", "must be in [0, 1)"), ("lats@-0.2", "must be in [0, 1)"), ("lats@x", "must be in [0, 1)"),
    ("lats:schedule=cosine,D=0.1", "schedule must be one of constant, linear, slats, lats"),
    ("lats:d=0.1", "has no setting 'd'"), ("lats:D", "is not KEY=VALUE")])
def test_bad_lats_specs_are_one_clear_line(spec: str, message: str) -> None:
    with pytest.raises(CompressionError, match=re.escape(message)) as e:
        parse_spec("prune", spec)
    assert "\n" not in str(e.value) and str(e.value).startswith("--prune")



def test_a_pruned_run_resumes_exactly_and_goes_through_report_and_fx(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from spikeforge.app import rebuild
    from spikeforge.cli import main
    from spikeforge.models import fx
    from tests.training.conftest import final_state, main_in_process

    args = ["train", "--dataset", "digits", "--model", "spiking_mlp_tiny", "--model-arg", "hidden=32", "--epochs",
            "2", "--batch-size", "32", "--limit-train", "320", "--T", "2", "--threads", "1", "--progress", "false",
            "--lr", "0.005", "--schedule", "constant", "--prune", "lats:schedule=lats@0.5"]
    assert main_in_process(capsys, *args, "--run-dir", str(tmp_path / "ref"))[0] == 0
    want_w, want_rows = final_state(tmp_path / "ref")
    stopped = tmp_path / "stopped"
    assert main_in_process(capsys, *args, "--max-steps", "13", "--run-dir", str(stopped))[0] == 0
    assert main_in_process(capsys, "train", "--resume", str(stopped), "--max-steps", "none")[0] == 0
    got_w, got_rows = final_state(stopped)
    assert got_w.keys() == want_w.keys() and any("threshold" in k for k in got_w)
    assert all(torch.equal(got_w[k], want_w[k]) for k in want_w)
    assert got_rows == want_rows and 0 < float(got_rows[-1]["train_lats_sparsity"]) < 1
    assert float(got_rows[-1]["train_lats_threshold"]) > float(got_rows[0]["train_lats_threshold"]) > 0

    ckpt = tmp_path / "ref" / "checkpoints" / "last.safetensors"
    assert main(["report", str(ckpt), "--no-plots", "--no-progress", "--max-samples", "32",
                 "--out-dir", str(tmp_path / "rep")]) == 0
    assert "--prune lats:schedule=lats@0.5: schedule lats, D " in capsys.readouterr().out
    rb = rebuild(ckpt)
    desc = LATSPrune(target=0.5, schedule="lats").describe(rb.model)
    assert desc["sparsity"] == pytest.approx(float(want_rows[-1]["train_lats_sparsity"]), abs=1e-4)
    x = torch.rand(2, 3, 1, 8, 8)
    rb.model.eval()
    with torch.no_grad():
        assert torch.equal(fx.trace(rb.model)(x), rb.model(x))

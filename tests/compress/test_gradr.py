"""Grad R: the redefined gradient through pruned synapses, one and two updates against hand-computed values,
many updates against the official optimiser's step, the spec's and the optimiser's bad inputs, and a rewired
run's connectivity/regrowth logs through --resume (exact), report and torch.fx."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from spikeforge.compress import (
    CompressionError,
    GradRewire,
    GradRPrior,
    SignedReLU,
    applied,
    gradr_center,
    gradr_connectivity,
    parse_spec,
)


def _layer(w: list[float], theta: list[float] | None = None) -> nn.Linear:
    layer = nn.Linear(len(w), 1, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([w]))
    GradRewire(s=0.9).apply(layer)
    if theta is not None:
        with torch.no_grad():
            layer.parametrizations.weight.original.copy_(torch.tensor([theta]))
    return layer


def test_signed_relu_keeps_the_sign_and_passes_the_gradient_through_pruned_synapses() -> None:
    layer = _layer([0.5, -0.2, 0.05], theta=[0.5, -0.004, 0.05])
    theta = layer.parametrizations.weight.original
    assert torch.equal(layer.parametrizations.weight[0].sign, torch.tensor([[1.0, -1.0, 1.0]]))
    assert torch.allclose(layer.weight, torch.tensor([[0.5, 0.0, 0.05]]))
    (layer.weight * torch.tensor([[0.3, 0.1, -0.2]])).sum().backward()
    assert torch.allclose(theta.grad, torch.tensor([[0.3, -0.1, -0.2]]))   # s·∂L/∂w, the pruned one too
    layer.weight = torch.tensor([[0.25, -0.5, 0.0]])                      # right_inverse: θ = s·w
    assert torch.allclose(theta, torch.tensor([[0.25, 0.5, 0.0]]))
    assert gradr_connectivity(layer) == (2, 3)


def test_two_updates_match_hand_computed_values() -> None:
    """Adam lr 0.01 (β = 0.9, 0.999) with a constant gradient moves θ by lr·sign(g_θ) at every step (m̂ = g,
    v̂ = g²); the prior (α = 0.01, s = 0.9: μ = ln(0.2)/0.01 ≈ −160.9, so sign(θ − μ) = +1) subtracts
    α·lr/(1 − β₁ᵗ): 0.001 at step 1, 0.01·0.01/0.19 at step 2 (the official bias-corrected step size)."""
    layer = _layer([0.5, -0.2, 0.05], theta=[0.5, -0.004, 0.05])
    theta = layer.parametrizations.weight.original
    opt = torch.optim.Adam([theta], lr=0.01)
    GradRPrior(layer, s=0.9, alpha=0.01).attach(opt)
    assert gradr_center(0.9, 0.01) == pytest.approx(math.log(0.2) / 0.01)
    c = torch.tensor([[0.3, 0.1, -0.2]])                                    # ∂L/∂w; g_θ = [0.3, −0.1, −0.2]
    want = [[0.5 - 0.01 - 0.001, -0.004 + 0.01 - 0.001, 0.05 + 0.01 - 0.001]]
    for step in (1, 2):
        opt.zero_grad()
        (layer.weight * c).sum().backward()
        opt.step()
        if step == 2:
            prior = 0.01 * 0.01 / (1 - 0.9**2)
            want = [[want[0][0] - 0.01 - prior, want[0][1] + 0.01 - prior, want[0][2] + 0.01 - prior]]
        assert torch.allclose(theta, torch.tensor(want), atol=1e-6, rtol=0), step
    # the pruned synapse regrew at step 1 (θ: −0.004 → 0.005) with its fixed negative sign
    assert torch.allclose(layer.weight, torch.tensor([[0.478474, -0.014474, 0.068474]]), atol=1e-6)


class _OfficialGradRewiring:
    """``GradRewiring.step`` of Yanqi-Chen/Gradient-Rewiring (gradrewire.py, commit 08bfad8), transcribed for
    one weight tensor ``p`` (amsgrad and weight decay off): the reference for the hooks."""

    def __init__(self, p: Tensor, lr: float, alpha: float, s: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.p, self.lr, self.alpha, self.s, self.betas, self.eps = p, lr, alpha, s, betas, eps
        self.state: dict[str, Any] = {}

    def step(self, grad: Tensor) -> None:
        state, p = self.state, self.p
        if len(state) == 0:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
            state["sign"] = torch.sign(p)
            state["strength"] = torch.abs(p)
            if self.alpha > self.eps:
                state["center_distr"] = math.log(2.0 * (1.0 - self.s)) / self.alpha
        sgn, strength = state["sign"], state["strength"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        beta1, beta2 = self.betas
        state["step"] += 1
        bias_correction1 = 1 - beta1 ** state["step"]
        bias_correction2 = 1 - beta2 ** state["step"]
        exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (exp_avg_sq.sqrt() / math.sqrt(bias_correction2)).add_(self.eps)
        step_size = self.lr / bias_correction1
        p_hidden = sgn * strength
        p_hidden.addcdiv_(exp_avg, denom, value=-step_size)
        if self.alpha > self.eps:
            p_hidden.addcmul_((strength - state["center_distr"]).sign(), sgn, value=-self.alpha * step_size)
        state["strength"] = p_hidden * sgn
        self.p = state["strength"].clamp(min=0.0).mul(sgn)


@pytest.mark.parametrize(("s", "alpha", "opt"), [(0.5, 0.05, "adam"), (0.9, 1e-3, "adamw"), (0.97, 0.0, "adam")])
def test_forty_updates_follow_the_official_optimiser(s: float, alpha: float, opt: str) -> None:
    """s = 0.5 puts μ at 0, so pruned synapses are pushed back up and the sign of θ − μ flips; α = 0 is the
    official code's prior switched off (α below Adam's eps)."""
    torch.manual_seed(3)
    w0 = torch.randn(6, 5) * 0.05
    layer = nn.Linear(5, 6, bias=False)
    with torch.no_grad():
        layer.weight.copy_(w0)
    GradRewire(s=s, alpha=alpha).apply(layer)
    theta = layer.parametrizations.weight.original
    Opt = torch.optim.Adam if opt == "adam" else torch.optim.AdamW
    optimizer = Opt([theta], lr=0.01, **({"weight_decay": 0.0} if opt == "adamw" else {}))
    GradRPrior(layer, s=s, alpha=alpha).attach(optimizer)
    ref = _OfficialGradRewiring(w0.clone(), lr=0.01, alpha=alpha, s=s)
    crossed = 0
    for _ in range(40):
        c = torch.randn(6, 5) * 0.1 + 0.05                 # a drift that prunes some synapses and regrows others
        optimizer.zero_grad()
        (layer.weight * c).sum().backward()
        before = theta.detach() > 0
        optimizer.step()
        ref.step(c)
        crossed += int((before != (theta.detach() > 0)).sum())
        assert torch.allclose(theta, ref.state["strength"], atol=1e-6, rtol=0)
        assert torch.allclose(layer.weight, ref.p, atol=1e-6, rtol=0)
    assert crossed > 0, "the test should see synapses pruned or regrown"


def test_the_optimiser_must_be_adam_without_weight_decay() -> None:
    layer = _layer([0.5, -0.2])
    theta = layer.parametrizations.weight.original
    with pytest.raises(CompressionError, match="train with --optimizer adamw"):
        GradRPrior(layer, 0.9, 1e-3).attach(torch.optim.SGD([theta], lr=0.1))
    with pytest.raises(CompressionError, match="--weight-decay 0"):
        GradRPrior(layer, 0.9, 1e-3).attach(torch.optim.AdamW([theta], lr=0.1))   # AdamW's default 0.01
    with pytest.raises(CompressionError, match="does not train a rewired layer"):
        GradRPrior(layer, 0.9, 1e-3).attach(torch.optim.Adam([nn.Parameter(torch.zeros(1))]))
    with pytest.raises(CompressionError, match="does not combine"):
        GradRewire(s=0.9).apply(_pruned())
    from spikeforge.app import TrainConfig
    assert GradRewire(s=0.9).check_config(TrainConfig()) is None
    assert "--optimizer adamw (got sgd)" in str(GradRewire(s=0.9).check_config(TrainConfig(optimizer="sgd")))
    assert "--weight-decay 0" in str(GradRewire(s=0.9).check_config(TrainConfig(weight_decay=0.1)))
    with pytest.raises(CompressionError, match="already compressed"):
        GradRewire(s=0.9).apply(layer)


def _pruned() -> nn.Module:
    from spikeforge.compress import LATSPrune
    return LATSPrune(D=0.1).apply(nn.Sequential(nn.Linear(2, 2)))


@pytest.mark.parametrize(("spec", "message"), [
    ("gradr", "give the target sparsity"), ("gradr:s=0.4", "must be larger than or equal to 0.5"),
    ("gradr@0.3", "must be larger than or equal to 0.5"), ("gradr:s=1", "must be below 1"),
    ("gradr:s=0.9,alpha=-1", "alpha (the prior's rate) must be a finite number >= 0"),
    ("gradr:s=0.9,alpha=nan", "alpha (the prior's rate)"), ("gradr:s=abc", "must be a number in [0.5, 1)"),
    ("gradr:s=0.9@0.8", "two target sparsities"), ("gradr:s=0.9,beta=1", "has no setting 'beta'"),
    ("lats:D=0.1", "lats is chosen with --prune")])
def test_bad_gradr_specs_are_one_clear_line(spec: str, message: str) -> None:
    with pytest.raises(CompressionError, match=re.escape(message)) as e:
        parse_spec("rewire", spec)
    assert "\n" not in str(e.value) and str(e.value).startswith("--rewire")



def test_a_rewired_run_logs_regrowth_resumes_exactly_and_goes_through_report_and_fx(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from spikeforge.app import rebuild
    from spikeforge.cli import main
    from spikeforge.models import fx
    from tests.training.conftest import final_state, main_in_process

    args = ["train", "--dataset", "digits", "--model", "spiking_mlp_tiny", "--model-arg", "hidden=32", "--epochs",
            "3", "--batch-size", "32", "--limit-train", "320", "--T", "2", "--threads", "1", "--progress", "false",
            "--lr", "0.01", "--schedule", "constant", "--rewire", "gradr:s=0.5,alpha=0.05"]
    assert main_in_process(capsys, *args, "--run-dir", str(tmp_path / "ref"))[0] == 0
    want_w, want_rows = final_state(tmp_path / "ref")
    conn = [float(r["train_gradr_connectivity"]) for r in want_rows]
    assert conn[0] < 1 and sum(int(r["train_gradr_pruned"]) for r in want_rows) > 0
    assert sum(int(r["train_gradr_regrown"]) for r in want_rows) > 0, "μ = 0: pruned synapses are pushed back"
    assert (tmp_path / "ref" / "tb").is_dir()
    stopped = tmp_path / "stopped"
    assert main_in_process(capsys, *args, "--max-steps", "15", "--run-dir", str(stopped))[0] == 0
    assert main_in_process(capsys, "train", "--resume", str(stopped), "--max-steps", "none")[0] == 0
    got_w, got_rows = final_state(stopped)
    assert got_w.keys() == want_w.keys() and any(k.endswith("alive") for k in got_w)
    assert all(torch.equal(got_w[k], want_w[k]) for k in want_w)
    assert got_rows == want_rows

    ckpt = tmp_path / "ref" / "checkpoints" / "last.safetensors"
    assert main(["report", str(ckpt), "--no-plots", "--no-progress", "--max-samples", "32",
                 "--out-dir", str(tmp_path / "rep")]) == 0
    assert f"--rewire gradr:s=0.5,alpha=0.05: s 0.5, alpha 0.05, mu 0.0, connectivity {conn[-1]:.4g}" in \
        capsys.readouterr().out
    rb = rebuild(ckpt)
    assert applied(rb.model) == {"rewire": "gradr:s=0.5,alpha=0.05"}
    assert all(isinstance(m.parametrizations.weight[0], SignedReLU) for m in rb.model.modules()
               if isinstance(m, nn.Linear))
    x = torch.rand(2, 3, 1, 8, 8)
    rb.model.eval()
    with torch.no_grad():
        assert torch.equal(fx.trace(rb.model)(x), rb.model(x))

    code, err = main_in_process(capsys, *args, "--optimizer", "sgd", "--run-dir", str(tmp_path / "sgd"))
    assert code == 2 and len(err) == 1 and "train with --optimizer adamw" in err[0], err

"""``--method online`` (SLTT): the per-step gradient by hand, memory flat in T, overfitting one batch, the
step-by-step forward equal to the whole one, SLTT-K resuming exactly, and the refusals.

The generic method tests (train, resume exactly, eval, report) run on it from ``test_methods.py``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikeforge.data import build_dataset, to_time_first
from spikeforge.layers import BNTT, NeuNorm, SeqDropout, TimeFold
from spikeforge.learning import METHODS, DSRRule, Online, Stepwise, online_compatible
from spikeforge.models import create_model
from spikeforge.neurons import LIF, PSN, MaskedPSN, SlidingPSN
from spikeforge.surrogate import Sigmoid
from spikeforge.training import StepContext, get_loss
from tests.training.conftest import final_state, main_in_process

BASE = ["train", "--dataset", "digits", "--model", "spiking_mlp_tiny", "--epochs", "1", "--batch-size", "32",
        "--limit-train", "128", "--T", "4", "--threads", "1", "--progress", "false", "--lr", "0.01",
        "--schedule", "constant", "--encoding", "direct"]


def _ctx(model: nn.Module, loss: Any = "ce", opt: torch.optim.Optimizer | None = None) -> StepContext:
    opt = opt or torch.optim.SGD(model.parameters(), lr=0.0)
    return StepContext(get_loss(loss), opt, torch.amp.GradScaler("cpu", enabled=False), lambda *a: None, None, model)


class OneNeuron(nn.Module):
    """x → w·x → LIF(τ=2, hard reset, V_th=1, sigmoid surrogate α=4) → head (2 classes)."""

    def __init__(self, backend: str) -> None:
        super().__init__()
        self.fc = TimeFold(nn.Linear(1, 1, bias=False))
        self.sn = LIF(tau=2.0, surrogate=Sigmoid(alpha=4.0), backend=backend)
        self.head = TimeFold(nn.Linear(1, 2))
        with torch.no_grad():
            self.fc[0].weight.fill_(1.2)
            self.head[0].weight.copy_(torch.tensor([[0.7], [-0.4]]))
            self.head[0].bias.copy_(torch.tensor([0.1, -0.2]))

    def forward(self, x):
        return self.head(self.sn(self.fc(x)))


@pytest.mark.parametrize("backend", ["torch", "cpu"])
def test_gradient_is_the_hand_derived_sltt_one(backend: str) -> None:
    """1 neuron, 2 steps: ``∂L/∂w = Σ_t ∂L_t/∂s_t · σ'(h_t − 1) · λ x_t`` with ``L_t = CE(o_t, y)/T`` — BPTT's term
    through ``v_0 → h_1`` is absent (and BPTT, on the same per-step loss, has it)."""
    model = OneNeuron(backend).double()
    x = torch.tensor([1.0, 1.5], dtype=torch.float64).view(2, 1, 1)
    y = torch.tensor([1])

    def ce64(out: torch.Tensor, y: torch.Tensor, aux: dict[str, Any]) -> torch.Tensor:   # "ce" computes in float32
        return F.cross_entropy(out.mean(0), y)
    Online()(model, (x, y), _ctx(model, ce64))
    got = model.fc[0].weight.grad.item()

    w, lam, alpha, T = model.fc[0].weight.item(), 0.5, 4.0, 2        # 1.2 as float32 held it
    a, b = model.head[0].weight.detach().view(2), model.head[0].bias.detach()

    def sg(u: float) -> float:
        s = 1 / (1 + math.exp(-alpha * u))
        return alpha * s * (1 - s)

    h0 = lam * w * 1.0                      # 0.6: no spike, v0 = h0
    s0, v0 = 0.0, h0
    h1 = v0 + lam * (w * 1.5 - v0)          # 1.2: a spike
    s1 = 1.0
    dls = []
    for s in (s0, s1):
        p = torch.softmax(a * s + b, 0)
        dls.append(float((a * (p - F.one_hot(y[0], 2).double())).sum()) / T)    # ∂L_t/∂s_t
    want = dls[0] * sg(h0 - 1) * lam * 1.0 + dls[1] * sg(h1 - 1) * lam * 1.5
    assert got == pytest.approx(want, rel=1e-10)

    temporal = dls[1] * sg(h1 - 1) * (1 - lam) * ((1 - s0) - h0 * sg(h0 - 1)) * lam * 1.0
    bptt = OneNeuron(backend).double()
    out = bptt(x)
    sum(ce64(out[t:t + 1], y, {}) for t in range(T)).div(T).backward()     # the same loss, through time
    assert bptt.fc[0].weight.grad.item() == pytest.approx(want + temporal, rel=1e-10)
    assert abs(temporal) > 1e-3 * abs(want)


def _peak_saved_bytes(fn) -> int:
    """The most bytes saved for backward alive at once while ``fn()`` runs (autograd's saved-tensor hooks)."""
    alive, peak = [0], [0]

    class Held:
        def __init__(self, t: torch.Tensor) -> None:
            self.t, self.n = t, t.numel() * t.element_size()
            alive[0] += self.n
            peak[0] = max(peak[0], alive[0])

        def __del__(self) -> None:
            alive[0] -= self.n

    with torch.autograd.graph.saved_tensors_hooks(Held, lambda h: h.t):
        fn()
    return peak[0]


def test_memory_saved_for_backward_does_not_grow_with_T() -> None:
    torch.manual_seed(0)
    model = create_model("spiking_cnn_tiny", in_channels=1, img_size=8, num_classes=10, T=16)
    x, y = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,))
    peaks = {}
    for T in (4, 16):
        x_seq = to_time_first(x, "static", T, "direct")
        for name in ("online", "bptt"):
            step = METHODS[name]()
            peaks[name, T] = _peak_saved_bytes(lambda s=step, b=(x_seq, y): s(model, b, _ctx(model)))
    assert peaks["online", 16] <= 1.05 * peaks["online", 4], peaks
    # BPTT's grows with T (less than 4x: its first conv and BN run once on the static image, at any T)
    assert peaks["bptt", 16] >= 3.0 * peaks["bptt", 4], peaks
    # at T = 4 already 1.5x (BPTT's second conv-BN-neuron unit keeps only the conv output: layers.fused_bn)
    assert peaks["online", 4] * 1.4 <= peaks["bptt", 4], peaks


def test_overfits_one_batch() -> None:
    torch.manual_seed(0)
    data = build_dataset("digits", T=4, progress=False)
    xs, ys = zip(*(data.train[i] for i in range(32)))
    x_seq = to_time_first(torch.stack(xs), data.kind, 4, "direct")
    y = torch.tensor(ys)
    model = create_model("spiking_cnn_tiny", in_channels=1, img_size=8, num_classes=10, T=4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    step, ctx, first = Online(), _ctx(model, opt=opt), None
    for _ in range(60):
        opt.zero_grad(set_to_none=True)
        out = step(model, (x_seq, y), ctx)
        first = first if first is not None else float(out.loss)
        opt.step()
    assert float(out.loss) < 0.2 * first
    assert (out.outputs.mean(0).argmax(-1) == y).float().mean() == 1.0
    assert set(out.extra) == {"seq_loss"}


def _stepwise_outputs(model: nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
    outs = []
    with Stepwise(model) as run:
        for t in range(x_seq.shape[0]):
            run.next_step()
            outs.append(model(x_seq[t:t + 1]))
    return torch.cat(outs)


class SlidingNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = TimeFold(nn.Flatten(), nn.Linear(64, 32))
        self.sn = SlidingPSN(3)
        self.drop = SeqDropout(0.5)
        self.head = TimeFold(nn.Linear(32, 10))

    def forward(self, x):
        return self.head(self.drop(self.sn(self.fc(x))))


@pytest.mark.parametrize("name", ["spiking_cnn_tiny", "sew_resnet_tiny", "spikformer_tiny", "sliding"])
def test_step_by_step_forward_equals_the_whole_one(name: str) -> None:
    """Eval-mode outputs of the stepped model equal one call on the whole sequence (so a model trained online
    evaluates the same either way); in train mode a sequence draws one dropout mask, as a whole call does."""
    torch.manual_seed(0)
    if name == "sliding":
        model: nn.Module = SlidingNet()
        x_seq = torch.rand(5, 4, 1, 8, 8)
    else:
        model = create_model(name, in_channels=1, img_size=16, num_classes=10, T=5)
        x_seq = to_time_first(torch.rand(4, 1, 16, 16), "static", 5, "direct")
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(_stepwise_outputs(model, x_seq), model(x_seq), rtol=1e-5, atol=1e-5)
        if name == "sliding":
            model.train()
            torch.manual_seed(1)
            whole = model(x_seq)
            torch.manual_seed(1)
            torch.testing.assert_close(_stepwise_outputs(model, x_seq), whole, rtol=1e-5, atol=1e-5)
    assert "forward" not in vars(model.sn if name == "sliding" else model)      # the modules' own forward is back


def test_a_module_called_twice_per_step_keeps_two_states() -> None:
    sn = LIF()

    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.sn = sn

        def forward(self, x):
            return self.sn(x) + 2 * self.sn(0.5 * x)

    model, x = Twice(), torch.rand(6, 3, 4) * 2
    torch.testing.assert_close(_stepwise_outputs(model, x), model(x))


def _csv_rows(run: Path) -> list[dict[str, str]]:
    return final_state(run)[1]


def test_sltt_k_resumes_exactly_and_is_deterministic(tmp_path: Path, capsys) -> None:
    """``k=2``: two of the four steps drawn per batch from torch's generator, which checkpoints keep."""
    args = [*BASE, "--epochs", "2", "--method", "online", "--method-arg", "k=2"]
    assert main_in_process(capsys, *args, "--run-dir", str(tmp_path / "ref"))[0] == 0
    assert main_in_process(capsys, *args, "--run-dir", str(tmp_path / "again"))[0] == 0
    assert main_in_process(capsys, *args, "--max-steps", "5", "--run-dir", str(tmp_path / "cut"))[0] == 0
    assert main_in_process(capsys, "train", "--resume", str(tmp_path / "cut"), "--max-steps", "none")[0] == 0
    want, rows = final_state(tmp_path / "ref")
    for other in ("again", "cut"):
        got, got_rows = final_state(tmp_path / other)
        assert all(torch.equal(got[k], want[k]) for k in want), other
        assert got_rows == rows and "train_seq_loss" in rows[0]
    cfg = json.loads((tmp_path / "cut" / "config.json").read_text())
    assert cfg["method"] == "online" and cfg["method_args"] == {"k": 2}


def test_psn_model_is_refused_in_one_line(tmp_path: Path, capsys) -> None:
    """The PSN zoo model (the sequential-CIFAR net) reads image columns as steps; a PSN neuron is named first."""
    model = "seq_csnn_psn"
    code, err = main_in_process(capsys, *BASE, "--method", "online", "--model", model, "--run-dir", str(tmp_path / "r"))
    assert code == 2 and len(err) == 1 and f"method: online cannot train {model}: " in err[0], err
    assert "image columns" in err[0] or "PSN (parallel spiking neuron)" in err[0], err
    assert not (tmp_path / "r").exists()


def test_fit_refuses_a_psn_model_naming_the_module() -> None:
    data = build_dataset("digits", T=4, progress=False)
    model = create_model("spiking_mlp_tiny", T=4, neuron=lambda: PSN(T=4))
    with pytest.raises(ValueError, match=r"method 'online' cannot train this model: sn is a PSN \(parallel spiking "
                                         r"neuron\): .* use SlidingPSN"):
        from spikeforge.training import fit
        fit(model, data, T=4, method="online", progress=False)


@pytest.mark.parametrize("module, words", [
    (PSN(T=4), "PSN (parallel spiking neuron)"), (MaskedPSN(k=2, T=4), "MaskedPSN"), (BNTT(3, T=4), "BNTT"),
    (NeuNorm(3, 2, 2), "NeuNorm"), (nn.GRU(3, 3), "GRU"),
    (LIF(grad=DSRRule()), "gradient rule DSRRule"),
])
def test_what_cannot_run_step_by_step_is_named(module: nn.Module, words: str) -> None:
    reason = online_compatible(nn.Sequential(TimeFold(nn.Identity()), module))
    assert reason is not None and reason.startswith("1 ") and words in reason, reason


def test_models_with_their_own_time_axis_are_refused_attention_is_not() -> None:
    reason = online_compatible(create_model("seq_csnn_sliding_psn", img_size=8))
    assert reason is not None and "image columns" in reason
    assert online_compatible(create_model("spikformer_tiny")) is None      # attention over tokens, per step
    assert online_compatible(create_model("spiking_cnn_tiny", neuron=lambda: SlidingPSN(4))) is None


def test_settings_are_checked() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            Online(k=bad)  # type: ignore[arg-type]
    assert Online(k=3).options() == {"k": 3}


def test_views_making_losses_are_refused() -> None:
    model = create_model("spiking_mlp_tiny")
    ctx: Any = _ctx(model)
    ctx.batch_transform = lambda x, y: [x, x]
    with pytest.raises(ValueError, match="augmented views"):
        Online()(model, (torch.rand(2, 3, 1, 8, 8), torch.tensor([0, 1, 2])), ctx)

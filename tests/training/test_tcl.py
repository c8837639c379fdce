"""Temporal contrastive learning (``--loss tcl`` / ``stcl``): the SupCon term against hand-computed values,
float64 gradcheck through the whole loss, one batch overfitted through ``fit``, the projection head
trained, checkpointed and resumed exactly, ignored by evaluation and export, and one-line refusals."""

from __future__ import annotations

import copy
import csv
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from spikeforge.data import build_dataset
from spikeforge.models import create_model
from spikeforge.training import (
    LOSSES,
    Callback,
    ContrastiveHead,
    LossError,
    RandomShift,
    TemporalContrastive,
    Trainer,
    TwoViews,
    evaluate,
    fit,
    load_checkpoint,
    mean_ce,
    supcon,
    without_contrastive_head,
)

# Four unit vectors with simple dot products: a·b = 0.6, a·c = 0, a·d = 0.8, b·c = 0.8, b·d = 0.96, c·d = 0.6
A, B, C, D = (1.0, 0.0), (0.6, 0.8), (0.0, 1.0), (0.8, 0.6)
E = math.exp


def _data(limit: int):
    return build_dataset("digits", limit_train=limit, val_fraction=0.0, progress=False)


def _mlp(T: int = 2) -> nn.Module:
    torch.manual_seed(0)
    return create_model("spiking_mlp_tiny", in_channels=1, num_classes=10, img_size=8, T=T)


# With τ = 0.5 the scaled similarities are a·b → 1.2, a·c → 0, a·d → 1.6, b·c → 1.6, b·d → 1.92, c·d → 1.2.
# Sample 0 is (a at t=0, b at t=1), sample 1 is (c, d). Labels 0 and 1: each anchor's one positive is the
# same sample at the other step, and the denominator runs over the three other representations.
SUPCON_TWO_CLASSES = (-math.log(E(1.2) / (E(1.2) + E(0.0) + E(1.6)))       # anchor a: positive b
                      - math.log(E(1.2) / (E(1.2) + E(1.6) + E(1.92)))     # anchor b: positive a
                      - math.log(E(1.2) / (E(0.0) + E(1.6) + E(1.2)))      # anchor c: positive d
                      - math.log(E(1.2) / (E(1.6) + E(1.92) + E(1.2)))) / 4  # anchor d: positive c
# One label for all four: every other representation is a positive, ℓ(a) = log Σ_k e^{s_ak} − mean_p s_ap.
SUPCON_ONE_CLASS = ((math.log(E(1.2) + E(0.0) + E(1.6)) - (1.2 + 0.0 + 1.6) / 3)
                    + (math.log(E(1.2) + E(1.6) + E(1.92)) - (1.2 + 1.6 + 1.92) / 3)
                    + (math.log(E(0.0) + E(1.6) + E(1.2)) - (0.0 + 1.6 + 1.2) / 3)
                    + (math.log(E(1.6) + E(1.92) + E(1.2)) - (1.6 + 1.92 + 1.2) / 3)) / 4


def test_supcon_equals_the_hand_computed_value() -> None:
    z = torch.tensor([A, C, B, D], dtype=torch.float64)          # [T·B, D], time-major: (t0: a, c), (t1: b, d)
    labels = torch.tensor([0, 1]).repeat(2)
    assert supcon(z, labels, temperature=0.5).item() == pytest.approx(SUPCON_TWO_CLASSES, rel=1e-12)
    assert supcon(z, torch.zeros(4, dtype=torch.long), 0.5).item() == pytest.approx(SUPCON_ONE_CLASS, rel=1e-12)
    # an anchor without a positive (c, alone in class 1) has no term; no positive anywhere gives 0
    three = torch.tensor([A, B, C], dtype=torch.float64)
    want = (-math.log(E(1.2) / (E(1.2) + E(0.0))) - math.log(E(1.2) / (E(1.2) + E(1.6)))) / 2
    assert supcon(three, torch.tensor([0, 0, 1]), 0.5).item() == pytest.approx(want, rel=1e-12)
    assert supcon(three, torch.tensor([0, 1, 2]), 0.5).item() == 0.0


class Toy(nn.Module):
    """``forward_features(x) = x``: the features are the input ``[T, B, D]``; a linear head."""

    def __init__(self, D: int = 2, K: int = 2, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.num_features = D
        self.head = nn.Linear(D, K, dtype=dtype)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def _identity_toy(loss: TemporalContrastive) -> Toy:
    """A Toy whose logits are its features and whose projection is the identity on non-negative inputs."""
    model = loss.prepare(Toy(dtype=torch.float64))
    with torch.no_grad():
        for lin in (model.head, model.contrastive_head.net[0], model.contrastive_head.net[2]):
            lin.weight.copy_(torch.eye(2))
            lin.bias.zero_()
    return model


def test_tcl_loss_on_a_hand_made_two_sample_two_step_example() -> None:
    loss = TemporalContrastive(temperature=0.5, weight=0.5, hidden=2, dim=2)
    model = _identity_toy(loss)
    x = torch.tensor([[A, C], [B, D]], dtype=torch.float64)       # [T=2, B=2, D=2]
    # logits = features; the mean over t is (0.8, 0.4) for sample 0 (label 0), (0.4, 0.8) for sample 1 (label 1)
    ce = math.log(1 + E(-0.4))
    got = loss(model(x), torch.tensor([0, 1]), {})
    assert got.item() == pytest.approx(ce + 0.5 * SUPCON_TWO_CLASSES, rel=1e-12)


def test_stcl_contrasts_both_views_on_a_hand_made_example() -> None:
    loss = TemporalContrastive(temperature=0.5, weight=0.5, hidden=2, dim=2, siamese=True)
    model = _identity_toy(loss)
    # one sample (label 0), two views over two steps: view 0 is (a, b), view 1 is (c, d)
    views = [model(torch.tensor([[A], [B]], dtype=torch.float64)), model(torch.tensor([[C], [D]], dtype=torch.float64))]
    ce = (math.log(1 + E(-0.4)) + math.log(1 + E(0.4))) / 2      # view means (0.8, 0.4) and (0.4, 0.8), label 0
    got = loss(views[0], torch.tensor([0]), {"views": views})
    assert got.item() == pytest.approx(ce + 0.5 * SUPCON_ONE_CLASS, rel=1e-12)
    with pytest.raises(ValueError, match="loss 'stcl' needs at least two augmented views"):
        loss(views[0], torch.tensor([0]), {})


@pytest.mark.parametrize("siamese", [False, True], ids=["tcl", "stcl"])
def test_gradcheck_through_the_loss_in_float64(siamese: bool) -> None:
    torch.manual_seed(0)
    loss = TemporalContrastive(temperature=0.1, weight=0.5, hidden=4, dim=3, siamese=siamese)
    model = loss.prepare(Toy(D=3, K=3, dtype=torch.float64))
    assert model.contrastive_head.net[0].weight.dtype == torch.float64      # built in the model's dtype
    y = torch.tensor([0, 1, 0])

    def f(x: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        out = model(x)
        return loss(out, y, {"views": [out, model(x2)]})

    x, x2 = (torch.randn(2, 3, 3, dtype=torch.float64, requires_grad=True) for _ in range(2))   # [T, B, D]
    assert torch.autograd.gradcheck(f, (x, x2))
    z = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 0, 2, 0, 1])
    assert torch.autograd.gradcheck(lambda z: supcon(nn.functional.normalize(z, dim=-1), labels, 0.1), (z,))


class Record(Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []
        self.accs: list[float] = []
        self.head0: dict[str, torch.Tensor] = {}

    def on_fit_start(self, trainer) -> None:
        self.head0 = {k: v.clone() for k, v in trainer.model.contrastive_head.state_dict().items()}
        in_optimizer = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
        assert all(id(p) in in_optimizer for p in trainer.model.contrastive_head.parameters())

    def on_step_end(self, trainer, info) -> None:
        self.losses.append(info.loss)
        self.accs.append(info.accuracy)
        if info.accuracy == 1.0 and info.loss < 0.4 * self.losses[0]:
            trainer.stop = True


def test_overfits_one_batch_with_tcl() -> None:
    rec = Record()
    model = _mlp()
    fit(model, _data(64), T=2, encoding="direct", loss="tcl", epochs=60, batch_size=64, progress=False,
        eval_every=1000, callbacks=[rec], optimizer=lambda ps: torch.optim.Adam(ps, lr=2e-2))
    assert rec.accs[-1] == 1.0 and rec.losses[-1] < 0.4 * rec.losses[0], (rec.losses, rec.accs)
    trained = model.contrastive_head.state_dict()
    assert all(not torch.equal(trained[k], rec.head0[k]) for k in trained)      # the optimiser moved the head


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv") as f:
        return [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_s")} for r in csv.DictReader(f)]


def test_resume_restores_the_projection_head_exactly(tmp_path: Path) -> None:
    kw = dict(T=2, encoding="direct", loss="tcl", epochs=2, batch_size=32, progress=False, seed=3,
              optimizer=lambda ps: torch.optim.Adam(ps, lr=5e-3))
    data = _data(96)                                                        # 3 steps per epoch
    fit(_mlp(), data, run_dir=tmp_path / "ref", **kw)
    fit(_mlp(), data, run_dir=tmp_path / "cut", max_steps=4, **kw)          # stops inside the second epoch
    ck = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.safetensors")
    heads = {k: v for k, v in ck["model"].items() if k.startswith("contrastive_head.")}
    assert len(heads) == 4 and ck["meta"]["pos"] == 1
    fresh = Trainer(_mlp(), data, run_dir=tmp_path / "cut", **kw)
    assert fresh.resume()
    assert all(torch.equal(fresh.model.state_dict()[k], v) for k, v in heads.items())
    fresh.fit()
    want = load_checkpoint(tmp_path / "ref" / "checkpoints" / "last.safetensors")["model"]
    got = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.safetensors")["model"]
    assert got.keys() == want.keys() and any(k.startswith("contrastive_head.") for k in got)
    for k in want:
        assert torch.equal(got[k], want[k]), f"{k} differs after resuming"
    assert _rows(tmp_path / "cut") == _rows(tmp_path / "ref")


def test_evaluation_and_export_ignore_the_head() -> None:
    torch.manual_seed(0)
    plain = create_model("spiking_cnn_tiny", in_channels=1, num_classes=10, img_size=8, T=2, pool="avg")
    prepared = LOSSES["tcl"].prepare(copy.deepcopy(plain))
    assert isinstance(prepared.contrastive_head, ContrastiveHead)
    x = torch.rand(2, 3, 1, 8, 8)
    torch.testing.assert_close(prepared(x), plain(x), rtol=0, atol=0)             # forward never calls it
    data = _data(32)
    got = evaluate(prepared, data.test, data.kind, 2, "direct", loss=LOSSES["tcl"])
    assert got == evaluate(plain, data.test, data.kind, 2, "direct", loss=mean_ce)   # no gradient: the CE
    # the run's weights, without the head, load into the model as it is built (eval, report, export)
    create_model("spiking_cnn_tiny", in_channels=1, num_classes=10, img_size=8, T=2, pool="avg").load_state_dict(
        without_contrastive_head(prepared.state_dict()))
    prepared(x).sum().backward()                    # a training-mode forward leaves nothing behind on the model
    copy.deepcopy(prepared)
    pytest.importorskip("nir")
    from spikeforge.export import to_nir
    graph = to_nir(prepared, torch.rand(1, 1, 8, 8))
    assert not any("contrastive" in name for name in graph.nodes)
    assert graph.nodes.keys() == to_nir(plain, torch.rand(1, 1, 8, 8)).nodes.keys()


class NoFeatures(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(2))


def test_a_model_without_forward_features_is_refused_in_one_line() -> None:
    with pytest.raises(LossError, match=r"^loss 'tcl' cannot train NoFeatures: it has no forward_features\(x\)") as e:
        Trainer(NoFeatures(), _data(32), T=2, loss="tcl", progress=False)
    assert "\n" not in str(e.value)
    with pytest.raises(LossError, match="loss 'stcl' cannot train NoFeatures"):
        Trainer(NoFeatures(), _data(32), T=2, loss="stcl", progress=False)


def test_an_unprepared_model_is_an_error_not_a_silent_ce() -> None:
    with pytest.raises(ValueError, match="loss 'tcl': the outputs carry no features; the model was not prepared"):
        LOSSES["tcl"](_mlp()(torch.rand(2, 4, 1, 8, 8)), torch.tensor([0, 1, 2, 3]), {})


def test_stcl_trains_on_two_shifted_views() -> None:
    """By default on the loss's own two views (``loss.batch_transform``); a given ``batch_transform`` wins."""
    seen: list[int] = []

    def views(x_seq, y):
        out = TwoViews(RandomShift(1))(x_seq, y)
        seen.append(len(out))
        return out

    rec = Record()
    tr = Trainer(_mlp(), _data(64), T=2, encoding="direct", loss="stcl", epochs=20, batch_size=64, progress=False,
                 eval_every=1000, callbacks=[rec], optimizer=lambda ps: torch.optim.Adam(ps, lr=2e-2))
    assert tr.batch_transform is LOSSES["stcl"].batch_transform
    res = tr.fit()
    assert rec.losses[-1] < 0.75 * rec.losses[0], rec.losses
    assert res.history[-1]["test_accuracy"] > 0.3
    fit(_mlp(), _data(64), T=2, encoding="direct", loss="stcl", batch_transform=views, epochs=3, batch_size=64,
        progress=False, eval_every=1000)
    assert seen == [2] * 3
    assert Trainer(_mlp(), _data(64), T=2, loss="tcl", progress=False).batch_transform is None


def test_augmentations_and_settings() -> None:
    torch.manual_seed(1)
    x = torch.rand(3, 5, 1, 8, 8)
    y = RandomShift(2)(x)
    assert y.shape == x.shape and RandomShift()(torch.ones(2, 1, 8, 8)).sum() >= 2 * 7 * 7   # 8×8: ±1 pixel
    for b in range(5):      # one shift per sample, the same at every step: the steps stay equal if they were
        same = RandomShift(2)(x[:1, b:b + 1].expand(3, 1, 1, 8, 8).contiguous())
        assert all(torch.equal(same[0], same[t]) for t in range(3))
    v1, v2 = TwoViews(RandomShift(2))(x, torch.zeros(5))
    assert not torch.equal(v1, v2)
    tcl, stcl = LOSSES["tcl"], LOSSES["stcl"]
    assert (tcl.temperature, tcl.weight, tcl.siamese, stcl.siamese) == (0.1, 0.5, False, True)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        TemporalContrastive(temperature=0)
    with pytest.raises(ValueError, match="at least two views"):
        TwoViews(RandomShift(1), views=1)

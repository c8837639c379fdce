"""The engine carries new methods without being edited: a contrastive loss across time steps and a custom
optimiser in ~20 lines, plus callbacks that see every step; NaN handling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spikeforge.data import build_dataset
from spikeforge.models import create_model
from spikeforge.training import Callback, NonFiniteError, TooManySkipped, fit, mean_ce


def _data(limit: int = 256):
    return build_dataset("digits", limit_train=limit, val_fraction=0.0, progress=False)


# ---- the ~20-line plug-in: TCL-style contrastive loss across time steps + a sign-SGD optimiser ----------
def temporal_contrastive(outputs, targets, aux, tau=0.5, weight=0.2):
    """CE on the mean output, plus InfoNCE pulling each sample's time steps together."""
    z = F.normalize(outputs.float(), dim=-1)                       # [T, B, K]
    T, B, _ = z.shape
    anchor, other = z[0], z[1:].mean(0)                            # step 0 vs the later steps
    logits = anchor @ F.normalize(other, dim=-1).t() / tau         # [B, B]: positives on the diagonal
    return mean_ce(outputs, targets) + weight * F.cross_entropy(logits, torch.arange(B))


class SignSGD(torch.optim.Optimizer):
    def __init__(self, params, lr=1e-3):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure=None):
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is not None:
                    p.add_(torch.sign(p.grad), alpha=-g["lr"])


class Recorder(Callback):
    def __init__(self):
        self.steps, self.lrs, self.losses = [], [], []

    def on_step_end(self, trainer, info):
        self.steps.append(info.step)
        self.lrs.append(info.lr)
        self.losses.append(info.loss)
        assert info.model is trainer.model


def test_plugin_loss_and_optimizer_without_touching_the_engine() -> None:
    torch.manual_seed(0)
    model = create_model("spiking_mlp_tiny", in_channels=1, num_classes=10, img_size=8, T=4)
    rec = Recorder()
    res = fit(model, _data(), T=4, encoding="direct", loss=temporal_contrastive,
              optimizer=lambda ps: SignSGD(ps, lr=1e-2), callbacks=[rec], epochs=3, batch_size=32, progress=False)
    assert rec.steps == list(range(1, 25)) and all(lr == 1e-2 for lr in rec.lrs)
    first, last = sum(rec.losses[:4]) / 4, sum(rec.losses[-4:]) / 4
    assert last < 0.7 * first, (first, last)
    assert res.history[-1]["test_accuracy"] > 0.5


class PoisonAt(Callback):
    """Sets one weight to NaN after ``step`` (the next forward then produces NaN in that layer)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, trainer, info) -> None:
        if info.step == self.step:
            with torch.no_grad():
                trainer.model.fc[1].weight[0, 0] = float("nan")


def test_nonfinite_stops_naming_step_and_layer() -> None:
    torch.manual_seed(0)
    model = create_model("spiking_mlp_tiny", in_channels=1, num_classes=10, img_size=8, T=4)
    # a NaN membrane never fires (NaN >= θ is false), so the loss stays finite and the gradient is what breaks
    msg = r"step 3: gradient of fc\.1\.weight is not finite; first non-finite output in layer 'fc\.1'"
    with pytest.raises(NonFiniteError, match=msg):
        fit(model, _data(), T=4, encoding="direct", callbacks=[PoisonAt(3)], epochs=1, batch_size=32,
            progress=False)


def test_nonfinite_can_be_skipped_and_counted() -> None:
    torch.manual_seed(0)
    model = create_model("spiking_mlp_tiny", in_channels=1, num_classes=10, img_size=8, T=4)
    res = fit(model, _data(), T=4, encoding="direct", callbacks=[PoisonAt(3)], epochs=1, batch_size=32,
              progress=False, skip_nonfinite=True, max_skipped=1.0)
    assert res.skipped_steps == 5 and res.history[-1]["skipped_steps"] == 5     # steps 4..8 of 8
    model = create_model("spiking_mlp_tiny", in_channels=1, num_classes=10, img_size=8, T=4)
    with pytest.raises(TooManySkipped, match=r"^5 of 8 steps were skipped as non-finite, more than the allowed 10%"):
        fit(model, _data(), T=4, encoding="direct", callbacks=[PoisonAt(3)], epochs=1, batch_size=32,
            progress=False, skip_nonfinite=True)


def test_a_loss_by_name_is_the_registered_one() -> None:
    from spikeforge.core import UnknownNameError
    from spikeforge.training import LOSSES, Trainer

    model = create_model("spiking_mlp_tiny", in_channels=1, num_classes=10, img_size=8, T=2)
    assert Trainer(model, _data(64), T=2, loss="tet", progress=False).loss is LOSSES["tet"]
    with pytest.raises(UnknownNameError, match="did you mean 'tet'"):
        Trainer(model, _data(64), T=2, loss="tett", progress=False)

"""The train-step seam: a strategy owns forward and backward, the engine the rest; hooks see the batch
before the forward and the final gradients before the optimiser step; a strategy's state is checkpointed."""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path

import pytest
import torch

from spikeforge.data import build_dataset
from spikeforge.models import create_model
from spikeforge.training import (
    BPTT,
    METHODS,
    Callback,
    StepOutput,
    Trainer,
    TrainStep,
    fit,
    load_checkpoint,
    mean_ce,
)


def _data(limit: int = 96):
    return build_dataset("digits", limit_train=limit, val_fraction=0.0, progress=False)


def _model():
    torch.manual_seed(0)
    return create_model("spiking_mlp_tiny", in_channels=1, num_classes=10, img_size=8, T=4)


class HalfBatches(TrainStep):
    """Two backward passes per batch (each half), the first under ``no_sync``; counts the samples it saw."""

    name = "half-batches"

    def __init__(self) -> None:
        self.seen = torch.zeros((), dtype=torch.long)
        self.no_sync_used = 0

    def __call__(self, model, batch, ctx) -> StepOutput:
        x_seq, y = batch
        h = len(y) // 2
        outs = []
        for k, (xs, ys) in enumerate(((x_seq[:, :h], y[:h]), (x_seq[:, h:], y[h:]))):
            sync = ctx.no_sync() if k == 0 else contextlib.nullcontext()
            self.no_sync_used += k == 0
            with sync, ctx.autocast():
                out = model(xs)
                loss = ctx.loss(out, ys, {}) * len(ys) / len(y)
                ctx.backward(loss)
            outs.append(out.detach())
        self.seen += len(y)
        return StepOutput(loss.detach(), torch.cat(outs, dim=1))

    def state_dict(self):
        return {"seen": self.seen.clone()}

    def load_state_dict(self, state):
        self.seen = state["seen"].clone()


class Order(Callback):
    """Records the order of events in a step and what the gradients look like after backward."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.snapshot: list[torch.Tensor] = []
        self.grads: list[torch.Tensor] = []

    def on_fit_start(self, trainer) -> None:
        trainer.model.register_forward_pre_hook(lambda m, i: self.events.append("forward"))

    def on_batch_start(self, trainer, batch) -> None:
        x_seq, y = batch
        assert x_seq.shape[0] == 4 and x_seq.shape[1] == len(y)       # time-first, as the model gets it
        self.events.append("batch_start")
        self.snapshot = [p.detach().clone() for p in trainer.model.parameters()]

    def on_after_backward(self, trainer) -> None:
        self.events.append("after_backward")
        ps = list(trainer.model.parameters())
        assert all(p.grad is not None for p in ps)
        assert all(torch.equal(p, s) for p, s in zip(ps, self.snapshot))   # the optimiser has not stepped
        self.grads.append(ps[0].grad.detach().clone())

    def on_step_end(self, trainer, info) -> None:
        self.events.append("step_end")


def test_hooks_run_in_order_around_a_custom_strategy() -> None:
    order, step = Order(), HalfBatches()
    res = fit(_model(), _data(), T=4, encoding="direct", method=step, callbacks=[order], epochs=1, batch_size=32,
              progress=False)
    assert order.events[:5] == ["batch_start", "forward", "forward", "after_backward", "step_end"]
    assert order.events.count("after_backward") == 3 and step.no_sync_used == 3 and int(step.seen) == 96
    assert res.history[-1]["step"] == 3 and 0 <= res.history[-1]["train_accuracy"] <= 1


def test_two_half_backwards_give_the_bptt_gradient() -> None:
    """Accumulating two half-batch backwards equals one whole-batch backward (the strategy is honest)."""
    grads = []
    for method in (BPTT(), HalfBatches()):
        order = Order()
        fit(_model(), _data(32), T=4, encoding="direct", method=method, callbacks=[order], epochs=1,
            batch_size=32, progress=False)
        grads.append(order.grads[0])
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-7)


def test_strategy_state_is_checkpointed_and_restored(tmp_path: Path) -> None:
    run = tmp_path / "run"
    step = HalfBatches()
    fit(_model(), _data(), T=4, encoding="direct", method=step, epochs=1, batch_size=32, progress=False, run_dir=run)
    ck = load_checkpoint(run / "checkpoints" / "last.safetensors")
    assert ck["meta"]["method"] == "half-batches" and torch.equal(ck["extra"]["method"]["seen"], torch.tensor(96))
    fresh = HalfBatches()
    tr = Trainer(_model(), _data(), T=4, encoding="direct", method=fresh, run_dir=run, progress=False)
    assert tr.resume() and int(fresh.seen) == 96
    other = Trainer(_model(), _data(), T=4, encoding="direct", run_dir=run, progress=False)     # bptt
    with pytest.raises(ValueError, match="was trained with method 'half-batches', not 'bptt'"):
        other.resume()


def test_after_backward_sees_unscaled_fp16_gradients() -> None:
    """With fp16 AMP the loss is scaled by 2^16 for backward; the hook sees the true gradient."""
    seen = {}
    for amp in ("off", "fp16"):
        order = Order()
        fit(_model(), _data(32), T=4, encoding="direct", callbacks=[order], epochs=1, batch_size=32, progress=False,
            amp=amp)
        seen[amp] = order.grads[0]
    scale = float(seen["off"].abs().max())
    assert scale > 0 and float((seen["fp16"] - seen["off"]).abs().max()) < 0.05 * scale


def test_methods_registry_and_default() -> None:
    assert "bptt" in METHODS and "backpropagation through time" in METHODS.summary("bptt")
    tr = Trainer(_model(), _data(), T=4, loss=mean_ce, progress=False)
    assert isinstance(tr.method, BPTT)
    with pytest.raises(ValueError, match="unknown method 'bpt'; did you mean 'bptt'"):
        Trainer(_model(), _data(), T=4, method="bpt", progress=False)


class Refuses(BPTT):
    name = "refuses"

    def check(self, model):
        return "this model has no convolution"


def test_an_incompatible_method_fails_before_training() -> None:
    with pytest.raises(ValueError, match="method 'refuses' cannot train this model: this model has no convolution"):
        Trainer(copy.deepcopy(_model()), _data(), T=4, method=Refuses(), progress=False)

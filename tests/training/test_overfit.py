"""Every tiny model overfits one batch of 64 on every kind of data, through the CLI's code path
(``spikeforge.app.train``): the loss falls below a tenth of its start within 100 steps."""

from __future__ import annotations

from pathlib import Path

import pytest

from spikeforge.app import TrainConfig, train
from spikeforge.models import list_models
from spikeforge.training import Callback

TINY = list_models("*_tiny")
DATASETS = ["digits", "emulated-nmnist", "nmnist-folder"]
# the column-by-column net (17k parameters) reads a clip as T·W = 68 steps: it needs a larger step
# (at 3e-2 it reached 0.22 of a 0.23 bar at step 97 on 2 threads and missed it on 1; at 5e-2 it is
# below the bar by step ~65 on either)
LR = {"seq_csnn_tiny": 5e-2}


class StopBelow(Callback):
    def __init__(self, fraction: float = 0.1) -> None:
        self.fraction, self.first, self.stopped_at, self.losses = fraction, None, None, []

    def on_step_end(self, trainer, info) -> None:
        self.losses.append(info.loss)
        if self.first is None:
            self.first = info.loss
        elif info.loss < self.fraction * self.first:
            self.stopped_at = info.step
            trainer.stop = True


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("model", TINY)
def test_overfits_one_batch(model: str, dataset: str, nmnist_folder: Path, tmp_path: Path) -> None:
    kw = {"dataset": "nmnist", "data_root": str(nmnist_folder)} if dataset == "nmnist-folder" else \
        {"dataset": dataset}
    cfg = TrainConfig(model=model, T=2, batch_size=64, limit_train=64, val_fraction=0.0, epochs=100,
                      max_steps=150, lr=LR.get(model, 1e-2), encoding="direct", eval_every=1000, progress=False,
                      run_dir=str(tmp_path / "run"), extra={"source": "digits"}, **kw)
    rec = StopBelow()
    result, _, _ = train(cfg, callbacks=[rec])
    assert rec.stopped_at is not None, f"{model} on {dataset}: loss {rec.losses[0]:.3f} → {min(rec.losses):.3f}"
    assert result.history[-1]["test_accuracy"] >= 0.0

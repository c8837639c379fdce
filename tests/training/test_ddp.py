"""Data parallel through torchrun: 2 ranks at B/2 each equal one process at B (BatchNorm-free model)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from spikeforge.training import load_checkpoint
from tests.training.conftest import run_cli

ARGS = ["train", "--dataset", "digits", "--model", "spiking_mlp_tiny", "--optimizer", "sgd", "--lr", "0.5",
        "--schedule", "constant", "--batch-size", "64", "--max-steps", "5", "--epochs", "1", "--encoding", "direct",
        "--val-fraction", "0", "--threads", "1", "--progress", "false", "--T", "4"]


def test_two_ranks_equal_one_process(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    r1 = run_cli(*ARGS, "--run-dir", str(one))
    assert r1.returncode == 0, r1.stderr
    torchrun = [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node=2", "-m",
                "spikeforge"]
    r2 = run_cli(*ARGS, "--run-dir", str(two), module=torchrun)
    assert r2.returncode == 0, r2.stderr[-3000:]
    w1 = load_checkpoint(one / "checkpoints" / "last.safetensors")["model"]
    w2 = load_checkpoint(two / "checkpoints" / "last.safetensors")["model"]
    init = None
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-5, atol=1e-6)
        init = k
    assert init is not None
    # and the 5 steps moved the weights (the comparison is not between two untouched models)
    from spikeforge.models import create_model
    torch.manual_seed(0)
    fresh = create_model("spiking_mlp_tiny", in_channels=1, num_classes=10, img_size=8, T=4).state_dict()
    assert any(not torch.allclose(fresh[k], w1[k]) for k in w1)

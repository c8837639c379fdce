"""Nothing lost: a run killed with SIGKILL and resumed ends bit-identical to an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import torch

from spikeforge.training import load_checkpoint
from tests.conftest import ROOT
from tests.training.conftest import final_state, run_cli

STEPS_PER_EPOCH = 10
ARGS = ["train", "--dataset", "digits", "--model", "spiking_cnn_tiny", "--epochs", "2", "--batch-size", "32",
        "--limit-train", "320", "--ckpt-every", "4", "--T", "4", "--threads", "1", "--progress", "false",
        "--lr", "0.003", "--encoding", "rate"]
TIMING = {"seconds", "samples_per_s"}


def _killed_run(run: Path, pause: str, marker: str) -> int:
    """Run the training through ``kill_runner`` until it prints ``marker`` at ``pause``, then SIGKILL it."""
    p = subprocess.Popen([sys.executable, "-m", "tests.training.kill_runner", pause, *ARGS, "--run-dir", str(run)],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert p.stdout is not None
    for line in p.stdout:
        if line.startswith(marker):
            break
    else:
        raise AssertionError(f"the run ended without reaching {marker}")
    os.kill(p.pid, signal.SIGKILL)
    return p.wait()



def test_sigkill_at_a_random_step_then_resume(tmp_path: Path) -> None:
    ref = tmp_path / "ref"
    assert run_cli(*ARGS, "--run-dir", str(ref)).returncode == 0
    want_w, want_rows = final_state(ref)
    assert len(want_rows) == 2
    step = random.Random().randint(5, 2 * STEPS_PER_EPOCH - 1)        # after the first checkpoint (step 4)
    killed = tmp_path / "killed"
    assert _killed_run(killed, f"step:{step}", "PAUSED-AT-STEP") == -signal.SIGKILL
    r = run_cli("train", "--resume", str(killed))
    assert r.returncode == 0, r.stderr
    got_w, got_rows = final_state(killed)
    assert got_w.keys() == want_w.keys()
    for k in want_w:
        assert torch.equal(got_w[k], want_w[k]), f"{k} differs after a kill at step {step}"
    assert got_rows == want_rows


def test_sigkill_between_temp_file_and_rename(tmp_path: Path) -> None:
    ref = tmp_path / "ref"
    assert run_cli(*ARGS, "--run-dir", str(ref)).returncode == 0
    killed = tmp_path / "killed"
    # the second write (step 8) stops between its temp file and the rename; step 4 stays the last good one
    assert _killed_run(killed, "before-rename:2", "CKPT-PAUSED") == -signal.SIGKILL
    assert list((killed / "checkpoints").glob(".*.tmp")), "the kill should leave a temp file behind"
    load_checkpoint(killed / "checkpoints" / "last.safetensors")   # the previous checkpoint is intact
    assert run_cli("train", "--resume", str(killed)).returncode == 0
    got_w, got_rows = final_state(killed)
    want_w, want_rows = final_state(ref)
    assert all(torch.equal(got_w[k], want_w[k]) for k in want_w) and got_rows == want_rows
    assert not list((killed / "checkpoints").glob(".*.tmp"))


def test_stopped_by_max_steps_inside_an_epoch_then_resumed(tmp_path: Path, capsys) -> None:
    """--max-steps that ends inside an epoch keeps the position: --resume finishes that epoch, and the run
    equals one that never stopped (weights and metrics rows). With the constant schedule: a cosine
    schedule's length is --max-steps itself, so lifting it changes the learning rates by design."""
    from tests.training.conftest import main_in_process

    args = ["train", "--dataset", "digits", "--model", "spiking_mlp_tiny", "--epochs", "2", "--batch-size", "32",
            "--limit-train", "320", "--T", "2", "--threads", "1", "--progress", "false", "--lr", "0.005",
            "--schedule", "constant"]
    assert main_in_process(capsys, *args, "--run-dir", str(tmp_path / "ref"))[0] == 0
    want_w, want_rows = final_state(tmp_path / "ref")
    stopped = tmp_path / "stopped"
    assert main_in_process(capsys, *args, "--max-steps", "13", "--run-dir", str(stopped))[0] == 0
    assert [r["step"] for r in final_state(stopped)[1]] == ["10", "13"]          # the partial epoch is reported
    assert load_checkpoint(stopped / "checkpoints" / "last.safetensors")["meta"]["pos"] == 3
    assert main_in_process(capsys, "train", "--resume", str(stopped), "--max-steps", "none")[0] == 0
    got_w, got_rows = final_state(stopped)
    assert all(torch.equal(got_w[k], want_w[k]) for k in want_w)
    assert got_rows == want_rows

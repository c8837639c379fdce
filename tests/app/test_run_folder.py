"""A run folder belongs to one run: the lock, names that cannot collide, restarting a run that died early,
a damaged last checkpoint, and what ``--resume`` may change."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from spikeforge.app import TrainConfig
from spikeforge.app.rundir import default_run_dir
from spikeforge.core import FolderLock, LockHeld
from spikeforge.training import load_checkpoint
from tests.conftest import ROOT
from tests.training.conftest import main_in_process as _main
from tests.training.conftest import run_cli

ARGS = ["train", "--dataset", "digits", "--model", "spiking_mlp_tiny", "--T", "2", "--epochs", "2",
        "--batch-size", "64", "--limit-train", "256", "--threads", "1", "--progress", "false", "--encoding", "direct"]


def _popen(*args: str, module: str = "spikeforge") -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_the_lock_is_exclusive_and_dies_with_its_holder(tmp_path: Path) -> None:
    held = FolderLock(tmp_path, "run folder")
    with pytest.raises(LockHeld, match=f"run folder {tmp_path} is in use by process {os.getpid()}") as e:
        FolderLock(tmp_path, "run folder")
    assert e.value.pid == os.getpid()
    held.release()
    FolderLock(tmp_path).release()                     # free again
    code = (f"from spikeforge.core import FolderLock; lock = FolderLock({str(tmp_path)!r}); "
            "print('held', flush=True); import time; time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    with pytest.raises(LockHeld, match=f"in use by process {child.pid}"):
        FolderLock(tmp_path)
    child.send_signal(signal.SIGKILL)
    child.wait()
    FolderLock(tmp_path).release()                     # a killed holder leaves no stale lock


def test_two_trainings_in_one_folder_never_mix(tmp_path: Path) -> None:
    """Started at once with different seeds: one trains, the other stops with one line; the folder holds
    one run, every file of it from the same seed."""
    run = tmp_path / "run"
    procs = [_popen(*ARGS, "--seed", str(seed), "--run-dir", str(run)) for seed in (1, 2)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes) == [0, 2], (codes, [o[1][-400:] for o in outs])
    loser_err = outs[codes.index(2)][1].strip().splitlines()
    assert len(loser_err) == 1, loser_err
    assert ("in use by process" in loser_err[0] or "already holds a run" in loser_err[0]), loser_err
    seed = (1, 2)[codes.index(0)]
    assert json.loads((run / "config.json").read_text())["seed"] == seed
    for ck in (run / "checkpoints").glob("*.safetensors"):
        assert load_checkpoint(ck)["meta"]["config"]["seed"] == seed
    assert json.loads((run / "summary.json").read_text())["status"] == "finished"


def test_a_second_run_names_the_first_process(tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = _popen("step:1", *ARGS, "--run-dir", str(run), module="tests.training.kill_runner")
    assert first.stdout is not None
    for line in first.stdout:
        if line.startswith("PAUSED-AT-STEP"):
            break
    try:
        r = run_cli(*ARGS, "--seed", "5", "--run-dir", str(run))
        assert r.returncode == 2 and r.stderr.strip() == (
            f"spikeforge: error: run folder {run} is in use by process {first.pid} (wait for it to finish, or "
            "choose another folder)")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert json.loads((run / "config.json").read_text())["seed"] == 0


def test_default_names_do_not_collide() -> None:
    cfg = TrainConfig()
    names = {default_run_dir(cfg) for _ in range(50)}
    assert len(names) == 50 and all(n.name.startswith("digits-spiking_cnn_tiny-seed0-") for n in names)


def test_resume_applies_safe_changes_and_refuses_the_rest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert _main(capsys, *ARGS, "--run-dir", str(run))[0] == 0
    for flag, value in (("--lr", "0.5"), ("--T", "4"), ("--model", "spiking_cnn_tiny"), ("--dataset", "fashion-mnist")):
        code, err = _main(capsys, "train", "--resume", str(run), flag, value)
        assert code == 2 and len(err) == 1 and f"{flag} cannot change when a run resumes" in err[0], err
    cfg = tmp_path / "more.yaml"
    cfg.write_text("epochs: 3\nT: 4\n")                 # a field set in a --config file counts as given
    code, err = _main(capsys, "train", "--resume", str(run), "--config", str(cfg))
    assert code == 2 and len(err) == 1 and "--T cannot change when a run resumes" in err[0], err
    code, err = _main(capsys, "train", "--resume", str(run), "--epochs", "3", "--T", "2")   # T as saved: no change
    assert code == 0, err
    assert json.loads((run / "summary.json").read_text())["epochs"] == 3


def test_a_damaged_last_checkpoint_falls_back_to_the_newest_valid_one(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert _main(capsys, *ARGS, "--run-dir", str(run), "--ckpt-every", "3")[0] == 0
    last = run / "checkpoints" / "last.safetensors"
    last.write_bytes(last.read_bytes()[:1000])              # truncated
    code, err = _main(capsys, "train", "--resume", str(run), "--epochs", "3")
    assert code == 0, err
    assert len(err) == 1 and "last.safetensors is unreadable or truncated" in err[0] and \
        "continuing from best.safetensors" in err[0], err
    assert load_checkpoint(last)["meta"]["epoch"] == 3


def test_an_unrelated_folder_is_not_a_run_and_its_files_stay(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "mine"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    assert _main(capsys, *ARGS, "--run-dir", str(run))[0] == 0
    assert (run / "notes.txt").read_text() == "mine" and (run / "summary.json").is_file()
    code, err = _main(capsys, *ARGS, "--run-dir", str(run))
    assert code == 2 and len(err) == 1 and "already holds a run" in err[0]
    assert _main(capsys, *ARGS, "--run-dir", str(run), "--overwrite", "--seed", "3")[0] == 0
    assert (run / "notes.txt").read_text() == "mine"
    assert json.loads((run / "config.json").read_text())["seed"] == 3


def test_firing_rates_after_a_resume_use_the_runs_own_T(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import spikeforge.app as app
    from spikeforge.cli import main
    run = tmp_path / "run"
    assert main([*ARGS, "--T", "3", "--epochs", "1", "--run-dir", str(run)]) == 0
    seen = []
    real = app.layer_firing_rates
    monkeypatch.setattr(app, "layer_firing_rates", lambda m, d, cfg: seen.append(cfg.T) or real(m, d, cfg))
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 0
    assert seen == [3]
    capsys.readouterr()


def test_a_run_killed_before_its_first_checkpoint_restarts_with_resume(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    ref, run = tmp_path / "ref", tmp_path / "run"
    p = _popen("step:1", *ARGS, "--run-dir", str(run), module="tests.training.kill_runner")
    assert _main(capsys, *ARGS, "--run-dir", str(ref))[0] == 0
    assert p.stdout is not None and p.stdout.readline().startswith("PAUSED-AT-STEP")
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert (run / "config.json").is_file() and not list((run / "checkpoints").glob("*.safetensors"))
    code, err = _main(capsys, "train", "--resume", str(run))
    assert code == 0 and err == [f"spikeforge: {run} has no checkpoint yet; starting the run over from its config"]
    a = load_checkpoint(ref / "checkpoints" / "last.safetensors")["model"]
    b = load_checkpoint(run / "checkpoints" / "last.safetensors")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)             # the restarted run is the uninterrupted one

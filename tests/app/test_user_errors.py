"""Every user error is one line and exit code 2, nothing written; a failed run is one line and exit code 1.

Each example below was a traceback or a wrong answer once; the classes they stand for are covered by the
``UserError`` base the CLI catches, the one-sample input check, the model-argument check against the
model's signature and the finite-number check of every float field."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from spikeforge.app import TrainConfig, train
from spikeforge.training import load_checkpoint, save_checkpoint
from tests.training.conftest import main_in_process

TINY = ["train", "--dataset", "digits", "--model", "spiking_mlp_tiny", "--T", "2", "--epochs", "1",
        "--limit-train", "128", "--progress", "false", "--threads", "1"]


def _fails(capsys: pytest.CaptureFixture[str], args: list[str], code: int = 2) -> str:
    got, err = main_in_process(capsys, *args)
    assert got == code
    assert len(err) == 1, err
    assert err[0].startswith("spikeforge: error: " if code == 2 else "spikeforge: the run failed: ")
    return err[0]


BAD_TRAIN = [
    (["--model", "spiking_cnn_tiny", "--model-arg", "width=-4"], "width=-4: spiking_cnn_tiny expects a value > 0"),
    (["--model", "spiking_cnn_tiny", "--model-arg", "width=abc"], "width='abc': spiking_cnn_tiny expects an integer"),
    (["--model-arg", "T=0"], "model_args: T is set by --T, not by --model-arg"),
    (["--model-arg", "in_channels=3"], "model_args: in_channels is set by the dataset"),
    (["--model-arg", "hidden=0"], "hidden=0: spiking_mlp_tiny expects a value > 0 (default 128)"),
    (["--lr", "inf"], "lr: must be a finite number, got inf"),
    (["--lr", "nan"], "lr: must be a finite number, got nan"),
    (["--tau=-inf"], "tau: must be a finite number"),
    (["--max-skipped", "2"], "max_skipped: must be a share in [0, 1]"),
    (["--dataset", "fashion-mnist", "--data-root", "/nonexistent"], "not found in /nonexistent"),
]


@pytest.mark.parametrize("extra,message", BAD_TRAIN, ids=[" ".join(b[0]) for b in BAD_TRAIN])
def test_train_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    run = tmp_path / "run"
    err = _fails(capsys, [*TINY, *extra, "--run-dir", str(run)])
    assert message in err and not run.exists()
    assert err.count("apt-get install") <= 1                      # the install hint once


@pytest.mark.parametrize("dataset", ["nmnist", "dvs128-gesture"])
def test_an_empty_data_root_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str], dataset: str) -> None:
    err = _fails(capsys, [*TINY, "--dataset", dataset, "--data-root", str(tmp_path), "--run-dir", str(tmp_path / "r")])
    assert f"(root: {tmp_path})" in err and "Expected layout" in err and "never downloads" in err


def test_a_wrong_allocator_setting_is_refused_before_the_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPIKEFORGE_MALLOC", "sytem")
    err = _fails(capsys, [*TINY, "--run-dir", str(tmp_path / "run")])
    assert "SPIKEFORGE_MALLOC='sytem': expected 'system'" in err and not (tmp_path / "run").exists()


def test_run_dir_that_is_a_file_or_below_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "a-file"
    f.write_text("mine")
    assert "run_dir: " + str(f) + " is a file, not a folder" in _fails(capsys, [*TINY, "--run-dir", str(f)])
    assert f"{f} is a file" in _fails(capsys, [*TINY, "--run-dir", str(f / "sub")])
    assert f.read_text() == "mine"


def test_run_dir_that_cannot_be_created(capsys: pytest.CaptureFixture[str]) -> None:
    """(/proc takes no folders, even from root.)"""
    assert "run_dir: cannot create /proc/spikeforge-run" in _fails(capsys, [*TINY, "--run-dir", "/proc/spikeforge-run"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_run_dir_not_writable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    assert "permission denied" in _fails(capsys, [*TINY, "--run-dir", str(ro / "run")])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("ck") / "run"
    train(TrainConfig(dataset="digits", model="spiking_mlp_tiny", T=2, epochs=1, limit_train=64, progress=False,
                      run_dir=str(run)))
    return run / "checkpoints" / "last.safetensors"


def test_eval_on_another_dataset_names_the_shapes(checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _fails(capsys, ["eval", str(checkpoint), "--dataset", "emulated-nmnist"])
    assert "emulated-nmnist" in err and "spiking_mlp_tiny" in err


def test_a_checkpoint_with_broken_metadata(checkpoint: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    ck = load_checkpoint(checkpoint)
    for broken, message in (({**ck["meta"], "config": {**ck["meta"]["config"], "T": "many"}}, "cannot read 'many'"),
                            ({**ck["meta"], "config": {**ck["meta"]["config"], "colour": 3}}, "unknown field"),
                            ({"step": 1}, "stores no training config")):
        bad = tmp_path / "bad.safetensors"
        save_checkpoint(bad, model=ck["model"], meta=broken)
        for cmd in (["eval", str(bad)], ["report", str(bad), "--no-progress", "--no-plots"]):
            err = _fails(capsys, cmd)
            assert str(bad) in err and message in err, err


@pytest.mark.parametrize("flags,message", [(["--max-samples", "-5"], "--max-samples: must be >= 1, got -5"),
                                           (["--e-ac", "-1"], "--e-ac: an energy per operation must be a finite"),
                                           (["--e-mac", "inf"], "--e-mac: an energy per operation must be a finite")])
def test_report_flags(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str],
                      message: str) -> None:
    out = tmp_path / "rep"
    assert message in _fails(capsys, ["report", str(checkpoint), "--out-dir", str(out), "--no-progress", *flags])
    assert not out.exists()


def test_eval_and_report_refuse_a_wrong_allocator_setting(checkpoint: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPIKEFORGE_MALLOC", "sytem")
    out = tmp_path / "rep"
    for cmd in (["eval", str(checkpoint)], ["report", str(checkpoint), "--out-dir", str(out), "--no-progress"]):
        assert "SPIKEFORGE_MALLOC='sytem': expected 'system'" in _fails(capsys, cmd)
    assert not out.exists()


def test_divergence_is_a_failed_run_not_a_success(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    err = _fails(capsys, [*TINY, "--lr", "1e6", "--limit-train", "640", "--run-dir", str(run)], code=1)
    assert "has stayed above 50× its starting value" in err and "in layer 'fc.1'" in err and err.count("step ") >= 1
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "failed" and s["failed"] in err and s["test_accuracy"] is None
    err = _fails(capsys, [*TINY, "--lr", "1e38", "--skip-nonfinite", "true", "--run-dir", str(tmp_path / "r2")],
                 code=1)
    assert "step 0: the optimiser step failed" in err


def test_write_events_into_a_missing_folder_names_the_folder(tmp_path: Path) -> None:
    from spikeforge.data import emulate_image, write_events
    ev = emulate_image(torch.rand(28, 28).numpy(), seed=0)
    with pytest.raises(FileNotFoundError, match=f"folder {tmp_path / 'nope'} does not exist") as e:
        write_events(tmp_path / "nope" / "x.bin", ev)
    assert ".tmp" not in str(e.value)


def test_a_run_folder_given_as_a_checkpoint(checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = checkpoint.parent.parent
    err = _fails(capsys, ["eval", str(run)])
    assert f"checkpoint {run} is a folder, not a checkpoint file (did you mean {checkpoint}?)" in err


@pytest.mark.parametrize("args,message", [
    (["train", "--dataset", "digits", "--bogus", "3"], "unrecognized arguments: --bogus 3 (see spikeforge --help)"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["eval"], "spikeforge eval: error: the following arguments are required: checkpoint"),
])
def test_a_usage_error_is_one_line(capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    from spikeforge.cli import main
    with pytest.raises(SystemExit) as stop:
        main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1 and message in err[0], err

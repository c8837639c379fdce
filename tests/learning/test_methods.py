"""Every registered learning method, through the product: train, resume exactly, eval and report the run,
refuse what it cannot train in one line, and take its settings from --method-arg."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from spikeforge.app import evaluate_checkpoint
from spikeforge.learning import METHODS
from tests.training.conftest import final_state, main_in_process

NAMES = [n for n in METHODS if n != "bptt"]
BASE = ["train", "--dataset", "digits", "--model", "spiking_mlp_tiny", "--epochs", "2", "--batch-size", "32",
        "--limit-train", "128", "--T", "4", "--threads", "1", "--progress", "false", "--lr", "0.01",
        "--schedule", "constant", "--encoding", "direct"]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return final_state(run)[0]


def _rows(run: Path) -> list[dict[str, str]]:
    return final_state(run)[1]


@pytest.mark.parametrize("name", NAMES)
def test_method_run_resumes_exactly_and_is_deterministic(name: str, tmp_path: Path, capsys) -> None:
    args = [*BASE, "--method", name]
    assert main_in_process(capsys, *args, "--run-dir", str(tmp_path / "ref"))[0] == 0
    want = _weights(tmp_path / "ref")
    assert main_in_process(capsys, *args, "--run-dir", str(tmp_path / "again"))[0] == 0
    again = _weights(tmp_path / "again")
    assert all(torch.equal(again[k], want[k]) for k in want), "not deterministic under a seed"
    stopped = tmp_path / "stopped"
    assert main_in_process(capsys, *args, "--max-steps", "5", "--run-dir", str(stopped))[0] == 0
    assert main_in_process(capsys, "train", "--resume", str(stopped), "--max-steps", "none")[0] == 0
    got = _weights(stopped)
    assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want), "resume is not exact"
    assert _rows(stopped) == _rows(tmp_path / "ref")          # metrics too, a method's own columns included
    cfg = json.loads((stopped / "config.json").read_text())
    assert cfg["method"] == name
    summary = json.loads((tmp_path / "ref" / "summary.json").read_text())
    assert summary["method"] == name and summary["test_accuracy"] > 0.2      # it learned something in 8 steps


@pytest.mark.parametrize("name", NAMES)
def test_eval_and_report_rebuild_the_methods_model(name: str, tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    assert main_in_process(capsys, *BASE, "--method", name, "--epochs", "1", "--run-dir", str(run))[0] == 0
    ck = str(run / "checkpoints" / "last.safetensors")
    ev = evaluate_checkpoint(ck)
    summary = json.loads((run / "summary.json").read_text())
    assert ev["method"] == name and ev["test_accuracy"] == pytest.approx(summary["test_accuracy"], abs=1e-12)
    code, err = main_in_process(capsys, "report", ck, "--no-plots", "--count-batches", "1")
    assert code == 0, err
    rep = json.loads((run / "report" / "report.json").read_text())
    assert rep["method"] == name and rep["accuracy"] == pytest.approx(ev["test_accuracy"], abs=1e-12)


def test_method_settings_are_checked_and_recorded(tmp_path: Path, capsys) -> None:
    code, err = main_in_process(capsys, *BASE, "--method", "dsr", "--method-arg", "alfa=0.5",
                                "--run-dir", str(tmp_path / "a"))
    assert code == 2 and len(err) == 1 and "no setting 'alfa'" in err[0] and "alpha" in err[0]
    assert not (tmp_path / "a").exists()
    code, err = main_in_process(capsys, *BASE, "--method", "dsr", "--method-arg", "alpha=2",
                                "--run-dir", str(tmp_path / "b"))
    assert code == 2 and len(err) == 1 and "alpha must be in (0, 1]" in err[0]
    code, err = main_in_process(capsys, *BASE, "--method", "dsr", "--method-arg", "alpha", "--run-dir",
                                str(tmp_path / "c"))
    assert code == 2 and "method_args: 'alpha' is not KEY=VALUE" in err[0]
    run = tmp_path / "d"
    assert main_in_process(capsys, *BASE, "--method", "dsr", "--method-arg", "alpha=1.0", "--method-arg",
                           "vth=0.5", "--max-steps", "1", "--run-dir", str(run))[0] == 0
    assert json.loads((run / "config.json").read_text())["method_args"] == {"alpha": 1.0, "vth": 0.5}
    code, err = main_in_process(capsys, "train", "--resume", str(run), "--method-arg", "alpha=0.5")
    assert code == 2 and len(err) == 1 and "--method-arg cannot change when a run resumes" in err[0]


# a model each method cannot train, and a word of the reason (online runs attention over one step's tokens)
REFUSED = {"online": ("seq_csnn_tiny", "image columns")}


@pytest.mark.parametrize("name", NAMES)
def test_incompatible_model_is_refused_before_anything_is_written(name: str, tmp_path: Path, capsys) -> None:
    model, why = REFUSED.get(name, ("spikformer_tiny", "attention"))
    code, err = main_in_process(capsys, *BASE, "--method", name, "--model", model, "--run-dir", str(tmp_path / "r"))
    assert code == 2 and len(err) == 1 and f"method: {name} cannot train {model}" in err[0], err
    assert why in err[0] and not (tmp_path / "r").exists()


@pytest.mark.parametrize("name", [n for n in ("dsr", "tandem", "spike-count") if n in METHODS])
def test_soft_reset_models_are_refused_by_nir_export(name: str, tmp_path: Path, capsys) -> None:
    pytest.importorskip("nir")
    run = tmp_path / "run"
    assert main_in_process(capsys, *BASE, "--method", name, "--max-steps", "1", "--run-dir", str(run))[0] == 0
    code, err = main_in_process(capsys, "export", str(run), "-o", str(tmp_path / "m.nir"))
    assert code == 2 and len(err) == 1 and "resets by subtraction" in err[0], err
    assert not (tmp_path / "m.nir").exists()


def test_exact_time_models_are_refused_by_nir_export(tmp_path: Path, capsys) -> None:
    pytest.importorskip("nir")
    run = tmp_path / "run"
    assert main_in_process(capsys, *BASE, "--method", "ttfs", "--max-spikes", "2", "--max-steps", "1",
                           "--run-dir", str(run))[0] == 0
    code, err = main_in_process(capsys, "export", str(run), "-o", str(tmp_path / "m.nir"))
    assert code == 2 and err == ["spikeforge: error: fc: ExactLIF is an event-driven layer of exact spike times "
                                 "(--method ttfs), not a stepped neuron; NIR export of it is not supported"], err
    assert not (tmp_path / "m.nir").exists()
    code, err = main_in_process(capsys, *BASE, "--method", "ttfs", "--max-spikes", "2",
                                "--method-arg", "max_spikes=3", "--run-dir", str(tmp_path / "r2"))
    assert code == 2 and "max_spikes: given twice" in err[0] and not (tmp_path / "r2").exists()

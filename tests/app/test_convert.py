"""``spikeforge convert``: an ANN twin's run → SNN checkpoints per T that eval and report rebuild, and
``conversion.json``; deterministic; every bad input is one line, exit 2, nothing written or overwritten."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from spikeforge.app import TrainConfig, evaluate_checkpoint, rebuild, train
from spikeforge.learning import RateNeuron, rate_neurons
from spikeforge.training import load_checkpoint
from tests.training.conftest import main_in_process


def _run(root: Path, name: str, method: str, **kw: object) -> Path:
    run = root / name
    fields: dict = dict(dataset="digits", model="spiking_cnn_tiny", model_args={"pool": "avg"}, method=method, T=1,
                        encoding="direct", epochs=4, lr=5e-3, progress=False, threads=1, run_dir=str(run))
    train(TrainConfig(**{**fields, **kw}))
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("convert")
    _run(root, "qcfs", "qcfs")
    _run(root, "ann", "ann")
    _run(root, "bptt", "bptt", model="spiking_mlp_tiny", model_args={}, T=4, max_steps=1)
    return root


def test_qcfs_run_converts_to_checkpoints_that_eval_and_report_rebuild(runs: Path, capsys) -> None:
    code, err = main_in_process(capsys, "convert", str(runs / "qcfs"), "--T", "16", "4")
    assert code == 0, err
    out = runs / "qcfs" / "convert-clip"
    res = json.loads((out / "conversion.json").read_text())
    assert res["method"] == "qcfs" and res["norm"] == "clip" and res["shift"] == 0.5 and res["T"] == [4, 16]
    assert sorted(p.name for p in out.glob("*.safetensors")) == ["T16.safetensors", "T4.safetensors"]
    assert res["ann_test_accuracy"] > 0.8
    assert res["test_accuracy"]["4"] > res["ann_test_accuracy"] - 0.05          # QCFS: close at T = 4 already
    assert set(res["layer_error"]["4"]) == {"sn1", "sn2"}
    assert all(res["layer_error"]["16"][k] < res["layer_error"]["4"][k] for k in ("sn1", "sn2"))
    ck = out / "T4.safetensors"
    ev = evaluate_checkpoint(ck)
    assert ev["test_accuracy"] == pytest.approx(res["test_accuracy"]["4"], abs=1e-12)
    rb = rebuild(ck, progress=False)
    neurons = rate_neurons(rb.model)
    assert rb.cfg.T == 4 and set(neurons) == {"sn1", "sn2"}
    assert all(isinstance(n, RateNeuron) and n.alpha == 0.5 and n.tau is None for n in neurons.values())
    assert {k: float(n.v_threshold) for k, n in neurons.items()} == pytest.approx(res["thresholds"])
    code, err = main_in_process(capsys, "report", str(ck), "--no-plots", "--count-batches", "1", "--no-progress")
    assert code == 0, err
    rep = json.loads((out / "T4-report" / "report.json").read_text())
    assert rep["accuracy"] == pytest.approx(res["test_accuracy"]["4"], abs=1e-12)


def test_ann_run_with_percentile_norm_approaches_the_ann_and_is_deterministic(runs: Path, capsys) -> None:
    args = ["convert", str(runs / "ann"), "--norm", "percentile", "--percentile", "99.9", "--T", "8", "64"]
    code, err = main_in_process(capsys, *args)
    assert code == 0, err
    out = runs / "ann" / "convert-p99.9"
    res = json.loads((out / "conversion.json").read_text())
    assert res["norm"] == "percentile" and res["percentile"] == 99.9 and res["shift"] == 0.0 and res["batches"] == 10
    assert res["test_accuracy"]["64"] > res["test_accuracy"]["8"]
    assert res["test_accuracy"]["64"] > res["ann_test_accuracy"] - 0.05
    code, err = main_in_process(capsys, *args, "--out", str(runs / "again"))
    assert code == 0, err
    again = json.loads((runs / "again" / "conversion.json").read_text())
    for key in ("test_accuracy", "thresholds", "layer_error", "ann_test_accuracy"):
        assert again[key] == res[key], key
    a, b = load_checkpoint(out / "T8.safetensors")["model"], load_checkpoint(runs / "again" / "T8.safetensors")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_converted_checkpoint_is_refused_by_the_nir_exporter_in_one_line(runs: Path, tmp_path: Path,
                                                                          capsys) -> None:
    pytest.importorskip("nir")
    out = runs / "ann" / "convert-max"
    if not (out / "T4.safetensors").exists():
        assert main_in_process(capsys, "convert", str(runs / "ann"), "--T", "4")[0] == 0
    code, err = main_in_process(capsys, "export", str(out / "T4.safetensors"), "-o", str(tmp_path / "x.nir"))
    assert code == 2 and len(err) == 1 and "RateNeuron" in err[0], err
    assert not (tmp_path / "x.nir").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--T", "0"], "--T: every number of time steps must be an integer >= 1, got 0"),
    (["--T", "-4", "8"], "--T: every number of time steps must be an integer >= 1, got -4"),
    (["--norm", "maxx"], "unknown --norm 'maxx'; did you mean 'max'?"),
    (["--norm", "clip"], "--norm clip reads the trained clip of a --method qcfs run; this run was trained with "
                         "--method ann"),
    (["--norm", "percentile", "--percentile", "0"], "--percentile: must be in (0, 100], got 0"),
    (["--norm", "percentile", "--percentile", "100.5"], "--percentile: must be in (0, 100], got 100.5"),
    (["--percentile", "99"], "--percentile applies to --norm percentile, not --norm max"),
    (["--shift", "1"], "--shift: the initial membrane as a fraction of the threshold must be in [0, 1), got 1"),
    (["--batches", "0"], "--batches: must be an integer >= 1, got 0"),
])
def test_bad_settings_are_one_line_and_write_nothing(runs: Path, args: list[str], message: str, tmp_path: Path,
                                                     capsys) -> None:
    out = tmp_path / "out"
    code, err = main_in_process(capsys, "convert", str(runs / "ann"), "--out", str(out), *args)
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not out.exists()


def test_runs_it_cannot_convert_are_one_line(runs: Path, tmp_path: Path, capsys) -> None:
    code, err = main_in_process(capsys, "convert", str(runs / "bptt"), "--out", str(tmp_path / "o"))
    assert code == 2 and len(err) == 1 and "was trained with --method bptt" in err[0], err
    code, err = main_in_process(capsys, "convert", str(tmp_path / "nothing"))
    assert code == 2 and err == [f"spikeforge: error: {tmp_path / 'nothing'}: no such run folder or checkpoint"]
    (tmp_path / "empty").mkdir()
    code, err = main_in_process(capsys, "convert", str(tmp_path / "empty"))
    assert code == 2 and len(err) == 1 and "no checkpoints/best.safetensors" in err[0]
    out = tmp_path / "c"
    assert main_in_process(capsys, "convert", str(runs / "qcfs"), "--T", "4", "--out", str(out))[0] == 0
    code, err = main_in_process(capsys, "convert", str(out / "T4.safetensors"), "--out", str(tmp_path / "d"))
    assert code == 2 and len(err) == 1 and "is already a converted SNN" in err[0], err
    code, err = main_in_process(capsys, "convert", str(runs / "qcfs"), "--out", str(out / "T4.safetensors"))
    assert code == 2 and len(err) == 1 and "is a file, not a folder" in err[0], err
    for inside in (runs / "ann", runs / "ann" / "checkpoints"):
        code, err = main_in_process(capsys, "convert", str(runs / "ann"), "--out", str(inside))
        assert code == 2 and len(err) == 1 and "belongs to a training run" in err[0], err
    assert sorted(p.name for p in (runs / "ann" / "checkpoints").iterdir()) == ["best.safetensors", "last.safetensors"]


def test_an_existing_conversion_is_not_overwritten_without_overwrite(runs: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "c"
    args = ["convert", str(runs / "qcfs"), "--T", "4", "8", "--out", str(out)]
    assert main_in_process(capsys, *args)[0] == 0
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()}
    code, err = main_in_process(capsys, *args[:-2], "--T", "8", "32", "--out", str(out), "--norm", "max")
    assert code == 2 and len(err) == 1 and "already holds a conversion (conversion.json, T8.safetensors)" in err[0]
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.iterdir()} == before
    code, err = main_in_process(capsys, *args, "--norm", "max", "--overwrite")
    assert code == 0, err
    assert json.loads((out / "conversion.json").read_text())["norm"] == "max"

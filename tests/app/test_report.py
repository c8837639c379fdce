"""``run_report`` / ``spikeforge report`` on a checkpoint trained for a few steps on digits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spikeforge.analysis import side_by_side
from spikeforge.app import TrainConfig, run_report, train
from spikeforge.cli import main


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("sklearn")
    run_dir = tmp_path_factory.mktemp("run") / "sg"
    cfg = TrainConfig(dataset="digits", model="spikingformer_tiny", T=2, encoding="direct", epochs=1, max_steps=3,
                      batch_size=32, run_dir=str(run_dir), progress=False, threads=1)
    train(cfg)
    return run_dir / "checkpoints" / "last.safetensors"


def test_report_writes_json_and_plots(checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    rep = run_report(checkpoint, "digits", tmp_path, batch_size=32, count_batches=1, max_samples=64,
                     progress=False)
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk["model"] == "spikingformer_tiny" and on_disk["test_samples"] == 64
    assert 0.0 <= rep["accuracy"] <= 1.0 and rep["latency_ms"] > 0 and rep["throughput_sps"] > 0
    assert rep["peak_memory_mib"] > 0 and rep["params"] > 0
    assert rep["samples"] == 32 and rep["convention"] == "spikingformer"
    e = rep["energy"]
    assert e["energy_mj"] == pytest.approx(0.9e-9 * e["ac"] + 4.6e-9 * e["mac"])
    assert rep["audit"]["spike_driven"] and {f["layer"] for f in rep["audit"]["findings"]} == \
        {"patch_embed.units.0.0", "head.0"}
    assert len(rep["firing_rates"]) == 4 + 5 + 2 and all(len(r["rate_per_step"]) == 2 for r in rep["firing_rates"])
    for key in ("raster", "firing_rates", "energy"):
        assert Path(rep["files"][key]).stat().st_size > 1000
    table = side_by_side({"a": rep, "b": rep})
    assert "+0.0" in table and "non-spike MACs (strict)" in table


def test_cli_report(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(checkpoint), "--dataset", "digits", "--out-dir", str(tmp_path),
                 "--convention", "neurobench", "--count-batches", "1", "--max-samples", "32",
                 "--batch-size", "32", "--no-plots", "--no-progress", "--e-mac", "3.7"]) == 0
    out = capsys.readouterr().out
    assert "spikingformer_tiny on digits" in out and "neurobench counting" in out and "spike-driven" in out
    assert json.loads((tmp_path / "report.json").read_text())["energy"]["e_mac_pj"] == 3.7
    assert main(["report", str(tmp_path / "missing.safetensors"), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err

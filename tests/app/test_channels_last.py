"""``--channels-last true``: the model's convolutions run channels-last, the same computation as NCHW up to float
rounding; checkpoints are stored contiguous, and a stopped channels-last run resumes to the weights of one that
never stopped."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spikeforge.app import TrainConfig
from spikeforge.app.build import data_from_config, model_from_config
from spikeforge.training import load_checkpoint
from tests.training.conftest import final_state, main_in_process

ARGS = ["train", "--dataset", "digits", "--model", "spiking_cnn_tiny", "--model-arg", "width=8", "--T", "2",
        "--encoding", "direct", "--epochs", "2", "--batch-size", "32", "--limit-train", "256", "--threads", "1",
        "--progress", "false", "--schedule", "constant", "--channels-last", "true"]


def test_the_model_is_channels_last_and_computes_what_nchw_does() -> None:
    out = []
    for cl in (False, True):
        cfg = TrainConfig(dataset="digits", model="spiking_cnn_tiny", model_args={"width": 8}, T=3,
                          encoding="direct", channels_last=cl)
        data = data_from_config(cfg)
        torch.manual_seed(0)
        model = model_from_config(cfg, data)
        conv = model.block2[0].weight
        assert conv.is_contiguous(memory_format=torch.channels_last) == cl and conv.is_contiguous() == (not cl)
        x = torch.stack([data.train[i][0] for i in range(16)]).float()
        y = torch.tensor([int(data.train[i][1]) for i in range(16)])
        loss = torch.nn.functional.cross_entropy(model(x).mean(0), y)
        loss.backward()
        out.append((float(loss.detach()), [p.grad.clone() for p in model.parameters()]))
    assert out[1][0] == pytest.approx(out[0][0], rel=1e-5)
    for a, b in zip(out[0][1], out[1][1]):
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-5)


def test_a_stopped_channels_last_run_resumes_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main_in_process(capsys, *ARGS, "--run-dir", str(tmp_path / "ref"))[0] == 0
    want_w, want_rows = final_state(tmp_path / "ref")
    stopped = tmp_path / "stopped"
    assert main_in_process(capsys, *ARGS, "--max-steps", "11", "--run-dir", str(stopped))[0] == 0
    ck = load_checkpoint(stopped / "checkpoints" / "last.safetensors")
    assert ck["meta"]["config"]["channels_last"] is True
    assert main_in_process(capsys, "train", "--resume", str(stopped), "--max-steps", "none")[0] == 0
    got_w, got_rows = final_state(stopped)
    assert all(torch.equal(got_w[k], want_w[k]) for k in want_w)
    assert got_rows == want_rows
    code, err = main_in_process(capsys, "train", "--resume", str(stopped), "--channels-last", "false")
    assert code == 2 and "--channels-last cannot change when a run resumes" in err[0]


def test_a_model_without_convolutions_says_the_flag_changes_nothing(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, err = main_in_process(capsys, "train", "--dataset", "digits", "--model", "spiking_mlp_tiny", "--T", "2",
                                "--epochs", "1", "--limit-train", "64", "--threads", "1", "--progress", "false",
                                "--channels-last", "true", "--run-dir", str(tmp_path / "run"))
    assert code == 0
    assert ("spikeforge: --channels-last: model spiking_mlp_tiny has no 4-d (convolution) weights; it runs as "
            "without it") in err

"""Bad configuration: one clear line naming the field and the choices, exit code 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from spikeforge.app import ConfigError, load_config
from spikeforge.cli import main
from tests.training.conftest import main_in_process, run_cli

BAD = [
    (["--model", "resnet9000"], "model", "spiking_cnn_tiny"),
    (["--dataset", "imagenet-x"], "dataset", "digits"),
    (["--neuron", "hodgkin"], "neuron", "lif"),
    (["--T", "0"], "T", ">= 1"),
    (["--encoding", "morse"], "encoding", "rate"),
    (["--dataset", "nmnist"], "data_root", "--data-root"),
    (["--dataset", "nmnist", "--data-root", "/no/such/folder"], "data_root", "not a folder"),
    (["--lr", "abc"], "lr", "float"),
    (["--model-arg", "widht=8"], "model_args", "widht"),
    (["--model-arg", "width"], "model_args", "KEY=VALUE"),
    (["--model", "spiking_cnn_tny"], "model", "did you mean 'spiking_cnn_tiny'"),
    (["--loss", "tte"], "loss", "did you mean 'tet'?"),
    (["--method", "bpt"], "method", "did you mean 'bptt'? (choose from: ann, bptt, dsr,"),
    (["--surrogate", "sigmiod"], "surrogate", "did you mean 'sigmoid'"),
    (["--memory", "cheap"], "memory", "choose from: default, lean"),
]


@pytest.mark.parametrize("args,field,hint", BAD, ids=[b[1] + "-" + str(i) for i, b in enumerate(BAD)])
def test_bad_config_one_line_exit_2_nothing_written(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    args: list[str], field: str, hint: str) -> None:
    run = tmp_path / "run"
    code, err = main_in_process(capsys, "train", *args, "--run-dir", str(run))
    assert code == 2
    assert len(err) == 1 and err[0].startswith(f"spikeforge: error: {field}:") and hint in err[0], err
    assert not run.exists()


def test_exit_code_through_the_real_command(tmp_path: Path) -> None:
    r = run_cli("train", "--model", "nope", "--run-dir", str(tmp_path / "r"))
    assert r.returncode == 2 and "model: unknown model 'nope'" in r.stderr
    assert not (tmp_path / "r").exists()


def test_yaml_then_flags(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("dataset: digits\nT: 6\nlr: 0.01\nckpt-every: 5\n")
    cfg = load_config(f, {"lr": "0.002"})
    assert (cfg.dataset, cfg.T, cfg.lr, cfg.ckpt_every) == ("digits", 6, 0.002, 5)
    f.write_text("bogus_field: 1\n")
    with pytest.raises(ConfigError, match="bogus_field: unknown field"):
        load_config(f)
    f.write_text("1: 2\n")                          # YAML reads the key as an integer
    with pytest.raises(ConfigError, match="1: unknown field '1'"):
        load_config(f)
    for text, msg in (("- T\n", "must hold a mapping"), ("T: [\n", "is not valid YAML")):
        f.write_text(text)
        with pytest.raises(ConfigError, match=msg):
            load_config(f)


def test_model_args_reach_the_factory_and_the_saved_config(tmp_path: Path) -> None:
    from spikeforge.app import data_from_config, model_from_config
    from spikeforge.cli import _model_args
    cfg = load_config(None, {"model": "spiking_cnn_tiny", "model_args": _model_args(["width=8"])})
    model = model_from_config(cfg, data_from_config(cfg))
    assert model.block1[0].out_channels == 8 and model.block2[0].out_channels == 16
    assert load_config(None, {"model_args": cfg.to_dict()["model_args"]}).model_args == {"width": 8}


def test_refuses_to_overwrite_an_existing_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)          # what a run leaves (a folder of unrelated files is no run)
    (run / "notes.txt").write_text("mine")
    assert main(["train", "--run-dir", str(run), "--model", "spiking_mlp_tiny", "--epochs", "1"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (run / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "notes.txt"]


def test_every_neuron_and_surrogate_name_builds() -> None:
    """The CLI's --neuron / --surrogate names all make a neuron (surrogates without ``alpha`` included)."""
    from spikeforge.app import TrainConfig, neuron_from_config, registries
    from spikeforge.surrogate import SURROGATES
    for neuron in registries()["neuron"]:
        for sg in SURROGATES:
            m = neuron_from_config(TrainConfig(neuron=neuron, surrogate=sg, alpha=3.0))
            assert m.surrogate.name == sg
            if "alpha" in m.surrogate.params():
                assert m.surrogate.alpha == 3.0

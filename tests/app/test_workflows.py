"""The workflows behind the commands: ``summary.json``, the thread count, ``spikeforge list``, ``--help``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from spikeforge.app import LISTS, TrainConfig, list_names, train
from spikeforge.cli import EXAMPLES, main


def _cfg(run: Path, **over) -> TrainConfig:
    kw = dict(dataset="digits", model="spiking_mlp_tiny", T=2, epochs=2, batch_size=64, limit_train=128,
              run_dir=str(run), progress=False, encoding="direct")
    return TrainConfig(**{**kw, **over})


def test_summary_json_and_thread_count(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    want = 1 if before != 1 else 2
    res, _, _ = train(_cfg(tmp_path / "run", threads=want))
    assert torch.get_num_threads() == before                      # train(threads=N) puts the count back
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    last = res.history[-1]
    assert s["test_accuracy"] == last["test_accuracy"] and s["best_val_accuracy"] == res.best_val
    assert s["epochs"] == 2 and s["steps"] == 4 and s["method"] == "bptt" and s["skipped_steps"] == 0
    assert s["wall_seconds"] > 0 and s["run_dir"] == str(tmp_path / "run")
    assert {"config.json", "metrics.csv", "checkpoints/last.safetensors", "checkpoints/best.safetensors",
            "summary.json"} <= set(s["files"])
    assert all((tmp_path / "run" / f).is_file() for f in s["files"])


def test_threads_are_restored_when_the_run_fails(tmp_path: Path) -> None:
    before = torch.get_num_threads()
    cfg = _cfg(tmp_path / "run", threads=1 if before != 1 else 2, model_args={"no_such_arg": 1})
    with pytest.raises(Exception, match="no_such_arg"):
        train(cfg)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("kind", sorted(LISTS))
def test_list_prints_every_registered_name(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", kind]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    names = [n for n, _ in list_names(kind)]
    assert [ln.split()[0] for ln in lines] == names == sorted(LISTS[kind])
    assert all(len(ln.split(None, 1)) == 2 for ln in lines), "every name has a description"


def test_list_of_an_unknown_kind_suggests(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "neuorns"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean 'neurons'" in err[0] and "surrogates" in err[0]


def test_neuron_kinds_are_listed() -> None:
    rows = dict(list_names("neurons"))
    assert rows["lif"].startswith("[scan]") and rows["psn"].startswith("[parallel]")


@pytest.mark.parametrize("cmd", sorted(EXAMPLES))
def test_help_ends_with_real_examples(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out.rstrip()
    assert out.endswith(EXAMPLES[cmd][-1]) and 2 <= len(EXAMPLES[cmd]) <= 3
    if cmd == "train":
        assert "--method picks how the model learns" in out and "bptt" in out     # the rule, and the choices
        assert "spiking_mlp_tiny" in out and "mse_rate" in out


def test_train_examples_name_only_real_choices() -> None:
    """The example command lines parse and validate (nothing is run)."""
    from spikeforge.app import load_config, validate
    from spikeforge.cli import _parser
    for line in EXAMPLES["train"]:
        args = _parser().parse_args(line.split()[1:])
        if args.resume is None:
            overrides = {k: v for k, v in vars(args).items() if k in TrainConfig.__dataclass_fields__ and v is not None}
            validate(load_config(None, overrides))

"""``spikeforge export``: a trained run to a NIR file that reproduces it; refusals are one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from spikeforge.app import TrainConfig, rebuild, train
from spikeforge.data import batch_loader, to_time_first
from spikeforge.export import from_nir
from spikeforge.layers import fold_bn_pairs
from tests.training.conftest import main_in_process

nir = pytest.importorskip("nir")


def _run(root: Path, model: str, epochs: int = 1, limit: int | None = 256, **model_args: object) -> Path:
    run = root / (model + "".join(f"-{k}={v}" for k, v in model_args.items()))
    train(TrainConfig(dataset="digits", model=model, T=4, epochs=epochs, limit_train=limit, lr=5e-3, progress=False,
                      threads=1, run_dir=str(run), encoding="direct", model_args=dict(model_args)))
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("export")
    _run(root, "spiking_mlp_tiny")
    _run(root, "spiking_cnn_tiny")
    _run(root, "spiking_cnn_tiny", epochs=3, limit=None, pool="avg")          # trained until both layers fire
    return root


def test_export_writes_a_graph_that_reproduces_the_run(runs: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mlp.nir"
    code, err = main_in_process(capsys, "export", str(runs / "spiking_mlp_tiny"), "-o", str(out), "--dt", "1e-4")
    assert code == 0, err
    graph = nir.read(out)
    assert graph.nodes["sn"].tau.flat[0] == pytest.approx(2e-4)     # tau = 2 steps of 0.1 ms
    rb = rebuild(runs / "spiking_mlp_tiny" / "checkpoints" / "best.safetensors", progress=False)
    x = torch.rand(4, 16, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(from_nir(out, dt=1e-4)(x), rb.model.eval()(x))


def test_the_trained_demo_cnn_with_average_pooling_round_trips_at_every_layer(runs: Path, tmp_path: Path) -> None:
    from spikeforge.app import export_checkpoint
    from tests.export.test_nir import _spikes

    run = runs / "spiking_cnn_tiny-pool=avg"
    export_checkpoint(run, tmp_path / "cnn.nir")
    rb = rebuild(run / "checkpoints" / "best.safetensors", progress=False)
    folded = rb.model.eval()
    fold_bn_pairs(folded)
    images = next(iter(batch_loader(rb.data.test, rb.data.kind, batch_size=128)))[0]
    x = to_time_first(images, rb.data.kind, 4, "direct")         # [4, 128, 1, 8, 8]: test digits at every step
    want, got = _spikes(folded, x), _spikes(from_nir(tmp_path / "cnn.nir").eval(), x)
    assert want.keys() == got.keys() == {"sn1", "sn2", "output"}
    for layer in ("sn1", "sn2"):
        assert 0 < want[layer].mean() < 1 and torch.equal(want[layer], got[layer]), layer
    assert torch.equal(want["output"], got["output"])


def test_an_existing_file_is_not_overwritten(runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "keep.nir"
    out.write_bytes(b"mine")
    code, err = main_in_process(capsys, "export", str(runs / "spiking_mlp_tiny"), "-o", str(out))
    assert code == 2 and err == [f"spikeforge: error: {out} exists; pass --overwrite to replace it"]
    assert out.read_bytes() == b"mine"
    assert main_in_process(capsys, "export", str(runs / "spiking_mlp_tiny"), "-o", str(out), "--overwrite")[0] == 0
    assert nir.read(out).nodes.keys() >= {"input", "output", "sn"}


@pytest.mark.parametrize("args,message", [
    (["spiking_cnn_tiny"], "pool1.0: MaxPool2d cannot be exported: NIR has no max pooling"),
    (["spiking_mlp_tiny", "--format", "onnx"], "unknown exporter 'onnx' (choose from: nir)"),
    (["spiking_mlp_tiny", "--dt", "0"], "--dt: the duration of one step must be a positive number of seconds"),
    (["spiking_mlp_tiny", "--dt", "nan"], "--dt: the duration of one step must be a positive number of seconds"),
    (["missing-run"], "missing-run"),
])
def test_export_refusals_are_one_line(runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      args: list[str], message: str) -> None:
    out = tmp_path / "m.nir"
    code, err = main_in_process(capsys, "export", str(runs / args[0]), "-o", str(out), *args[1:])
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not out.exists()


@pytest.mark.parametrize("out,message", [("", "-o/--out: an empty path"), (".", ". is a folder")])
def test_export_to_a_folder_or_nothing_is_refused(runs: Path, capsys: pytest.CaptureFixture[str], out: str,
                                                  message: str) -> None:
    code, err = main_in_process(capsys, "export", str(runs / "spiking_mlp_tiny"), "-o", out, "--overwrite")
    assert code == 2 and len(err) == 1 and message in err[0], err


def test_export_reports_what_it_wrote(runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from spikeforge.cli import main
    assert main(["export", str(runs / "spiking_mlp_tiny" / "checkpoints" / "last.safetensors"), "-o",
                 str(tmp_path / "m.nir")]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["nodes"] == 6 and rep["edges"] == 5 and rep["model"] == "spiking_mlp_tiny"


def test_import_gives_a_checkpoint_that_evaluates_like_the_run(runs: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """export -> import -> eval: the imported graph scores exactly what the run's checkpoint scores."""
    from spikeforge.app import evaluate_checkpoint

    run = runs / "spiking_cnn_tiny-pool=avg"
    assert main_in_process(capsys, "export", str(run), "-o", str(tmp_path / "cnn.nir"))[0] == 0
    code, err = main_in_process(capsys, "import", str(tmp_path / "cnn.nir"), "-o", str(tmp_path / "imp.safetensors"),
                                "--dataset", "digits", "--T", "4", "--encoding", "direct")
    assert code == 0, err
    capsys.readouterr()
    theirs = evaluate_checkpoint(tmp_path / "imp.safetensors")
    ours = evaluate_checkpoint(run / "checkpoints" / "best.safetensors")
    assert theirs["model"] == "nir-import" and theirs["test_samples"] == ours["test_samples"] == 355
    assert theirs["test_accuracy"] == ours["test_accuracy"] > 0.5
    (tmp_path / "cnn.nir").unlink()                             # the checkpoint holds the graph itself
    assert evaluate_checkpoint(tmp_path / "imp.safetensors")["test_accuracy"] == ours["test_accuracy"]


@pytest.mark.parametrize("args,message", [
    (["--dataset", "emulated-nmnist"], "model: nir-import cannot take emulated-nmnist's input of shape"),
    (["--dataset", "digits", "--dt", "-1"], "--dt: the duration of one step must be a positive number"),
    (["--dataset", "digitz"], "dataset: unknown dataset 'digitz'; did you mean 'digits'"),
])
def test_import_refusals_are_one_line_and_write_nothing(runs: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str], args: list[str],
                                                        message: str) -> None:
    assert main_in_process(capsys, "export", str(runs / "spiking_mlp_tiny"), "-o", str(tmp_path / "m.nir"))[0] == 0
    code, err = main_in_process(capsys, "import", str(tmp_path / "m.nir"), "-o", str(tmp_path / "c.safetensors"),
                                *args)
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "c.safetensors").exists()


def test_a_zoo_name_cannot_be_trained_as_an_imported_graph(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = main_in_process(capsys, "train", "--dataset", "digits", "--model", "nir-import")
    assert code == 2 and "unknown model 'nir-import'" in err[0]


def test_a_report_of_a_checkpoint_outside_a_run_stays_beside_it(tmp_path: Path) -> None:
    from spikeforge.app.report import default_report_dir
    assert default_report_dir(tmp_path / "run" / "checkpoints" / "best.safetensors") == tmp_path / "run" / "report"
    assert default_report_dir(tmp_path / "sub" / "imported.safetensors") == tmp_path / "sub" / "imported-report"


def test_import_takes_a_data_root_and_train_s_default_encoding(runs: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main_in_process(capsys, "export", str(runs / "spiking_mlp_tiny"), "-o", str(tmp_path / "m.nir"))[0] == 0
    code, err = main_in_process(capsys, "import", str(tmp_path / "m.nir"), "-o", str(tmp_path / "n.safetensors"),
                                "--dataset", "nmnist", "--data-root", str(tmp_path / "nowhere"))
    assert code == 2 and "nowhere is not a folder" in err[0], err
    from spikeforge.cli import main
    assert main(["import", str(tmp_path / "m.nir"), "-o", str(tmp_path / "d.safetensors"), "--dataset", "digits"]) == 0
    assert json.loads(capsys.readouterr().out)["encoding"] == TrainConfig().encoding


def test_a_checkpoint_that_appears_meanwhile_is_not_replaced(tmp_path: Path) -> None:
    from spikeforge.training import save_checkpoint
    (tmp_path / "c.safetensors").write_bytes(b"mine")
    with pytest.raises(FileExistsError):
        save_checkpoint(tmp_path / "c.safetensors", model={"w": torch.zeros(1)}, overwrite=False)
    assert (tmp_path / "c.safetensors").read_bytes() == b"mine"


def test_an_import_target_that_appears_meanwhile_is_one_line(runs: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import spikeforge.app.export as ex
    from spikeforge.training import save_checkpoint
    assert main_in_process(capsys, "export", str(runs / "spiking_mlp_tiny"), "-o", str(tmp_path / "m.nir"))[0] == 0
    target = tmp_path / "c.safetensors"

    def racing(path, **kw):                    # another process writes the target between check and write
        target.write_bytes(b"theirs")
        return save_checkpoint(path, **kw)

    monkeypatch.setattr(ex, "save_checkpoint", racing)
    code, err = main_in_process(capsys, "import", str(tmp_path / "m.nir"), "-o", str(target), "--dataset", "digits")
    assert code == 2 and err == [f"spikeforge: error: {target} appeared while importing; pass --overwrite to "
                                 "replace it"]
    assert target.read_bytes() == b"theirs"

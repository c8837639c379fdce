"""``spikeforge search`` refusals: one line, exit code 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.conftest import main_in_process


def test_cli_refuses_an_address_nobody_answers_on_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              ) -> None:
    args = ["search", "--space", "spenser", "--dataset", "digits", "--generations", "1", "--population", "2",
            "--epochs-per-candidate", "1", "--run-dir", str(tmp_path / "s")]
    pytest.importorskip("ray")
    code, err = main_in_process(capsys, *args, "--address", "127.0.0.1:9")
    assert code == 2 and err == ["spikeforge: error: --address 127.0.0.1:9: no Ray cluster answers there (Connection "
                                 "refused); start one with `ray start --head --port PORT` or leave --address out "
                                 "for a local instance"]
    code, err = main_in_process(capsys, *args[:2], "nope", *args[3:])
    assert code == 2 and err == ["spikeforge: error: unknown search space 'nope' (choose from: autospikformer, "
                                 "spenser)"]
    assert not (tmp_path / "s").exists()

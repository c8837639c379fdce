"""Every ``python`` block in the README runs as written (in a scratch folder)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

BLOCKS = re.findall(r"```python\n(.*?)```", (Path(__file__).parents[1] / "README.md").read_text(), re.S)


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_block_runs(i: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = BLOCKS[i].replace("/tmp/", f"{tmp_path}/")
    monkeypatch.chdir(tmp_path)
    if "def adex_step" in code:  # an excerpt of examples/custom_neuron.py (the harness runs the file)
        example = (Path(__file__).parents[1] / "examples" / "custom_neuron.py").read_text()
        missing = [ln for ln in code.splitlines() if ln.strip() and ln.strip() not in example]
        assert not missing, f"README excerpt drifted from examples/custom_neuron.py: {missing}"
        return
    exec(compile(code, f"README block {i}", "exec"), {"__name__": "readme"})

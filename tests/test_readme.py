"""The README: its quick start is the two commands, its Python runs as written, its links resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, re.S)


def test_quick_start_is_the_two_commands() -> None:
    first = re.search(r"```\n(.*?)```", README, re.S)
    assert first is not None
    assert [ln.split("#")[0].strip() for ln in first.group(1).strip().splitlines()] == ["make demo", "make test"]
    assert "make docs" in README


def test_readme_links_resolve() -> None:
    links = re.findall(r"\]\(([^)#:\s]+)\)", README)
    assert links, "the README points to the documentation pages"
    missing = [ln for ln in links if not (ROOT / ln).exists()]
    assert not missing, f"README links to missing files: {missing}"


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_block_runs(i: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[i], f"README block {i}", "exec"), {"__name__": "readme"})

"""Layers import one way: every spikeforge package imports only from the packages left of it."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ROOT
from tests.layering import ORDER, check, cycles

SRC = ROOT / "src"


def test_packages_import_only_to_their_left() -> None:
    problems = check(SRC)
    assert not problems, "\n".join(problems)


def test_every_package_has_a_place_in_the_order() -> None:
    placed = {p for tier in ORDER for p in tier}
    pkgs = {p.name for p in (SRC / "spikeforge").iterdir() if (p / "__init__.py").is_file()}
    mods = {p.stem for p in (SRC / "spikeforge").glob("*.py") if p.stem != "__init__"}
    assert pkgs | mods <= placed, f"not in the layer order: {sorted((pkgs | mods) - placed)}"


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        p = root / "spikeforge" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_the_checker_catches_a_bad_import(tmp_path: Path) -> None:
    """The checker itself: an upward import inside a function, a relative one, a sideways one between peers
    and a cycle are each reported; a clean tree gives nothing."""
    clean = _tree(tmp_path / "clean", {"core/__init__.py": "import torch\n",
                                       "models/__init__.py": "from ..core import x\nfrom spikeforge import layers\n",
                                       "layers/__init__.py": "from spikeforge.core import y\n"})
    assert check(clean) == []
    bad = _tree(tmp_path / "bad", {
        "core/__init__.py": "",
        "core/io.py": "def f():\n    from spikeforge.training import engine\n",          # inside a function
        "neurons/__init__.py": "from ..layers import fold\n",                              # relative, upward
        "learning/__init__.py": "import spikeforge.compress.prune\n",                      # a peer
        "compress/__init__.py": "from spikeforge.learning import dsr\n",                   # ... and back
        "layers/__init__.py": "",
        "training/__init__.py": "",
        "gadgets/__init__.py": "",                                                         # no place
    })
    problems = check(bad)
    assert any("core/io.py:2 imports spikeforge.training:" in p for p in problems), problems
    assert any("neurons/__init__.py:1 imports spikeforge.layers:" in p for p in problems), problems
    assert any("'learning' is a peer of 'compress'" in p for p in problems), problems
    assert any("cycle between packages: compress -> learning -> compress" in p for p in problems), problems
    assert any("'gadgets' has no place" in p for p in problems), problems
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_the_package_advertises_only_what_exists() -> None:
    import importlib

    import spikeforge
    present = {p.name for p in (SRC / "spikeforge").iterdir() if (p / "__init__.py").is_file()}
    present |= {p.stem for p in (SRC / "spikeforge").glob("*.py")} - {"__init__", "__main__"}
    assert spikeforge._SUBMODULES == present
    for name in sorted(spikeforge._SUBMODULES):
        assert getattr(spikeforge, name) is importlib.import_module(f"spikeforge.{name}")

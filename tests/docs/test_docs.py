"""The documentation site: every page's code runs, the reference covers every public name, the build is
strict and offline, and every registered learning method, compressor, exporter and search has a page."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import spikeforge

from .pages import DOCS, GENERATED, PAGE_LIMIT_S, ROOT, figures, pages, python_blocks, run_page

pytest.importorskip("mkdocs", reason="the [docs] extra (make test installs it)")
griffe = pytest.importorskip("griffe")

RUNNABLE = [p for p in pages() if python_blocks(p)]
# Each registry of plug-ins and the folder of docs/ that must hold a page per registered name. A package
# that does not exist yet is fine; one that exists must expose its registry under this name.
PLUGIN_PAGES = {
    ("spikeforge.training", "METHODS"): "methods",
    ("spikeforge.learning", "METHODS"): "methods",
    ("spikeforge.compress", "COMPRESSORS"): "compress",
    ("spikeforge.export", "EXPORTERS"): "export",
    ("spikeforge.search", "SEARCHES"): "search",
}
TUTORIALS = ["first-snn", "event-data", "custom-neuron", "training", "analysis"]


def public_modules() -> list[str]:
    """``spikeforge``'s subpackages and top-level modules: what the API reference must cover."""
    names = {f"spikeforge.{m}" for m in spikeforge._SUBMODULES}
    names |= {m.name for m in pkgutil.walk_packages(spikeforge.__path__, "spikeforge.") if m.ispkg}
    return sorted(names)


def referenced_modules() -> set[str]:
    return {m for page in (DOCS / "api").glob("*.md") for m in re.findall(r"^::: (\S+)", page.read_text(), re.M)}


def test_every_tutorial_exists_and_runs_code() -> None:
    missing = [t for t in TUTORIALS if DOCS / "tutorials" / f"{t}.md" not in RUNNABLE]
    assert not missing, f"tutorials missing or without a ```python block: {missing}"


@pytest.mark.parametrize("page", RUNNABLE, ids=lambda p: str(p.relative_to(DOCS)))
def test_page_code_runs(page: Path) -> None:
    run = run_page(page, timeout=2 * PAGE_LIMIT_S)
    assert run.returncode == 0, f"{page.relative_to(ROOT)} failed after {run.seconds:.1f} s:\n{run.output}"
    stale = [f.name for f in figures(page) if not f.exists() or f.stat().st_mtime < run.started - 1]
    assert not stale, f"{page.relative_to(ROOT)} shows figures its code did not write: {stale}"
    print(f"{page.relative_to(DOCS)}: {run.seconds:.1f} s")


def test_every_package_is_in_the_reference() -> None:
    missing = sorted(set(public_modules()) - referenced_modules())
    assert not missing, f"packages missing from docs/api/: {missing}"


def test_every_public_name_has_a_docstring() -> None:
    tree = griffe.load("spikeforge", search_paths=[str(ROOT / "src")], resolve_aliases=True,
                       resolve_external=False)
    undocumented = []
    for name in public_modules():
        node = tree[name.removeprefix("spikeforge.")]
        if not node.docstring:
            undocumented.append(name)
        for member in getattr(importlib.import_module(name), "__all__", []):
            doc = node[member].docstring
            if doc is None or not doc.value.strip():
                undocumented.append(f"{name}.{member}")
    assert not undocumented, f"public names without a docstring: {undocumented}"


def test_every_plugin_has_a_page() -> None:
    missing = []
    for (module, registry), folder in PLUGIN_PAGES.items():
        if importlib.util.find_spec(module) is None:
            continue
        reg = getattr(importlib.import_module(module), registry, None)
        assert reg is not None, f"{module} exists but has no registry {registry} (tests/docs/test_docs.py)"
        missing += [f"docs/{folder}/{n}.md" for n in reg if not (DOCS / folder / f"{n}.md").exists()]
    assert not missing, f"registered without a page: {missing}"


def test_page_code_helpers_find_blocks_and_figures(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("x\n```python\na = 1\n```\n```text\nno\n```\n```python\nb = 2\n```\n"
                    "![f](../_generated/p-f.png) and ![g](_generated/g.png)\n")
    assert python_blocks(page) == ["a = 1\n", "b = 2\n"]
    assert figures(page) == [GENERATED / "p-f.png", GENERATED / "g.png"]


_EXTERNAL = re.compile(r"""(?:<script[^>]*\ssrc=|<link[^>]*\shref=|<img[^>]*\ssrc=|@import\s+(?:url\()?|url\()"""
                       r"""\s*["']?((?:https?:)?//[^"')\s>]+)""", re.I)


def test_strict_offline_build(tmp_path: Path) -> None:
    """``make docs``'s build: strict (a broken link or reference fails), every public name has an anchor
    in the reference, and no page loads a script, style sheet, font or image from the network."""
    for page in RUNNABLE:  # figures the build needs, when this test runs alone
        if not all(f.exists() for f in figures(page)):
            assert run_page(page).returncode == 0
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(site)],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    external = sorted({f"{f.relative_to(site)}: {url}" for f in site.rglob("*")
                       if f.suffix in (".html", ".css", ".js") for url in _EXTERNAL.findall(f.read_text())})
    assert not external, f"pages load from the network: {external[:20]}"
    anchors = set().union(*(re.findall(r'id="(spikeforge\.[^"]+)"', f.read_text())
                            for f in (site / "api").glob("*.html")))
    absent = []
    for m in public_modules():
        for n in getattr(importlib.import_module(m), "__all__", []):
            obj = getattr(importlib.import_module(m), n)
            if inspect.ismodule(obj) and hasattr(obj, "__path__"):
                continue                                    # a subpackage: it has its own section
            # a function re-exported over its own submodule's name (analysis.record) is rendered from there
            where = {f"{m}.{n}", f"{getattr(obj, '__module__', m)}.{n}"}
            if not where & anchors:
                absent.append(f"{m}.{n}")
    assert not absent, f"public names absent from the built reference: {absent}"


def test_offline_pattern_catches_network_loads() -> None:
    page = ('<script src="https://cdn.x/a.js"></script><link rel="stylesheet" href="//fonts.x/css">'
            '<style>@font-face{src:url("https://f.x/a.woff2")}</style><a href="https://github.com">ok</a>'
            '<svg xmlns="http://www.w3.org/2000/svg"></svg><script src="assets/local.js"></script>')
    assert _EXTERNAL.findall(page) == ["https://cdn.x/a.js", "//fonts.x/css", "https://f.x/a.woff2"]


def test_benchmarks_page_shows_every_script_with_its_machine() -> None:
    page = (DOCS / "benchmarks.md").read_text()
    scripts = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem != "record")
    missing = [s for s in scripts if f'--8<-- "benchmarks/{s}.txt"' not in page]
    assert not missing, f"docs/benchmarks.md does not include the output of {missing}"
    for s in scripts:
        lines = (DOCS / "benchmarks" / f"{s}.txt").read_text().splitlines()
        assert lines[0] == f"$ python benchmarks/{s}.py" and " on " in lines[1] and "torch " in lines[1], (
            f"docs/benchmarks/{s}.txt is not benchmarks/record.py's output (command, date and machine first)")

"""The documentation's pages as the tests see them: their Python blocks, run as one script per page.

Every ```` ```python ```` block of a page in ``docs/`` runs, in order, as one script in a fresh interpreter
whose working folder is ``docs/`` (so ``plt.savefig("_generated/x.png")`` lands where the page's
``![…](../_generated/x.png)`` finds it at build time) with a private ``SPIKEFORGE_CACHE``. Code shown to
readers that must not run is fenced ```` ```text ```` or ```` ```bash ````.

``python -m tests.docs.pages`` runs every page whose figures are missing (``make docs`` on a fresh clone);
``--all`` runs every page.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
GENERATED = DOCS / "_generated"
PAGE_LIMIT_S = 30.0  # what a tutorial may take on the 2-core CI machine
_FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.S | re.M)
_FIGURE = re.compile(r"\]\((?:\.\./)*_generated/([^)\s]+)\)")


def pages() -> list[Path]:
    """Every Markdown page of the site, ``_generated`` excluded."""
    return sorted(p for p in DOCS.rglob("*.md") if GENERATED not in p.parents)


def python_blocks(page: Path) -> list[str]:
    return _FENCE.findall(page.read_text())


def figures(page: Path) -> list[Path]:
    """The generated figures a page shows."""
    return [GENERATED / name for name in _FIGURE.findall(page.read_text())]


@dataclass
class PageRun:
    page: Path
    returncode: int
    seconds: float
    output: str
    started: float  # time.time() when the run began, to tell fresh figures from stale ones


def run_page(page: Path, timeout: float = 4 * PAGE_LIMIT_S) -> PageRun:
    """Run a page's Python blocks as one script; the script's path names the page in tracebacks."""
    GENERATED.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sf-docs-") as tmp:
        script = Path(tmp) / f"docs_{page.stem.replace('-', '_')}.py"   # not the name of a module it imports
        script.write_text("\n\n".join(python_blocks(page)))
        env = {**os.environ, "SPIKEFORGE_CACHE": str(Path(tmp) / "cache"), "MPLBACKEND": "Agg"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
        started, start = time.time(), time.perf_counter()
        try:
            done = subprocess.run(
                [sys.executable, str(script)], cwd=DOCS, env=env, capture_output=True, text=True, timeout=timeout
            )
            code, out = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired as e:
            code, out = -1, f"{page}: still running after {timeout:.0f} s\n{e.stdout or ''}{e.stderr or ''}"
        return PageRun(page, code, time.perf_counter() - start, out, started)


def main(argv: list[str]) -> int:
    todo = [p for p in pages() if python_blocks(p) and ("--all" in argv or not all(f.exists() for f in figures(p)))]
    for page in todo:
        run = run_page(page)
        print(f"{page.relative_to(ROOT)}: {'ok' if run.returncode == 0 else 'FAILED'} in {run.seconds:.1f} s")
        if run.returncode != 0:
            print(run.output, file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The import order of spikeforge's packages, and a checker for it (used by ``test_layering.py``).

Lowest first; a package may import only from tiers to its left. Packages in one tier are peers and do
not import each other. The README and docs/api/index.md state the same order.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ORDER: list[tuple[str, ...]] = [
    ("core",), ("surrogate",), ("kernels",), ("neurons",), ("encode",), ("data",), ("layers",), ("models",),
    ("analysis",), ("training",), ("learning", "compress"), ("export",), ("search",), ("app",), ("cli",),
    ("__main__",),
]
TIER = {pkg: k for k, tier in enumerate(ORDER) for pkg in tier}


def _module_name(path: Path, src: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(src).with_suffix("").parts)
    is_pkg = parts[-1] == "__init__"
    if is_pkg:
        parts = parts[:-1]
    return ".".join(parts), is_pkg


def imports_of(path: Path, src: Path) -> Iterator[tuple[int, str]]:
    """``(line, absolute module)`` of every import in the file, at any depth (inside functions too)."""
    name, is_pkg = _module_name(path, src)
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if node.module is None:      # from . import a, b: each name may be a subpackage
                for a in node.names:
                    yield node.lineno, f"{mod}.{a.name}"
            else:
                yield node.lineno, mod


def package(module: str, top: str) -> str | None:
    """The first-level package of a ``top.*`` module (``None`` for ``top`` itself)."""
    parts = module.split(".")
    return parts[1] if parts[0] == top and len(parts) > 1 else None


def check(src: Path, top: str = "spikeforge") -> list[str]:
    """Every import that goes right-to-left or sideways in ``ORDER``, every package without a place in it,
    and every cycle between packages: one line each (empty when the tree is layered)."""
    problems: list[str] = []
    edges: dict[str, set[str]] = {}
    for path in sorted((src / top).rglob("*.py")):
        mod, _ = _module_name(path, src)
        here = package(mod, top)
        if here is None:
            continue           # the package root only re-exports lazily
        if here not in TIER:
            problems.append(f"{path.relative_to(src)}: package {here!r} has no place in the layer order")
            continue
        for line, target in imports_of(path, src):
            there = package(target, top)
            if there is None or there == here:
                continue
            edges.setdefault(here, set()).add(there)
            if there not in TIER:
                problems.append(f"{path.relative_to(src)}:{line} imports {target}: no layer {there!r}")
            elif TIER[there] >= TIER[here]:
                how = "a peer of" if TIER[there] == TIER[here] else "a layer above"
                problems.append(f"{path.relative_to(src)}:{line} imports {target}: {there!r} is {how} {here!r}")
    problems += [f"import cycle between packages: {' -> '.join(c)}" for c in cycles(edges)]
    return problems


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of packages (Tarjan), as ``[a, b, ..., a]``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1 or v in edges.get(v, ()):
                found.append(sorted(group) + [sorted(group)[0]])

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found

"""Shared fixtures: seeding, the real recordings beside the project, peer availability."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

# Without a GPU, Triton's interpreter runs the generated GPU kernels on CPU tensors, so the correctness
# table checks the triton backend in CI too. Must be set before anything imports triton.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

ROOT = Path(__file__).resolve().parents[1]
EVENTS_DIR = ROOT.parent / "shared" / "data" / "events"


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# Suites of small tensors run single-threaded: on a shared 2-core machine a second OpenMP thread mostly
# waits at barriers (measured: the model tests take 31 s on one thread, 170 s on two under load).
SINGLE_THREADED = {"layers", "models", "analysis", "app", "learning"}


@pytest.fixture(autouse=True)
def _one_thread_for_small_suites(request: pytest.FixtureRequest) -> Iterator[None]:
    """Also puts back the thread count after every test: ``train(threads=…)`` sets it for the process, and
    a leaked count changed a later test's floating-point reduction order (and its outcome)."""
    n = torch.get_num_threads()
    if Path(str(request.node.fspath)).parent.name in SINGLE_THREADED:
        torch.set_num_threads(1)
    yield
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


@pytest.fixture
def events_dir() -> Path:
    """``../shared/data/events`` (real recordings); the test is skipped when the folder is absent."""
    if not EVENTS_DIR.is_dir():
        pytest.skip(f"real recordings not found at {EVENTS_DIR}")
    return EVENTS_DIR


def real_file(name: str) -> Path:
    """Path of one real recording, skipping the calling test when it is absent."""
    p = EVENTS_DIR / name
    if not p.is_file():
        pytest.skip(f"real recording {p} not found")
    return p

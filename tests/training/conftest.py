"""Helpers for the training tests: run the CLI in a subprocess, read checkpoints, make event folders."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import ROOT


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: int = 600,
            module: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [*(module or [sys.executable, "-m", "spikeforge"]), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})})


def final_state(run: Path) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """A run's last checkpoint weights and its ``metrics.csv`` rows without the timing columns: what two runs
    that learned the same share exactly."""
    from spikeforge.training import load_checkpoint
    ck = load_checkpoint(run / "checkpoints" / "last.safetensors")
    with open(run / "metrics.csv") as f:
        rows = [{k: v for k, v in r.items() if k not in ("seconds", "samples_per_s")} for r in csv.DictReader(f)]
    return ck["model"], rows


def main_in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    """``spikeforge.cli.main(args)`` in this process: its exit code and the lines it wrote to stderr."""
    from spikeforge.cli import main
    code = main(list(args))
    return code, capsys.readouterr().err.strip().splitlines()


def write_nmnist_folder(root: Path, per_class: int = 7, seed: int = 0) -> Path:
    """A tiny N-MNIST-layout folder of real .bin files, emulated from scikit-learn digits."""
    from spikeforge.data import EmulatedNMNIST, write_events
    rng = np.random.default_rng(seed)
    for split, train in (("Train", True), ("Test", False)):
        ds = EmulatedNMNIST(source="digits", train=train, seed=seed)
        labels = np.array([ds.labels[i] for i in range(len(ds))]) if hasattr(ds, "labels") else None
        counts = dict.fromkeys(range(10), 0)
        for i in rng.permutation(len(ds)):
            ev, label = ds[int(i)]
            if labels is not None:
                label = int(labels[i])
            if counts[label] >= per_class:
                continue
            counts[label] += 1
            d = root / split / str(label)
            d.mkdir(parents=True, exist_ok=True)
            write_events(d / f"{int(i):05d}.bin", ev)
            if all(c >= per_class for c in counts.values()):
                break
    return root


@pytest.fixture(scope="session")
def nmnist_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_nmnist_folder(tmp_path_factory.mktemp("nmnist"))

"""``keep_freed_memory``: after it, a block freed in one step is reused by the next without page faults."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

_PROBE = """
import resource, sys, torch
from spikeforge.core import keep_freed_memory
if sys.argv[1] == "kept":
    assert keep_freed_memory() is None
    assert keep_freed_memory() is None          # once per process; the same answer again
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def step():                                    # a step's activations: allocated, written, freed
    blocks = [torch.ones(5 << 20) for _ in range(6)]
    del blocks
for _ in range(3):                              # glibc's default raises its threshold on the first frees
    step()
f0 = faults()
for _ in range(10):
    step()
print((faults() - f0) / 10)
"""


@pytest.mark.skipif(platform.system() != "Linux" or not platform.libc_ver()[0].startswith("glibc"),
                    reason="glibc's allocator")
def test_freed_blocks_are_reused_without_page_faults() -> None:
    def faults_per_step(mode: str) -> float:
        r = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return float(r.stdout.split()[-1])
    pages = 6 * (5 << 20) * 4 // 4096             # the six blocks: 120 MiB of 4 KiB pages
    # glibc's defaults trim the freed top of the heap and fault it in again next step: the whole 120 MiB in most
    # processes (in about a third, little: it depends on where the heap lies, so up to eight tries)
    system: list[float] = []
    while len(system) < 8 and (not system or system[-1] <= 0.5 * pages):
        system.append(faults_per_step("system"))
    assert system[-1] > 0.5 * pages, system
    kept = [faults_per_step("kept") for _ in range(3)]
    assert max(kept) < 0.02 * pages, kept


def test_opt_out_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    r = subprocess.run([sys.executable, "-c", "from spikeforge.core import keep_freed_memory as k; print(k())"],
                       capture_output=True, text=True, timeout=120, env={**__import__("os").environ,
                                                                         "SPIKEFORGE_MALLOC": "system"})
    assert r.returncode == 0 and r.stdout.strip() == "SPIKEFORGE_MALLOC=system", r.stderr

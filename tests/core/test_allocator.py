"""``keep_freed_memory``: after it, a block freed in one step is reused by the next without page faults."""

from __future__ import annotations

import os
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
        # glibc's threshold fixed at 128 KiB: every block of the step is mapped afresh (its default threshold rises
        # with the blocks freed, and then trims the heap in some processes and not in others)
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
        r = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 0, r.stderr
        return float(r.stdout.split()[-1])
    pages = 6 * (5 << 20) * 4 // 4096             # the six blocks: 120 MiB of 4 KiB pages
    system = faults_per_step("system")
    assert system > 0.9 * pages, system            # the probe sees every page faulted in again
    kept = faults_per_step("kept")                 # keep_freed_memory overrides the threshold: no page faults
    assert kept < 0.02 * pages, kept


def test_opt_out_by_environment() -> None:
    r = subprocess.run([sys.executable, "-c", "from spikeforge.core import keep_freed_memory as k; print(k())"],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "SPIKEFORGE_MALLOC": "system"})
    assert r.returncode == 0 and r.stdout.strip() == "SPIKEFORGE_MALLOC=system", r.stderr


def test_a_wrong_value_is_refused_in_one_line() -> None:
    r = subprocess.run([sys.executable, "-c", "from spikeforge.core import keep_freed_memory as k; k()"],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "SPIKEFORGE_MALLOC": "sytem"})
    assert r.returncode != 0 and "SPIKEFORGE_MALLOC='sytem': expected 'system'" in r.stderr

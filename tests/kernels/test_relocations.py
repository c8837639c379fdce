"""Compiled kernels reach their constants and callees through 64-bit absolute addresses only.

MCJIT places a kernel's code and its constant pools in separate allocations; in a long process they can land
more than 2 GiB apart, where a 32-bit PC-relative relocation cannot reach, and MCJIT then aborts the process
(it happened in Ray workers after a few dozen search candidates). The large code model with static relocation
makes every relocation ``R_X86_64_64``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import spikeforge.kernels.llvm_kernels as K
from spikeforge.kernels.driver import KernelCache
from spikeforge.neurons import LIF


def test_kernel_objects_hold_only_absolute_relocations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("readelf") is None:
        pytest.skip("readelf (binutils) is not installed")
    monkeypatch.setenv("SPIKEFORGE_CACHE", str(tmp_path / "cache"))
    objs: list[bytes] = []
    real = K._link

    def keep(obj: bytes, *names: str) -> list[int]:
        objs.append(obj)
        return real(obj, *names)

    monkeypatch.setattr(K, "_link", keep)
    monkeypatch.setattr(KernelCache, "get", lambda self, spec, build: build(spec))     # build, even if built
    x = torch.randn(6, 3, 17, requires_grad=True)
    LIF(tau=3.7, v_threshold=0.61, backend="cpu")(x).sum().backward()
    assert objs, "no kernel was compiled"
    (tmp_path / "k.o").write_bytes(objs[0])
    out = subprocess.run(["readelf", "-rW", str(tmp_path / "k.o")], capture_output=True, text=True, check=True).stdout
    kinds = {line.split()[2] for line in out.splitlines() if "R_X86_64" in line}
    assert kinds == {"R_X86_64_64"}, kinds

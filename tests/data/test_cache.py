"""The cache: keys follow parameters, entries are atomic, damage is detected, rebuilt and reported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from spikeforge.data.cache import CachedDataset, CacheRepairWarning, cache_key, describe

ROOT = Path(__file__).resolve().parents[2]


class Counts:
    """``n`` samples: sample ``i`` is a seeded integer vector; label ``i % 3``."""

    def __init__(self, n: int = 12, scale: int = 1) -> None:
        self.n, self.scale = n, scale

    def cache_identity(self) -> dict:
        return {"dataset": "Counts", "n": self.n, "scale": self.scale}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        rng = np.random.default_rng(i)
        return rng.integers(0, 50, size=(2, 5)) * self.scale, i % 3


@dataclass(frozen=True)
class Scale:
    """float32 counts: ``gain · x + offset``."""

    gain: float = 2.0
    offset: float = 0.0

    def __call__(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(self.gain * x + self.offset, dtype=torch.float32)


def reference(ds: Counts, tf) -> list[torch.Tensor]:
    return [tf(ds[i][0]) for i in range(len(ds))]


def stored(cache: CachedDataset, i: int) -> np.ndarray:
    return np.load(cache.dir / f"{i:08d}.npy")


def test_build_then_read_gives_exact_tensors_in_compact_storage(tmp_path):
    ds, tf = Counts(), Scale()
    c = CachedDataset(ds, tf, tmp_path, progress=False, workers=1)
    rep = c.build()
    assert rep.built == 12 and not rep.rebuilt_corrupt and not rep.rebuilt_unrecorded
    ref = reference(ds, tf)
    for i in range(12):
        x, label = c[i]
        assert x.dtype == torch.float32 and torch.equal(x, ref[i]) and label == i % 3
    assert stored(c, 0).dtype == np.uint8  # values 0..98, integral: stored as uint8
    manifest = json.loads((c.dir / "manifest.json").read_text())
    e = manifest["entries"]["3"]
    assert e["dtype"] == "uint8" and e["orig_dtype"] == "float32" and e["shape"] == [2, 5]
    assert e["size"] == (c.dir / "00000003.npy").stat().st_size
    # reopening reads without building, and can cast at load time
    again = CachedDataset(ds, tf, tmp_path, progress=False, load_dtype=torch.float64)
    assert again.build().built == 0 and again[5][0].dtype == torch.float64


@pytest.mark.parametrize("scale,gain,offset,dtype", [
    (100, 2.0, 0.0, "uint16"),   # up to 9,800
    (1, 1.0, -60.0, "int8"),     # -60..-11
    (1, 0.5, 0.0, "float32"),    # halves are not integers: kept exact
])
def test_compact_dtype_is_lossless(tmp_path, scale, gain, offset, dtype):
    ds, tf = Counts(6, scale), Scale(gain, offset)
    c = CachedDataset(ds, tf, tmp_path, progress=False, workers=1)
    c.build()
    assert stored(c, 2).dtype == np.dtype(dtype)
    for i, r in enumerate(reference(ds, tf)):
        assert torch.equal(c[i][0], r)


def test_key_follows_parameters_not_object_identity(tmp_path):
    ds = Counts()
    a = CachedDataset(ds, Scale(2.0), tmp_path, progress=False)
    assert CachedDataset(Counts(), Scale(2.0), tmp_path, progress=False).key == a.key
    assert CachedDataset(ds, Scale(3.0), tmp_path, progress=False).key != a.key
    assert CachedDataset(ds, Scale(2.0), tmp_path, version="2", progress=False).key != a.key
    assert CachedDataset(Counts(scale=2), Scale(2.0), tmp_path, progress=False).key != a.key
    # functions are keyed by their code: two lambdas with different bodies differ
    f1, f2 = (lambda x: torch.as_tensor(x)), (lambda x: torch.as_tensor(x + 1))
    assert describe(f1) != describe(f2)
    assert cache_key({"a": 1, "b": [1, 2]}) == cache_key({"b": [1, 2], "a": 1})
    assert describe(Scale(2.0)) == {"type": "tests.data.test_cache.Scale",
                                    "fields": {"gain": 2.0, "offset": 0.0}}


class Opaque:
    __slots__ = ()

    def __call__(self, x):
        return torch.as_tensor(x)


def test_unstable_transform_needs_an_explicit_key(tmp_path):
    with pytest.raises(ValueError, match="cannot derive a stable key"):
        CachedDataset(Counts(), Opaque(), tmp_path, progress=False)
    c = CachedDataset(Counts(), Opaque(), tmp_path, key="opaque-v1", progress=False)
    assert torch.equal(c[0][0], torch.as_tensor(Counts()[0][0]))
    with pytest.raises(ValueError, match="dataset_id"):
        CachedDataset([(np.zeros(2), 0)], Scale(), tmp_path)


def test_corrupt_and_truncated_entries_are_rebuilt_and_reported(tmp_path):
    ds, tf = Counts(), Scale()
    c = CachedDataset(ds, tf, tmp_path, progress=False, workers=1)
    c.build()
    p4, p7 = c.dir / "00000004.npy", c.dir / "00000007.npy"
    data = bytearray(p4.read_bytes())
    data[-1] ^= 0xFF  # flip bits in the payload: same size, wrong hash
    p4.write_bytes(bytes(data))
    p7.write_bytes(p7.read_bytes()[:40])  # truncated mid-header
    c2 = CachedDataset(ds, tf, tmp_path, progress=False, workers=1)
    ref = reference(ds, tf)
    with pytest.warns(CacheRepairWarning, match="entry 4 .*sha256 mismatch"):
        assert torch.equal(c2[4][0], ref[4])
    with pytest.warns(CacheRepairWarning, match="entry 7 .*truncated"):
        assert torch.equal(c2[7][0], ref[7])
    assert c2.report.rebuilt_corrupt == [4, 7]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(c2[4][0], ref[4]) and torch.equal(c2[7][0], ref[7])


def test_lazy_entries_use_sidecars_that_build_folds_in(tmp_path):
    ds, tf = Counts(), Scale()
    c = CachedDataset(ds, tf, tmp_path, progress=False)
    c[2], c[9]
    assert sorted(p.name for p in c.dir.glob("*.json")) == ["00000002.json", "00000009.json"]
    assert not (c.dir / "manifest.json").exists()
    # an instance opened earlier (another DataLoader worker) picks the sidecar up: no rebuild
    early = CachedDataset(ds, tf, tmp_path, progress=False)
    c[5]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(early[5][0], c[5][0]) and early.report.built == 0
    c2 = CachedDataset(ds, tf, tmp_path, progress=False, workers=1)
    assert c2.build().built == 9  # 2, 5 and 9 are known from their sidecars
    assert [p.name for p in c2.dir.glob("*.json")] == ["manifest.json"]
    assert len(json.loads((c2.dir / "manifest.json").read_text())["entries"]) == 12


def test_parallel_build_equals_inline_build(tmp_path):
    ds, tf = Counts(40), Scale(3.0, 1.0)
    a = CachedDataset(ds, tf, tmp_path / "a", progress=False, workers=1, chunk_size=8)
    b = CachedDataset(ds, tf, tmp_path / "b", progress=False, workers=2, chunk_size=8)
    a.build()
    assert b.build().built == 40
    ma = json.loads((a.dir / "manifest.json").read_text())["entries"]
    mb = json.loads((b.dir / "manifest.json").read_text())["entries"]
    assert ma == mb  # same bytes (sha256) for every entry


WRITER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    import os
    import spikeforge.data.cache as cache
    from tests.data.test_cache import Counts, Scale

    real = os.replace
    def slow_replace(tmp, final):
        if str(final).endswith("00000022.npy"):
            time.sleep(600)           # killed here: a written temp file, not yet renamed
        elif str(final).endswith(".npy"):
            time.sleep(0.1)           # ~3 chunks per manifest flush
        real(tmp, final)
    os.replace = slow_replace
    c = cache.CachedDataset(Counts(40), Scale(3.0, 1.0), {cache_dir!r}, workers=1,
                            progress=False, chunk_size=4)
    c.build()
""")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_killed_writer_is_detected_rebuilt_and_reported(tmp_path):
    """SIGKILL a building process mid-write; reopening finds the leftover temp file, the entries
    renamed after the last manifest flush, and a damaged entry, rebuilds them and says so; the
    result equals a clean build."""
    ds, tf = Counts(40), Scale(3.0, 1.0)
    clean = CachedDataset(ds, tf, tmp_path / "clean", progress=False, workers=1)
    clean.build()
    cache_dir = tmp_path / "killed"
    key_dir = cache_dir / clean.key
    proc = subprocess.Popen([sys.executable, "-c", WRITER.format(root=str(ROOT),
                                                                 cache_dir=str(cache_dir))],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 60
        while not list(key_dir.glob(".00000022.npy.*.tmp")):
            assert proc.poll() is None, "writer exited early"
            assert time.monotonic() < deadline, "writer never reached entry 22"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    recorded = {int(k) for k in json.loads((key_dir / "manifest.json").read_text())["entries"]}
    on_disk = {int(p.stem) for p in key_dir.glob("[0-9]*.npy")}
    unrecorded = sorted(on_disk - recorded)
    assert recorded and {20, 21} <= set(unrecorded) and 22 not in on_disk
    victim = min(recorded)
    (key_dir / f"{victim:08d}.npy").write_bytes(b"\x93NUMPY")  # and a truncated entry

    with pytest.warns(CacheRepairWarning, match="removed 1 partial write"):
        c = CachedDataset(ds, tf, cache_dir, progress=False, workers=1)
    with pytest.warns(CacheRepairWarning) as caught:
        rep = c.build()
    assert rep.removed_partial == 1
    assert rep.rebuilt_unrecorded == unrecorded and rep.rebuilt_corrupt == [victim]
    assert rep.built == 40 - len(recorded) + 1
    assert any("unrecorded" in str(w.message) for w in caught)
    assert not list(key_dir.glob("*.tmp"))
    for i in range(40):
        assert torch.equal(c[i][0], clean[i][0]) and c[i][1] == clean[i][1]

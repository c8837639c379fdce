"""The cache never serves stale or tampered data: closures and globals are keyed by their values, every
field a record returns is checksummed, builders take turns, pool workers die with their parent."""

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

from spikeforge.data.cache import CachedDataset, CacheRepairWarning, describe
from tests.data.test_cache import Counts, Scale

ROOT = Path(__file__).resolve().parents[2]
OFFSET = 1.0


def scaled_by(k: float):
    return lambda x: torch.as_tensor(x * k, dtype=torch.float32)


def shifted(x):
    return torch.as_tensor(x + OFFSET, dtype=torch.float32)


def test_closures_and_globals_are_keyed_by_their_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = Counts()
    two, three = CachedDataset(ds, scaled_by(2.0), tmp_path, progress=False), \
        CachedDataset(ds, scaled_by(3.0), tmp_path, progress=False)
    assert two.key != three.key
    assert torch.equal(two[1][0], torch.as_tensor(ds[1][0] * 2.0, dtype=torch.float32))
    assert torch.equal(three[1][0], torch.as_tensor(ds[1][0] * 3.0, dtype=torch.float32))   # not two's tensors
    before = CachedDataset(ds, shifted, tmp_path, progress=False).key
    monkeypatch.setattr(sys.modules[__name__], "OFFSET", 5.0)
    assert CachedDataset(ds, shifted, tmp_path, progress=False).key != before


class Opaque:
    __slots__ = ()


def test_a_closure_over_something_undescribable_is_refused(tmp_path: Path) -> None:
    thing = Opaque()
    with pytest.raises(ValueError, match=r"variable 'thing' captured by .*make the transform a class holding its "
                                         r"parameters \(a dataclass\), or pass key="):
        CachedDataset(Counts(), lambda x: torch.as_tensor(x) if thing else None, tmp_path, progress=False)
    assert describe(Scale(2.0)) == {"type": "tests.data.test_cache.Scale", "fields": {"gain": 2.0, "offset": 0.0}}


def test_an_edited_label_or_dtype_in_the_manifest_is_caught(tmp_path: Path) -> None:
    ds, tf = Counts(), Scale()
    c = CachedDataset(ds, tf, tmp_path, progress=False, workers=1)
    c.build()
    clean = c.manifest_path.read_text()
    m = json.loads(clean)
    m["entries"]["4"]["label"] = 2 if ds[4][1] != 2 else 0
    m["entries"]["5"]["orig_dtype"] = "float64"
    c.manifest_path.write_text(json.dumps(m))
    with pytest.warns(CacheRepairWarning) as caught:         # build() finds both, in one summary warning
        rep = CachedDataset(ds, tf, tmp_path, progress=False, workers=1).build()
    assert len(caught) == 1 and "2 record altered" in str(caught[0].message) and rep.rebuilt_corrupt == [4, 5]
    assert c.manifest_path.read_text() == clean
    c.manifest_path.write_text(json.dumps(m))
    c2 = CachedDataset(ds, tf, tmp_path, progress=False, workers=1)
    with pytest.warns(CacheRepairWarning, match="entry 4 .*record altered"):     # and so does a read
        assert c2[4][1] == ds[4][1]
    with pytest.warns(CacheRepairWarning, match="entry 5 .*record altered"):
        assert c2[5][0].dtype == torch.float32


@dataclass(frozen=True)
class Slow:
    """``Scale`` that takes its time (so a build can be interrupted or raced)."""

    seconds: float = 0.05

    def __call__(self, x: np.ndarray) -> torch.Tensor:
        time.sleep(self.seconds)
        return torch.as_tensor(2.0 * x, dtype=torch.float32)


BUILDER = textwrap.dedent("""
    import sys, warnings
    sys.path.insert(0, {root!r})
    from spikeforge.data.cache import CachedDataset
    from tests.data.test_cache import Counts
    from tests.data.test_cache_safety import Slow
    warnings.simplefilter("always")
    c = CachedDataset(Counts({n}), Slow({seconds}), {folder!r}, workers={workers}, progress=False, chunk_size=2)
    print("building", flush=True)
    c.build()
    print("built", c.report.built, flush=True)
""")


def _builder(folder: Path, n: int, seconds: float, workers: int) -> subprocess.Popen[str]:
    code = BUILDER.format(root=str(ROOT), n=n, seconds=seconds, folder=str(folder), workers=workers)
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_two_builders_at_once_take_turns_without_false_repairs(tmp_path: Path) -> None:
    a, b = _builder(tmp_path, 24, 0.02, 1), _builder(tmp_path, 24, 0.02, 1)
    (out_a, err_a), (out_b, err_b) = a.communicate(timeout=120), b.communicate(timeout=120)
    assert a.returncode == b.returncode == 0, (err_a, err_b)
    assert "CacheRepairWarning" not in err_a + err_b, err_a + err_b
    built = sorted(int(o.split()[-1]) for o in (out_a, out_b))
    assert built == [0, 24]                                       # one did the work, the other found it done
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = CachedDataset(Counts(24), Slow(0.02), tmp_path, progress=False)
        for i in range(24):
            assert torch.equal(c[i][0], torch.as_tensor(2.0 * Counts(24)[i][0], dtype=torch.float32))


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:                                   # a zombie (dead, not yet reaped by init) counts as gone
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and ps --ppid")
def test_killing_a_parallel_build_leaves_no_workers(tmp_path: Path) -> None:
    p = _builder(tmp_path, 200, 0.05, 2)
    assert p.stdout is not None and p.stdout.readline().strip() == "building"
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while len(workers) < 2 and time.monotonic() < deadline:
        workers = _children(p.pid)
        time.sleep(0.05)
    assert len(workers) >= 2, "the pool never started"
    p.send_signal(signal.SIGKILL)
    p.wait()
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), "pool workers outlived the killed build"

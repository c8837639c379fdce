"""The search runner on a real local Ray instance: the same seed gives the same search on 1 and 2 workers, a
SIGKILLed worker's candidate is retried, a SIGKILLed driver loses at most what was in flight and its resume
reaches the uninterrupted population, and the refusals (settings, folders, Ray missing, an address nobody
answers on). One Ray instance serves the module; a toy space keeps each candidate at milliseconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from spikeforge.search import SearchConfig, SearchError, pareto_front, read_candidates, run_search
from tests.conftest import ROOT
from tests.search import toy

ray = pytest.importorskip("ray")

DRIVER = """
import json, sys
from ray import cloudpickle
import tests.search.toy as toy
cloudpickle.register_pickle_by_value(toy)
from spikeforge.search import SearchConfig, run_search
cfg = SearchConfig(**json.loads(sys.argv[1]))
run_search(cfg, resume=sys.argv[2] == "1", space=toy.Toy, progress=lambda s: None)
"""


@pytest.fixture(scope="module")
def cluster() -> Any:
    ray.cloudpickle.register_pickle_by_value(toy)
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def config(tmp: Path, name: str, **kw: Any) -> SearchConfig:
    base = dict(space="toy", dataset="digits", generations=3, population=4, epochs=1, workers=2, seed=7,
                run_dir=str(tmp / name))
    return SearchConfig(**{**base, **kw})


def outcome(run_dir: Path) -> tuple[list[Any], list[Any]]:
    cands = sorted(read_candidates(run_dir / "candidates.jsonl"), key=lambda c: (c["generation"], c["index"]))
    gen = json.loads((run_dir / "generation.json").read_text())
    return ([(c["generation"], c["index"], c["genotype"], c["metrics"], c["seed"]) for c in cands],
            [p["genotype"] for p in gen["parents"]])


@pytest.fixture(scope="module")
def reference(cluster: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("ref")
    res = run_search(config(tmp, "ref"), space=toy.Toy, progress=lambda s: None)
    return tmp / "ref", res


def test_same_seed_same_search_on_one_and_two_workers(reference: tuple[Path, dict[str, Any]],
                                                      tmp_path: Path) -> None:
    ref_dir, ref = reference
    lines: list[str] = []
    one = run_search(config(tmp_path, "one", workers=1), space=toy.Toy, progress=lines.append)
    assert outcome(tmp_path / "one") == outcome(ref_dir)
    assert one["best"]["genotype"] == ref["best"]["genotype"] and ref["candidates"] == 16
    assert len(lines) == 4 and lines[0].startswith("generation 0/3: best ") and "candidates/min" in lines[-1]
    # (1+λ) with elitism: the best fitness never drops, and it climbs towards the optimum (13, 7)
    by_gen = [max(c[3]["val_accuracy"] for c in outcome(ref_dir)[0] if c[0] <= g) for g in range(4)]
    assert by_gen == sorted(by_gen) and by_gen[-1] > by_gen[0]
    front = json.loads((ref_dir / "pareto.json").read_text())
    assert [c["genotype_hash"] for c in front] == [c["genotype_hash"] for c in pareto_front(
        read_candidates(ref_dir / "candidates.jsonl"))]


def test_pareto_front_keeps_the_non_dominated_by_increasing_energy() -> None:
    def c(h: str, acc: float, e: float) -> dict[str, Any]:
        return {"genotype_hash": h, "metrics": {"val_accuracy": acc, "energy_uj": e}}
    front = pareto_front([c("a", 0.9, 5.0), c("b", 0.8, 6.0), c("c", 0.95, 9.0), c("d", 0.7, 1.0),
                          c("e", 0.95, 12.0), c("a", 0.1, 0.1)])
    assert [x["genotype_hash"] for x in front] == ["d", "a", "c"]      # b and e are dominated; "a" counted once


def _driver(cfg: SearchConfig, resume: bool, address: str) -> subprocess.Popen[str]:
    d = {**cfg.__dict__, "address": address}
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(d), "1" if resume else "0"], cwd=ROOT,
                            env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(pred: Any, timeout: float = 120.0) -> None:
    t0 = time.time()
    while not pred():
        assert time.time() - t0 < timeout, "timed out"
        time.sleep(0.05)


def test_a_killed_worker_is_retried_and_a_killed_driver_resumes(cluster: str, reference: tuple[Path, dict[str, Any]],
                                                                tmp_path: Path) -> None:
    ref_dir, _ = reference
    # a worker SIGKILLed in the middle of a candidate: Ray runs the task again; the search ends as the reference
    log = tmp_path / "pids"
    log.mkdir()
    killed: list[int] = []

    def kill_first_worker() -> None:
        _wait_for(lambda: any(log.iterdir()))
        killed.append(int(next(log.iterdir()).stem))
        os.kill(killed[0], signal.SIGKILL)

    killer = threading.Thread(target=kill_first_worker)
    killer.start()
    run_search(config(tmp_path, "worker", space_options={"sleep": 0.4, "log": str(log)}), space=toy.Toy,
               progress=lambda s: None)
    killer.join()
    assert killed and outcome(tmp_path / "worker") == outcome(ref_dir)
    # the driver SIGKILLed after 5 candidates: the rerun submits only what is missing, and ends the same
    cfg = config(tmp_path, "driver", space_options={"sleep": 0.3})
    file = tmp_path / "driver" / "candidates.jsonl"
    p = _driver(cfg, False, cluster)
    _wait_for(lambda: file.exists() and len(file.read_text().splitlines()) >= 5)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=60)
    kept = len(read_candidates(file))
    assert 5 <= kept < 16
    res = run_search(cfg, resume=True, space=toy.Toy, progress=lambda s: None)
    assert res["evaluated_now"] == 16 - kept and res["candidates"] == 16
    assert outcome(tmp_path / "driver") == outcome(ref_dir)


def test_refusals_name_what_is_wrong_and_write_nothing(cluster: str, reference: tuple[Path, dict[str, Any]],
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ref_dir, _ = reference
    with pytest.raises(SearchError, match=r"--population must be an integer >= 1, got 0"):
        run_search(config(tmp_path, "a", population=0), space=toy.Toy)
    with pytest.raises(SearchError, match=r"--epochs-per-candidate must be an integer >= 1, got -1"):
        run_search(config(tmp_path, "a", epochs=-1), space=toy.Toy)
    with pytest.raises(SearchError, match=r"--address must be HOST:PORT"):
        run_search(config(tmp_path, "a", address="nowhere"), space=toy.Toy)
    with pytest.raises(SearchError, match=rf"{ref_dir} already holds a search; pass --resume"):
        run_search(config(ref_dir.parent, "ref"), space=toy.Toy)
    with pytest.raises(SearchError, match=r"--resume: seed was 7 in .*, now 8; a resumed search keeps its settings"):
        run_search(config(ref_dir.parent, "ref", seed=8), resume=True, space=toy.Toy)
    with pytest.raises(SearchError, match=r"--resume: .* holds no search"):
        run_search(config(tmp_path, "b"), resume=True, space=toy.Toy)
    with pytest.raises(SearchError, match=r"--space-arg: toy .*unexpected keyword argument 'nope'"):
        run_search(config(tmp_path, "c", space_options={"nope": 1}), space=toy.Toy)
    from spikeforge.core import FolderLock, LockHeld
    held = FolderLock(ref_dir, "search folder")                    # another search works in the folder
    try:
        with pytest.raises(LockHeld, match=rf"search folder {ref_dir} is in use by process {os.getpid()}"):
            run_search(config(ref_dir.parent, "ref"), resume=True, space=toy.Toy)
    finally:
        held.release()
    lines = (ref_dir / "candidates.jsonl").read_text().splitlines()
    bad = json.loads(lines[0]) | {"metrics": {"val_accuracy": "high"}}     # a hand-edited line is left out
    (tmp_path / "c.jsonl").write_text("\n".join([json.dumps(bad), *lines[1:], lines[0][:20]]))
    assert len(read_candidates(tmp_path / "c.jsonl")) == len(lines) - 1
    monkeypatch.setitem(sys.modules, "ray", None)                  # Ray not installed
    with pytest.raises(SearchError, match=r"Ray, which is not installed: pip install 'spikeforge\[search\]'"):
        run_search(config(tmp_path, "d"), space=toy.Toy)
    assert not any((tmp_path / n).exists() for n in "acd")

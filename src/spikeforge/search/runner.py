"""The search loop: a (μ+λ) evolution whose candidates are evaluated as Ray tasks (``run_search``).

* **Generations.** Generation 0 is ``population`` random genotypes; each later one is ``population``
  mutations of the surviving parents (parent ``i mod μ`` for candidate ``i``). The ``μ = space.parents`` best
  of parents and offspring survive (elitism; ``μ = 1`` is SPENSER's (1+λ)). Ties are broken by generation and
  index, so selection never depends on the order in which results arrive.
* **Seeds.** Candidate ``i`` of generation ``g`` draws its genotype with ``random.Random(candidate_seed(seed,
  g, i))`` and is trained with that seed; every worker runs with ``threads`` torch threads (default 1). The
  same seed gives the same search on any number of workers.
* **Ray.** ``ray.init()`` starts a local instance with ``workers`` CPUs, or ``address="HOST:PORT"`` joins a
  running cluster. Each evaluation is a task with ``max_retries``: when its worker dies, Ray runs it again,
  and evaluations are idempotent.
* **Files** (in ``run_dir``): ``search.json`` (the settings; a resumed search must match them),
  ``setup.json`` (what ``space.setup`` returned), ``candidates.jsonl`` (every finished candidate, appended and
  fsync'd: id, genotype hash, genotype, metrics, fitness, seed, seconds), ``generation.json`` (after each
  generation, atomically: the parents and the counts) and ``pareto.json`` (validation accuracy against
  energy, the non-dominated candidates).
* **Resume.** The genotypes of a generation follow from the parents and the seeds, so a resumed search
  recomputes them and submits only those without a line in ``candidates.jsonl``: at most the candidates in
  flight when it stopped are lost, and it ends with the population an uninterrupted run reaches.
"""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..core import FolderLock, atomic_write
from .base import SEARCHES, EvalContext, SearchError, SearchSpace, candidate_seed, genotype_hash

__all__ = ["SearchConfig", "run_search", "pareto_front", "read_candidates", "require_ray"]

FILES = ("search.json", "setup.json", "candidates.jsonl", "generation.json", "pareto.json")


@dataclass
class SearchConfig:
    """The settings of one search (``spikeforge search`` flags).

    Attributes:
        space: search space name (``SEARCHES``).
        dataset: dataset name.
        generations: generations after the initial one (0: only the random population).
        population: candidates per generation (λ; also the size of generation 0).
        epochs: training epochs per candidate (``--epochs-per-candidate``).
        workers: candidates evaluated at once (and the CPUs of a local Ray instance).
        seed: the search's seed.
        run_dir: folder of the search's files.
        T: time steps.
        address: ``HOST:PORT`` of a running Ray cluster, or ``None`` for a local instance.
        threads: torch threads per evaluation.
        limit_train: train candidates on the first N samples only.
        data_root: folder of the dataset's files.
        space_options: the space's settings (``--space-arg KEY=VALUE``).
        max_retries: Ray retries of an evaluation whose worker died.
    """

    space: str
    dataset: str
    generations: int
    population: int
    epochs: int
    workers: int
    seed: int
    run_dir: str
    T: int = 4
    address: str | None = None
    threads: int = 1
    limit_train: int | None = None
    data_root: str | None = None
    space_options: dict[str, Any] = field(default_factory=dict)
    max_retries: int = 3

    def check(self) -> None:
        """Raise ``SearchError`` for a setting out of range, naming it."""
        for name in ("generations", "population", "epochs", "workers", "T", "threads"):
            v = getattr(self, name)
            low = 0 if name == "generations" else 1
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                flag = "--epochs-per-candidate" if name == "epochs" else f"--{name.replace('_', '-')}"
                raise SearchError(f"{flag} must be an integer >= {low}, got {v!r}")
        if self.limit_train is not None and (isinstance(self.limit_train, bool) or self.limit_train < 1):
            raise SearchError(f"--limit-train must be a positive integer, got {self.limit_train!r}")
        if self.address is not None and (":" not in self.address or not self.address.rsplit(":", 1)[1].isdigit()):
            raise SearchError(f"--address must be HOST:PORT of a running Ray cluster, got {self.address!r}")

    def identity(self) -> dict[str, Any]:
        """What a resumed search must share with the one it continues (everything but the budget and where
        it runs)."""
        d = asdict(self)
        for k in ("generations", "workers", "address", "run_dir", "data_root", "max_retries"):
            d.pop(k)
        return d


def require_ray() -> Any:
    """``import ray``, or a ``SearchError`` with the install command."""
    try:
        import ray
    except ImportError:
        raise SearchError("the search runs its candidates on Ray, which is not installed: "
                          "pip install 'spikeforge[search]' (or pip install 'ray>=2.9')") from None
    return ray


def _evaluate(space_cls: type[SearchSpace], options: dict[str, Any], genotype: dict[str, Any],
              ctx: dict[str, Any], threads: int) -> dict[str, Any]:
    """One candidate, in a Ray worker: metrics and the seconds it took."""
    import torch
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    metrics = space_cls(**options).evaluate(genotype, EvalContext(**ctx))
    return {"metrics": metrics, "seconds": time.perf_counter() - t0, "pid": os.getpid()}


def read_candidates(path: Path) -> list[dict[str, Any]]:
    """The finished candidates in ``candidates.jsonl``; a line cut short by a crash, or one that is not a
    candidate as the runner writes it, is left out (and evaluated again on resume)."""
    out: list[dict[str, Any]] = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if _valid(rec):
            out.append(rec)
    return out


def _valid(rec: Any) -> bool:
    """A candidate line as the runner writes it (a hand-edited or damaged one is evaluated again)."""
    if not isinstance(rec, dict) or not {"generation", "index", "genotype_hash", "genotype", "metrics",
                                         "fitness"} <= rec.keys():
        return False
    m = rec["metrics"]
    nums = [rec["fitness"], *(m.get(k) for k in ("val_accuracy", "energy_uj"))] if isinstance(m, dict) else [None]
    return (all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in nums)
            and all(isinstance(rec[k], int) for k in ("generation", "index")) and isinstance(rec["genotype"], dict))


def _append(path: Path, rec: dict[str, Any]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(rec, sort_keys=True) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def pareto_front(cands: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The candidates no other one beats on both validation accuracy (higher) and energy (lower), one per
    genotype, by increasing energy."""
    best: dict[str, dict[str, Any]] = {}
    for c in cands:
        best.setdefault(c["genotype_hash"], c)
    pts = sorted(best.values(), key=lambda c: (c["metrics"]["energy_uj"], -c["metrics"]["val_accuracy"]))
    front, top = [], -math.inf
    for c in pts:
        if c["metrics"]["val_accuracy"] > top:
            front.append(c)
            top = c["metrics"]["val_accuracy"]
    return front


def _rank(c: dict[str, Any]) -> tuple[float, int, int]:
    return (-c["fitness"], c["generation"], c["index"])


def _start(cfg: SearchConfig, run_dir: Path, resume: bool) -> None:
    """Check (resume) or write (new search) ``search.json``; the caller holds the folder's lock."""
    meta = run_dir / "search.json"
    if resume:
        if not meta.exists():
            raise SearchError(f"--resume: {run_dir} holds no search (no search.json)")
        try:
            saved = json.loads(meta.read_text())
        except json.JSONDecodeError:
            raise SearchError(f"{meta}: not valid JSON; the search cannot be resumed") from None
        want = cfg.identity()
        diff = [k for k in want if saved.get(k) != want[k]]
        if diff:
            k = diff[0]
            raise SearchError(f"--resume: {k} was {saved.get(k)!r} in {run_dir}, now {want[k]!r}; a resumed search "
                              "keeps its settings (only --generations, --workers and --address may change)")
        return
    if any((run_dir / f).exists() for f in FILES):
        raise SearchError(f"{run_dir} already holds a search; pass --resume to continue it or choose another "
                          "--run-dir")
    atomic_write(meta, json.dumps(cfg.identity(), indent=1, sort_keys=True), overwrite=False)


def _reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse an address nothing answers on (``ray.init`` would retry it for minutes)."""
    import socket
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return
    except OSError as e:
        why = "timed out" if isinstance(e, TimeoutError) else (e.strerror or type(e).__name__)
        raise SearchError(f"--address {address}: no Ray cluster answers there ({why}); start one with "
                          "`ray start --head --port PORT` or leave --address out for a local instance") from None


def _init_ray(ray: Any, cfg: SearchConfig) -> None:
    if ray.is_initialized():
        return
    try:
        if cfg.address is None:
            ray.init(num_cpus=cfg.workers, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        else:
            ray.init(address=cfg.address, logging_level="ERROR", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {cfg.address}" if cfg.address else "a local Ray instance"
        raise SearchError(f"cannot start or join {where}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                          ) from None


def run_search(cfg: SearchConfig, resume: bool = False, progress: Callable[[str], None] | None = None,
               space: type[SearchSpace] | None = None) -> dict[str, Any]:
    """Run (or continue) a search; returns the final parents, the Pareto front and the counts.

    ``space`` gives the space's class directly (default: ``SEARCHES[cfg.space]``); it must be importable by
    (or pickled by value to) the Ray workers.

    Raises:
        SearchError: bad settings, an unknown space, a malformed space (its ``check``), a run folder that
            holds another search, Ray missing or unreachable.
    """
    say = progress or (lambda s: print(s, file=sys.stderr, flush=True))
    cfg.check()
    space_cls = space or SEARCHES[cfg.space]
    try:
        inst = space_cls(**cfg.space_options)
    except TypeError as e:
        raise SearchError(f"--space-arg: {cfg.space} {e}") from None
    inst.check()
    ray = require_ray()
    if cfg.address is not None and not ray.is_initialized():
        _reachable(cfg.address)                          # before anything is written
    run_dir = Path(cfg.run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise SearchError(f"--run-dir {run_dir} is a file")
    if resume and not (run_dir / "search.json").exists():
        raise SearchError(f"--resume: {run_dir} holds no search (no search.json)")
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FolderLock(run_dir, "search folder")        # one search per folder: a second one is refused
    try:
        _start(cfg, run_dir, resume)
        return _evolve(cfg, inst, space_cls, ray, run_dir, say)
    finally:
        lock.release()


def _evolve(cfg: SearchConfig, inst: SearchSpace, space_cls: type[SearchSpace], ray: Any, run_dir: Path,
            say: Callable[[str], None]) -> dict[str, Any]:
    """The generations (``run_search`` holds the folder's lock around this)."""
    ctx = EvalContext(cfg.dataset, cfg.epochs, cfg.T, cfg.seed, str(run_dir), cfg.data_root, cfg.limit_train,
                      {}, dict(cfg.space_options))
    setup_file = run_dir / "setup.json"
    if setup_file.exists():
        try:
            setup = json.loads(setup_file.read_text())
        except json.JSONDecodeError:
            raise SearchError(f"{setup_file}: not valid JSON (written atomically, so changed by hand); delete it "
                              "to run the space's setup again") from None
    else:
        setup = inst.setup(ctx)
        atomic_write(setup_file, json.dumps(setup, indent=1, sort_keys=True), overwrite=True)
    _init_ray(ray, cfg)
    remote = ray.remote(num_cpus=1, max_retries=cfg.max_retries)(_evaluate)
    cand_file = run_dir / "candidates.jsonl"
    done = {(c["generation"], c["index"]): c for c in read_candidates(cand_file)}
    parents: list[dict[str, Any]] = []
    mu = max(1, int(inst.parents))
    total_new = 0
    t_start = time.perf_counter()
    for g in range(cfg.generations + 1):
        genos = []
        for i in range(cfg.population):
            rng = random.Random(candidate_seed(cfg.seed, g, i))
            genos.append(inst.random(rng) if g == 0 else inst.mutate(parents[i % len(parents)]["genotype"], rng))
        results: dict[int, dict[str, Any]] = {}
        todo = []
        for i, geno in enumerate(genos):
            h = genotype_hash(geno)
            old = done.get((g, i))
            if old is not None and old["genotype_hash"] == h:
                results[i] = old
            else:
                todo.append((i, geno, h, candidate_seed(cfg.seed, g, i)))
        pending: dict[Any, tuple[int, dict[str, Any], str, int]] = {}
        while todo or pending:
            while todo and len(pending) < cfg.workers:        # at most `workers` candidates in flight
                i, geno, h, seed = todo.pop(0)
                c_ctx = {**ctx.to_dict(), "seed": seed, "setup": setup}
                pending[remote.remote(space_cls, dict(cfg.space_options), geno, c_ctx, cfg.threads)] = (i, geno, h,
                                                                                                          seed)
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                i, geno, h, seed = pending.pop(ref)
                out = ray.get(ref)
                rec = {"id": f"g{g}-c{i}", "generation": g, "index": i, "genotype_hash": h, "genotype": geno,
                       "metrics": out["metrics"], "fitness": float(inst.fitness(out["metrics"])), "seed": seed,
                       "seconds": round(out["seconds"], 3)}
                _append(cand_file, rec)
                results[i] = rec
                total_new += 1
        offspring = [results[i] for i in range(cfg.population)]
        parents = sorted(parents + offspring, key=_rank)[:mu]
        done.update({(g, r["index"]): r for r in offspring})
        front = pareto_front(list(done.values()))
        atomic_write(run_dir / "pareto.json", json.dumps(front, indent=1, sort_keys=True), overwrite=True)
        atomic_write(run_dir / "generation.json", json.dumps(
            {"generation": g, "parents": parents, "candidates": len(done)}, indent=1, sort_keys=True),
            overwrite=True)
        fits = [r["fitness"] for r in offspring]
        minutes = (time.perf_counter() - t_start) / 60
        rate = f"{total_new / minutes:.1f}" if total_new and minutes > 0 else "-"
        say(f"generation {g}/{cfg.generations}: best {parents[0]['fitness']:.4f} "
            f"(val {parents[0]['metrics']['val_accuracy']:.4f}), median {statistics.median(fits):.4f}, "
            f"Pareto {len(front)}, {rate} candidates/min")
    return {"run_dir": str(run_dir), "parents": parents, "best": parents[0],
            "pareto": pareto_front(list(done.values())), "candidates": len(done), "evaluated_now": total_new}

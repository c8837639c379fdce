"""The search workflow: ``spikeforge search`` → a run folder of candidates, generations and a Pareto front."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..search import SEARCHES, SearchConfig, run_search

__all__ = ["search"]


def search(space: str, dataset: str, generations: int, population: int, epochs: int, workers: int, seed: int,
           run_dir: str | Path, *, T: int = 4, address: str | None = None, threads: int = 1,
           limit_train: int | None = None, data_root: str | None = None, space_args: dict[str, Any] | None = None,
           resume: bool = False) -> dict[str, Any]:
    """Run or resume a search (``search.runner.run_search``) and return a summary: the best candidate, the
    Pareto front's size and the files written. Unknown names raise one line with the choices."""
    SEARCHES[space]                                      # an unknown space: one line with the choices
    from ..data import DATASETS
    DATASETS[dataset]
    cfg = SearchConfig(space, dataset, generations, population, epochs, workers, seed, str(run_dir), T=T,
                       address=address, threads=threads, limit_train=limit_train, data_root=data_root,
                       space_options=dict(space_args or {}))
    res = run_search(cfg, resume=resume)
    best = res["best"]
    return {"run_dir": res["run_dir"], "candidates": res["candidates"], "evaluated_now": res["evaluated_now"],
            "best": {k: best[k] for k in ("id", "genotype_hash", "fitness", "metrics")},
            "pareto_size": len(res["pareto"]),
            "files": {f: str(Path(run_dir) / f) for f in ("candidates.jsonl", "pareto.json", "generation.json")},
            "best_genotype": json.dumps(best["genotype"], sort_keys=True)}

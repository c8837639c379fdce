"""The search seam: what a search space is (``SearchSpace``), what a candidate's evaluation sees
(``EvalContext``), and the registry ``SEARCHES`` that ``spikeforge search --space NAME`` reads.

A **genotype** is a JSON-serialisable ``dict`` (it is written to ``candidates.jsonl`` and stored in a run's
config); its hash (``genotype_hash``) names a candidate. The runner (``search.runner``) owns the population,
the seeds, Ray and the files; a space owns only what is specific to it:

* ``check()``: refuse a malformed space (a grammar file with a syntax error, an unreachable or unbounded
  production) before the search starts, with one line naming what is wrong;
* ``setup(ctx)``: work done once per search before any candidate (Auto-Spikformer trains its supernet); it
  returns a JSON-able dict the runner stores in the run folder and hands to every evaluation;
* ``random(rng)`` and ``mutate(genotype, rng)``: new genotypes, valid by construction;
* ``evaluate(genotype, ctx)``: the candidate's metrics (at least ``val_accuracy`` and ``energy_uj``), computed
  in a Ray worker with one torch thread; it must be deterministic given ``ctx.seed`` and idempotent (Ray may
  run it twice when a worker dies);
* ``fitness(metrics)``: the number selection maximises.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from random import Random
from typing import Any

from ..core import Registry, UserError

__all__ = ["SearchSpace", "EvalContext", "SEARCHES", "SearchError", "genotype_hash", "candidate_seed"]


class SearchError(UserError, ValueError):
    """A search that cannot start or go on as asked (a bad grammar, a bad setting, an unreachable cluster)."""


@dataclass(frozen=True)
class EvalContext:
    """What a candidate's evaluation sees.

    Attributes:
        dataset: dataset name (``spikeforge.data``).
        epochs: training epochs per candidate (``--epochs-per-candidate``).
        T: time steps.
        seed: the candidate's seed (``candidate_seed(search seed, generation, index)``).
        run_dir: the search's run folder (as a string).
        data_root: folder of the dataset's files, or ``None``.
        limit_train: train on the first N samples only (a subset), or ``None``.
        setup: what ``SearchSpace.setup`` returned.
        options: the space's settings (``--space-arg KEY=VALUE``).
    """

    dataset: str
    epochs: int
    T: int
    seed: int
    run_dir: str
    data_root: str | None = None
    limit_train: int | None = None
    setup: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """As a JSON-able dict."""
        return asdict(self)


class SearchSpace:
    """Base class of a search space (see the module docstring for each method's contract)."""

    name = "space"
    parents = 1
    """How many of the best survive each generation (``1``: a (1+λ) evolution with elitism)."""

    def __init__(self, **options: Any) -> None:
        self.options = options

    def check(self) -> None:
        """Raise ``SearchError`` naming what is wrong with the space; nothing by default."""

    def setup(self, ctx: EvalContext) -> dict[str, Any]:
        """Work done once per search before any candidate; nothing by default."""
        return {}

    def random(self, rng: Random) -> dict[str, Any]:
        """A random valid genotype."""
        raise NotImplementedError

    def mutate(self, genotype: dict[str, Any], rng: Random) -> dict[str, Any]:
        """A valid genotype derived from ``genotype`` (which is left unchanged)."""
        raise NotImplementedError

    def evaluate(self, genotype: dict[str, Any], ctx: EvalContext) -> dict[str, Any]:
        """The candidate's metrics: at least ``val_accuracy`` and ``energy_uj``."""
        raise NotImplementedError

    def fitness(self, metrics: dict[str, Any]) -> float:
        """The number selection maximises (default: validation accuracy)."""
        return float(metrics["val_accuracy"])


SEARCHES: Registry[type[SearchSpace]] = Registry("search space")
"""Search spaces by name for ``spikeforge search --space``."""


def genotype_hash(genotype: dict[str, Any]) -> str:
    """A short stable name for a genotype: SHA-256 of its canonical JSON, 12 hex digits."""
    text = json.dumps(genotype, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def candidate_seed(seed: int, generation: int, index: int) -> int:
    """The seed of candidate ``index`` of ``generation`` in a search seeded ``seed`` (the same on any number
    of workers)."""
    digest = hashlib.sha256(f"{seed}/{generation}/{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF

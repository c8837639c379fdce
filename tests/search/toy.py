"""A search space for the runner's tests: integer genotypes whose 'accuracy' is known in closed form, with an
optional pause (to kill a worker or the driver mid-candidate) and a record of the process that ran it."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

from spikeforge.search import EvalContext, SearchSpace


class Toy(SearchSpace):
    """Genotype ``{"x": [a, b]}`` with a, b in 0..20; val_accuracy = 1 − ((a−13)² + (b−7)²)/1000, energy = a + b."""

    name = "toy"

    def __init__(self, sleep: float = 0.0, log: str | None = None, parents: int = 1) -> None:
        super().__init__(sleep=sleep, log=log, parents=parents)
        self.sleep, self.log, self.parents = sleep, log, parents

    def random(self, rng: random.Random) -> dict[str, Any]:
        return {"x": [rng.randint(0, 20), rng.randint(0, 20)]}

    def mutate(self, genotype: dict[str, Any], rng: random.Random) -> dict[str, Any]:
        x = list(genotype["x"])
        k = rng.randrange(2)
        x[k] = min(20, max(0, x[k] + rng.choice((-2, -1, 1, 2))))
        return {"x": x}

    def evaluate(self, genotype: dict[str, Any], ctx: EvalContext) -> dict[str, Any]:
        if self.log:
            with open(Path(self.log) / f"{os.getpid()}.pid", "a") as f:
                f.write(f"{genotype['x']}\n")
        time.sleep(self.sleep)
        a, b = genotype["x"]
        return {"val_accuracy": 1 - ((a - 13) ** 2 + (b - 7) ** 2) / 1000, "energy_uj": float(a + b),
                "seed": ctx.seed}

"""SPENSER (Branquinho, Lourenço and Costa 2023, arXiv 2305.10987): DENSER-style grammatical evolution of
convolutional SNNs, as the search space ``"spenser"``.

A candidate's genotype has two parts, both JSON::

    {"network": {...},          # the phenotype: create_model("spenser", genotype=g["network"]) builds it
     "dsge": {"features": [layer, ...], "classifier": [...], "learning": [layer]}}

``dsge`` is DENSER's two-level genotype: per module (``features``, ``classifier``, ``learning``: the
grammar's ``module`` lines) a list of layers within the module's ``[min, max]``, each layer the DSGE
genotype of one derivation from the module's start rule (``spikeforge.search.grammar``); ``network`` is
what the layers derive (``features`` and ``classifier`` as lists, ``learning`` as the dict of its one
layer), kept beside them so that ``candidates.jsonl`` shows the architecture.

Mutation (one operator per call, drawn uniformly from those that apply): add a random layer to a module,
remove one, duplicate one (a copy at a random position), re-pick one production (DSGE grammar mutation;
the derivation then draws whatever the new production needs and drops what it no longer uses), or perturb
one number (Gaussian of ``sigma`` times its range, clipped; on a log scale for ``log`` ranges). A result
that is not a valid network (a field out of bounds, no spiking layer, a pool of a ``1×1`` map when
``img_size`` is known) or that derives the same network is redrawn.
"""

from __future__ import annotations

import copy
from random import Random
from typing import Any

import torch

from ..analysis import analyze
from ..data import batch_loader, build_dataset, to_time_first
from ..models import create_model
from ..models.spenser import GenotypeError, check_genotype
from ..training import RunFailed, fit
from .base import SEARCHES, EvalContext, SearchError, SearchSpace
from .grammar import Gene, Grammar, GrammarError, load_grammar

__all__ = ["SpenserSpace", "MODULES"]

MODULES = ("features", "classifier", "learning")
"""The modules a SPENSER grammar defines, in order."""

_OPTIONS: dict[str, type] = {"grammar": str, "img_size": int, "max_depth": int, "batch_size": int, "sigma": float,
                             "tries": int, "energy_batches": int}


def _coerce(key: str, value: Any, kind: type) -> Any:
    if isinstance(value, str) and kind is not str:
        try:
            return kind(value)
        except ValueError:
            raise SearchError(f"spenser: option {key}={value!r} must be {kind.__name__}") from None
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise SearchError(f"spenser: option {key}={value!r} must be an integer")
    return value


@SEARCHES.register("spenser")
class SpenserSpace(SearchSpace):
    """SPENSER: grammatical evolution (DENSER / DSGE) of convolutional SNNs; fitness = validation accuracy.

    Options (``--space-arg KEY=VALUE``; strings are converted):

    * ``grammar``: the grammar file (default: the packaged ``grammars/spenser.txt``);
    * ``min_features``, ``max_features``, ``min_classifier``, ``max_classifier``: override a module's layer
      counts from the grammar;
    * ``img_size``: the input side; when given, a pool of a ``1×1`` map is refused (without it every pool
      builds: pools round up, so a ``1×1`` map stays ``1×1``);
    * ``max_depth``: the deepest derivation of one layer (default 10; matters for recursive grammars);
    * ``batch_size``: training batch (default 64; a genotype's ``learning.batch_size`` wins);
    * ``sigma``: Gaussian perturbation, as a fraction of a number's range (default 0.15);
    * ``tries``: draws before ``random`` / ``mutate`` give up (default 200);
    * ``energy_batches``: test batches of 64 counted for the energy (default 4, as ``spikeforge report``).
    """

    name = "spenser"
    parents = 1

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        bounds: dict[str, int] = {}
        opts: dict[str, Any] = {}
        for key, value in options.items():
            if key.startswith(("min_", "max_")):
                bounds[key] = _coerce(key, value, int)
            elif key in _OPTIONS:
                opts[key] = _coerce(key, value, _OPTIONS[key])
            else:
                raise SearchError(f"spenser: unknown option {key!r}; choose from {', '.join(_OPTIONS)}, "
                                  "min_<module>, max_<module>")
        self.grammar_path: str | None = opts.get("grammar")
        self.img_size: int | None = opts.get("img_size")
        self.max_depth: int = opts.get("max_depth", 10)
        self.batch_size: int = opts.get("batch_size", 64)
        self.sigma: float = float(opts.get("sigma", 0.15))
        self.tries: int = opts.get("tries", 200)
        self.energy_batches: int = opts.get("energy_batches", 4)
        self._bounds_opts = bounds
        self._grammar: Grammar | None = None
        self.bounds: dict[str, tuple[int, int]] = {}

    # -- the grammar ------------------------------------------------------------------------------------
    @property
    def grammar(self) -> Grammar:
        """The parsed, checked grammar (loaded on first use; ``check()`` raises what is wrong with it)."""
        if self._grammar is None:
            g = load_grammar(self.grammar_path, self.max_depth)
            g.check()
            names = list(g.modules)
            if sorted(names) != sorted(MODULES):
                raise GrammarError(f"grammar {g.source}: the spenser space needs the modules {', '.join(MODULES)}; "
                                   f"it defines {', '.join(names) or 'none'}")
            bounds = {m: (g.modules[m].lo, g.modules[m].hi) for m in MODULES}
            for key, v in self._bounds_opts.items():
                which, module = key.split("_", 1)
                if module not in bounds:
                    raise SearchError(f"spenser: option {key}: no module {module!r} (modules: {', '.join(MODULES)})")
                lo, hi = bounds[module]
                bounds[module] = (v, hi) if which == "min" else (lo, v)
            for m, (lo, hi) in bounds.items():
                if not 0 <= lo <= hi or hi < 1:
                    raise SearchError(f"spenser: module {m} needs 0 <= min <= max and max >= 1, got [{lo}, {hi}]")
            if bounds["learning"] != (1, 1):
                raise GrammarError(f"grammar {g.source}: module learning must have exactly one layer ([1, 1]), got "
                                   f"{list(bounds['learning'])}")
            self.bounds, self._grammar = bounds, g
        return self._grammar

    def check(self) -> None:
        """Raise ``SearchError`` for a grammar with a syntax error, an undefined, unreachable or unbounded
        symbol, the wrong modules, or one that derives no valid network in ``tries`` draws."""
        _ = self.grammar
        self.random(Random(0))

    # -- genotype <-> network -----------------------------------------------------------------------------
    def _derive(self, dsge: dict[str, list[Gene]], rng: Random | None) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(network, repaired dsge)``; without ``rng`` an invalid layer raises ``GrammarError``."""
        g = self.grammar
        net: dict[str, Any] = {}
        used: dict[str, list[Gene]] = {}
        for m in MODULES:
            layers = dsge.get(m)
            if not isinstance(layers, list):
                raise SearchError(f"spenser genotype: dsge.{m} must be a list of layers, got {layers!r}")
            out = []
            used[m] = []
            for gene in layers:
                if not isinstance(gene, dict):
                    raise SearchError(f"spenser genotype: a layer of dsge.{m} must be a dict, got {gene!r}")
                u: Gene = {}
                out.append(g.derive(g.modules[m].start, gene, rng, out=u))
                used[m].append(u)
            net[m] = out
        net["learning"] = net["learning"][0] if net["learning"] else None
        return net, used

    def network(self, genotype: dict[str, Any]) -> dict[str, Any]:
        """The checked network (``create_model("spenser")``'s genotype) of a candidate: its ``network`` part,
        else what its ``dsge`` part derives; a bare network dict (with ``features``) is taken as it is."""
        if "features" in genotype:
            net = genotype
        elif "network" in genotype:
            net = genotype["network"]
        elif "dsge" in genotype:
            net = self._derive(genotype["dsge"], None)[0]
        else:
            raise SearchError("spenser genotype: expected a 'network' or a 'dsge' part, got keys "
                              f"{sorted(genotype)}")
        checked = check_genotype(net)
        if "learning" not in checked:
            raise GenotypeError("spenser genotype: learning is missing (the optimiser and learning rate)")
        return checked

    def invalid(self, net: dict[str, Any]) -> str | None:
        """Why ``net`` is not a candidate of this space (``None``: it is one)."""
        _ = self.grammar                       # loads the module bounds
        try:
            net = check_genotype(net)
        except GenotypeError as e:
            return str(e)
        if "learning" not in net or net["learning"] is None:
            return "no learning module"
        if not any(d["layer"] in ("conv", "linear") for d in net["features"] + net["classifier"]):
            return "no spiking layer (conv or linear)"
        for m in ("features", "classifier"):
            lo, hi = self.bounds[m]
            if not lo <= len(net[m]) <= hi:
                return f"{m} has {len(net[m])} layers, outside [{lo}, {hi}]"
        if self.img_size is not None:
            s = self.img_size
            for i, d in enumerate(net["features"]):
                if d["layer"] == "avgpool":
                    if s == 1:
                        return f"features[{i}] pools a 1×1 map (img_size={self.img_size})"
                    s = -(-s // d["kernel"])
        return None

    # -- the search operators -----------------------------------------------------------------------------
    def random(self, rng: Random) -> dict[str, Any]:
        """A random valid candidate: per module a uniform number of layers in its bounds, each derived at
        random from the module's start rule."""
        g = self.grammar
        why = "none drawn"
        for _ in range(self.tries):
            dsge = {m: [g.random_layer(m, rng) for _ in range(rng.randint(*self.bounds[m]))] for m in MODULES}
            net, used = self._derive(dsge, None)
            why = self.invalid(net) or ""
            if not why:
                return {"network": check_genotype(net), "dsge": used}
        raise SearchError(f"spenser: the grammar derived no valid network in {self.tries} draws (last: {why})")

    def mutate(self, genotype: dict[str, Any], rng: Random) -> dict[str, Any]:
        """A valid candidate one mutation away from ``genotype`` (left unchanged); the parent itself, copied,
        if ``tries`` draws found no valid, different network."""
        if "dsge" not in genotype:
            raise SearchError("spenser: mutate needs the genotype's 'dsge' part (as random() returns it)")
        old_net, dsge = self._derive(genotype["dsge"], None)
        old = check_genotype(old_net)
        for _ in range(self.tries):
            new = copy.deepcopy(dsge)
            self._mutate_once(new, rng)
            net, used = self._derive(new, rng)
            if self.invalid(net) is None and check_genotype(net) != old:
                return {"network": check_genotype(net), "dsge": used}
        return copy.deepcopy(genotype)

    def _mutate_once(self, dsge: dict[str, list[Gene]], rng: Random) -> None:
        g = self.grammar
        ops: list[str] = []
        if any(len(dsge[m]) < self.bounds[m][1] for m in MODULES):
            ops.append("add")
            if any(dsge[m] and len(dsge[m]) < self.bounds[m][1] for m in MODULES):
                ops.append("duplicate")
        if any(len(dsge[m]) > self.bounds[m][0] for m in MODULES):
            ops.append("remove")
        picks = [(m, i, rule, k) for m in MODULES for i, gene in enumerate(dsge[m]) for rule, entries in gene.items()
                 for k in range(len(entries)) if len(g.rules[rule]) > 1]
        numbers = [(m, i, rule, k, key) for m in MODULES for i, gene in enumerate(dsge[m])
                   for rule, entries in gene.items() for k, e in enumerate(entries) for key in e[1]]
        ops += ["production"] * bool(picks) + ["number"] * bool(numbers)
        if not ops:
            return
        op = rng.choice(ops)
        if op in ("add", "duplicate", "remove"):
            if op == "remove":
                m = rng.choice([m for m in MODULES if len(dsge[m]) > self.bounds[m][0]])
                del dsge[m][rng.randrange(len(dsge[m]))]
                return
            cands = [m for m in MODULES if len(dsge[m]) < self.bounds[m][1] and (op == "add" or dsge[m])]
            m = rng.choice(cands)
            layer = g.random_layer(m, rng) if op == "add" else copy.deepcopy(rng.choice(dsge[m]))
            dsge[m].insert(rng.randint(0, len(dsge[m])), layer)
        elif op == "production":
            m, i, rule, k = rng.choice(picks)
            entry = dsge[m][i][rule][k]
            entry[0] = rng.choice([a for a in range(len(g.rules[rule])) if a != entry[0]])
        else:
            m, i, rule, k, key = rng.choice(numbers)
            entry = dsge[m][i][rule][k]
            item = next(it for it in g.rules[rule][entry[0]] if it.key == key and it.kind == "range")
            entry[1][key] = item.value.perturb(entry[1][key], rng, self.sigma)

    # -- evaluation ---------------------------------------------------------------------------------------
    def evaluate(self, genotype: dict[str, Any], ctx: EvalContext) -> dict[str, Any]:
        """Train the candidate ``ctx.epochs`` epochs (BPTT, direct encoding, the genotype's optimiser and
        learning rate) on ``ctx.dataset``, seeded by ``ctx.seed``, on the torch threads the caller set (the
        runner's ``threads``, default 1): the same seed and threads give the same metrics.

        Returns:
            ``val_accuracy`` and ``test_accuracy`` after the last epoch; ``energy_uj``, the energy per test
            sample in µJ as ``spikeforge report`` counts it (spikingformer convention, 0.9 / 4.6 pJ per
            AC / MAC, the first ``energy_batches`` test batches of 64); ``params``; ``firing_rate`` (spikes per
            neuron per step over every spiking layer); ``train_loss`` (the last epoch's). A run that fails (a
            diverged or non-finite loss) gives accuracies 0, the energy and firing rate of the untrained
            network, and ``error``, the reason.
        """
        net = self.network(genotype)
        learning = net["learning"]
        data = build_dataset(ctx.dataset, T=ctx.T, root=ctx.data_root, limit_train=ctx.limit_train, progress=False)

        def build() -> Any:
            torch.manual_seed(ctx.seed)
            return create_model("spenser", genotype=net, in_channels=data.in_channels,
                                num_classes=data.num_classes, img_size=data.img_size, T=ctx.T)

        model = build()
        params = sum(p.numel() for p in model.parameters())
        try:
            res = fit(model, data, T=ctx.T, encoding="direct", optimizer=_optimizer(learning), epochs=ctx.epochs,
                      batch_size=learning.get("batch_size", self.batch_size), seed=ctx.seed, progress=False,
                      eval_every=max(ctx.epochs, 1))
        except RunFailed as e:
            return {"val_accuracy": 0.0, "test_accuracy": 0.0, **self._energy(build(), data, ctx.T), "params": params,
                    "train_loss": None, "error": str(e)}
        last = res.history[-1]
        return {"val_accuracy": float(last.get("val_accuracy", last["test_accuracy"])),
                "test_accuracy": float(last["test_accuracy"]), **self._energy(model, data, ctx.T), "params": params,
                "train_loss": float(last["train_loss"])}

    def _energy(self, model: torch.nn.Module, data: Any, T: int) -> dict[str, float]:
        """``energy_uj`` and ``firing_rate`` on the first ``energy_batches`` test batches of 64, as ``spikeforge
        report`` counts them."""
        gen = torch.Generator().manual_seed(12345)
        batches = []
        for x, _ in batch_loader(data.test, data.kind, batch_size=64, shuffle=False):
            batches.append(to_time_first(x, data.kind, T, "direct", gen))
            if len(batches) >= self.energy_batches:
                break
        rep = analyze(model, batches, "spikingformer")
        rows = rep["firing_rates"]
        neurons = sum(r["neurons"] for r in rows)
        rate = sum(r["rate"] * r["neurons"] for r in rows) / neurons if neurons else 0.0
        return {"energy_uj": 1e3 * float(rep["energy"]["energy_mj"]), "firing_rate": float(rate)}


def _optimizer(learning: dict[str, Any]) -> Any:
    """``params -> optimizer`` for a genotype's learning module."""
    name, lr, wd = learning["optimizer"], learning["lr"], learning.get("weight_decay", 0.0)
    if name == "adam":
        return lambda ps: torch.optim.Adam(ps, lr=lr, weight_decay=wd)
    if name == "adamw":
        return lambda ps: torch.optim.AdamW(ps, lr=lr, weight_decay=learning.get("weight_decay", 0.01))
    return lambda ps: torch.optim.SGD(ps, lr=lr, momentum=learning.get("momentum", 0.9), weight_decay=wd)


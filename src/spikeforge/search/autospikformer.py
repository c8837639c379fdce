"""Auto-Spikformer (Che et al., "Auto-Spikformer: Spikformer architecture search", Front. Neurosci.
18:1372257, 2024; arXiv 2306.00807): a one-shot search over Spikformer's depth, embedding dim, heads and MLP
ratio *and* its LIF neurons' τ and V_th ("DSPS", discrete spiking parameter search), scored by accuracy and
energy.

1. ``setup`` trains one weight-entangled supernet (``autospikformer_supernet``): every step trains a
   uniformly sampled sub-network, a leading slice of the largest weights;
2. evolution (the runner) draws genotypes with ``random`` / ``mutate``;
3. ``evaluate`` extracts a genotype's sub-network as a standalone ``spikformer_tiny``, recalibrates its
   BatchNorm statistics on 20 training batches and measures it with the inherited weights, no retraining
   (``autospikformer_eval``);
4. ``fitness`` balances validation accuracy against the energy ``spikeforge report`` would print.

A genotype is ``{"depth", "dim", "heads", "mlp_ratio", "tau", "v_threshold"}``, each from its choices (the
space's options, below). The defaults fit the CPU reproduction (methods.md §10): Spikformer-{1,2}-{32,48,64}
on digits (1×8×8, two pools: 2×2 tokens), heads {1, 2, 4} (head dim ``dim / heads``, Spikformer's own rule),
MLP ratio {2, 4}, τ ∈ {1.5, 2, 3}, V_th ∈ {0.5, 1}, at the search's ``T`` (2 in the reproduction).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from random import Random
from typing import Any

import torch

from ..data import DataBundle, build_dataset
from ..training import CheckpointError, cosine_warmup, fit, load_checkpoint, optimizer_factory, save_checkpoint
from .autospikformer_eval import BN_BATCHES, measure_subnet
from .autospikformer_supernet import GENES, SpikformerChoices, SpikformerSupernet, SupernetStep
from .base import SEARCHES, EvalContext, SearchError, SearchSpace

__all__ = ["AutoSpikformerSpace", "aeb_fitness", "OPTIONS", "load_supernet"]

OPTIONS: dict[str, Any] = {
    **SpikformerChoices().to_dict(),
    "supernet_epochs": None,    # None: the search's --epochs-per-candidate (ctx.epochs)
    "batch_size": 64, "lr": 5e-3, "weight_decay": 0.0,
    "encoding": "direct",       # Spikformer's input: the image at every step
    "pool_before": [3, 4], "val_fraction": 0.1, "sample_neurons": True,
    "bn_batches": BN_BATCHES, "bn_batch_size": 64,
    "e_target": None,           # µJ per sample; None: e_target_ratio × the largest sub-network's energy
    "e_target_ratio": 0.5, "beta": -0.07,
    "parents": 4, "mutation_rate": 0.3, "device": "cpu",
}
"""The space's options (``--space-arg KEY=VALUE``) and their defaults. Choice lists take JSON (``[1,2]``) or
comma-separated values (``1,2``)."""

_SUPERNET_FILE = "supernet.safetensors"


def aeb_fitness(accuracy: float, energy: float, e_target: float, alpha: float = 0.0, beta: float = -0.07) -> float:
    """``F = Acc · (E / E_target)^w`` with ``w = alpha`` if ``E ≤ E_target`` else ``beta``.

    The "F_AEB-style" accuracy–energy fitness in MnasNet's form (Tan et al., CVPR 2019), pending verification
    of Auto-Spikformer's exact F_AEB: the paper names F_AEB and its aim (a Pareto-optimal balance of
    accuracy and energy) but its formula and coefficients are not confirmed here (no official code is
    known; methods.md §10). With ``alpha = 0`` a sub-network under the energy target is scored by accuracy
    alone; above it, doubling the energy costs a factor ``2^-0.07 ≈ 0.953``.
    """
    if not e_target > 0:
        raise SearchError(f"autospikformer: e_target must be > 0 µJ, got {e_target}")
    if energy < 0:
        raise SearchError(f"autospikformer: energy must be >= 0, got {energy}")
    w = alpha if energy <= e_target else beta
    return float(accuracy) * (float(energy) / float(e_target)) ** w if w else float(accuracy)


def _choice_list(key: str, value: Any) -> list[Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            try:
                value = [json.loads(v) for v in value.split(",") if v.strip()]
            except json.JSONDecodeError:
                raise SearchError(f"autospikformer: {key}={value!r} is not a list of numbers (e.g. {key}=1,2)") \
                    from None
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _parse(options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise SearchError(f"autospikformer: unknown option(s) {unknown}; the options are {sorted(OPTIONS)}")
    cfg = {**OPTIONS, **options}
    choices = SpikformerChoices(**{g: tuple(_choice_list(g, cfg[g])) for g in GENES})
    cfg.update(choices.to_dict())
    cfg["pool_before"] = [int(p) for p in _choice_list("pool_before", cfg["pool_before"])]
    for key in OPTIONS:
        if key in GENES or key == "pool_before" or not isinstance(cfg[key], str):
            continue
        try:
            cfg[key] = json.loads(cfg[key])
        except json.JSONDecodeError:
            pass        # a plain string (encoding, device)
    positive = ("batch_size", "lr", "bn_batches", "bn_batch_size", "e_target_ratio", "parents")
    for key in positive + ("supernet_epochs", "e_target"):
        v = cfg[key]
        if v is None and key in ("supernet_epochs", "e_target"):
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise SearchError(f"autospikformer: {key} must be a number > 0, got {v!r}")
    for key in ("batch_size", "bn_batches", "bn_batch_size", "parents", "supernet_epochs"):
        if cfg[key] is not None and cfg[key] != int(cfg[key]):
            raise SearchError(f"autospikformer: {key} must be an integer, got {cfg[key]!r}")
    if not 0.0 < float(cfg["val_fraction"]) < 1.0:
        raise SearchError(f"autospikformer: val_fraction must be in (0, 1) (sub-networks are selected on the "
                          f"validation split), got {cfg['val_fraction']!r}")
    if not 0.0 <= float(cfg["mutation_rate"]) <= 1.0:
        raise SearchError(f"autospikformer: mutation_rate must be in [0, 1], got {cfg['mutation_rate']!r}")
    if cfg["encoding"] not in ("direct", "rate", "latency"):
        raise SearchError(f"autospikformer: encoding must be direct, rate or latency, got {cfg['encoding']!r}")
    if not isinstance(cfg["sample_neurons"], bool):
        raise SearchError(f"autospikformer: sample_neurons must be true or false, got {cfg['sample_neurons']!r}")
    cfg["_choices"] = choices
    return cfg


_SUPERNETS: dict[tuple[str, int, int, str], tuple[SpikformerSupernet, dict[str, Any]]] = {}
_DATA: dict[tuple[Any, ...], DataBundle] = {}


def load_supernet(path: str | Path, device: str = "cpu") -> tuple[SpikformerSupernet, dict[str, Any]]:
    """The supernet saved by ``AutoSpikformerSpace.setup`` and its record (``config``, ``reference``,
    ``train_seconds``), cached per process (per file version and device); eval mode."""
    p = Path(path).resolve()
    st = p.stat() if p.is_file() else None
    key = (str(p), st.st_mtime_ns if st else 0, st.st_size if st else 0, str(device))
    if key not in _SUPERNETS:
        try:
            ck = load_checkpoint(p)
        except CheckpointError as e:
            raise SearchError(f"autospikformer: the supernet {p} cannot be read ({e})") from None
        rec = ck["meta"].get("autospikformer")
        if not isinstance(rec, dict):
            raise SearchError(f"autospikformer: {p} is not an Auto-Spikformer supernet (no meta.autospikformer)")
        net = _build_supernet(rec["config"])
        net.load_state_dict(ck["model"])
        _SUPERNETS.clear()      # one supernet per process is what a search needs
        _SUPERNETS[key] = (net.to(device).eval(), rec)
    return _SUPERNETS[key]


def _build_supernet(cfg: dict[str, Any]) -> SpikformerSupernet:
    return SpikformerSupernet(SpikformerChoices(**{g: tuple(cfg["choices"][g]) for g in GENES}),
                              img_size=cfg["img_size"], in_channels=cfg["in_channels"], num_classes=cfg["num_classes"],
                              T=cfg["T"], pool_before=tuple(cfg["pool_before"]))


@SEARCHES.register("autospikformer")
class AutoSpikformerSpace(SearchSpace):
    """Auto-Spikformer's search space: a weight-entangled Spikformer supernet, searched over depth, dim,
    heads, MLP ratio, LIF τ and V_th, scored with inherited weights (see the module docstring).

    Options (``OPTIONS``): the choice lists ``depth``, ``dim``, ``heads``, ``mlp_ratio``, ``tau``,
    ``v_threshold``; supernet training ``supernet_epochs`` (default: the context's epochs), ``batch_size``,
    ``lr`` (AdamW, cosine), ``weight_decay``, ``encoding``, ``pool_before``, ``val_fraction``,
    ``sample_neurons``; scoring ``bn_batches``, ``bn_batch_size``, ``e_target`` (µJ; default ``e_target_ratio``
    × the largest sub-network's energy), ``beta``; evolution ``parents``, ``mutation_rate``; ``device``.
    """

    name = "autospikformer"
    parents = 4

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.cfg = _parse(options)
        self.choices: SpikformerChoices = self.cfg["_choices"]
        self.parents = int(self.cfg["parents"])

    def check(self) -> None:
        """Options are checked when the space is built; the same ``SearchError`` is raised here."""
        _parse(self.options)

    # -- the supernet ------------------------------------------------------------------------------------
    def _data(self, ctx: EvalContext, seed: int) -> DataBundle:
        key = (ctx.dataset, ctx.T, ctx.data_root, float(self.cfg["val_fraction"]), seed, ctx.limit_train)
        if key not in _DATA:
            _DATA.clear()
            _DATA[key] = build_dataset(ctx.dataset, T=ctx.T, root=ctx.data_root, val_fraction=key[3], seed=seed,
                                       limit_train=ctx.limit_train, progress=False)
        return _DATA[key]

    def supernet_config(self, ctx: EvalContext, data: DataBundle) -> dict[str, Any]:
        """Everything the supernet's weights and its reference score depend on (JSON-able); a saved supernet
        is reused only when its config is this one."""
        c = self.cfg
        return {"choices": self.choices.to_dict(), "dataset": ctx.dataset, "data_root": ctx.data_root, "T": ctx.T,
                "limit_train": ctx.limit_train, "seed": ctx.seed, "img_size": data.img_size,
                "in_channels": data.in_channels, "num_classes": data.num_classes,
                "epochs": int(c["supernet_epochs"] or ctx.epochs), "pool_before": list(c["pool_before"]),
                **{k: c[k] for k in ("batch_size", "lr", "weight_decay", "encoding", "val_fraction",
                                     "sample_neurons", "bn_batches", "bn_batch_size")}}

    def setup(self, ctx: EvalContext) -> dict[str, Any]:
        """Train the supernet once (or load ``<run_dir>/supernet.safetensors`` when its config matches) and
        score the largest sub-network as the reference.

        Returns:
            ``supernet`` (the file), ``data_seed`` / ``calib_seed`` (the split and the BN batches every
            evaluation uses), ``e_target_uj``, ``reference`` (the largest sub-network's metrics and genotype),
            ``train_seconds`` and ``epochs``.
        """
        run_dir = Path(ctx.run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / _SUPERNET_FILE
        data = self._data(ctx, ctx.seed)
        cfg = json.loads(json.dumps(self.supernet_config(ctx, data)))
        if path.is_file():
            _, rec = load_supernet(path, self.cfg["device"])
            _same_config(rec["config"], cfg, path)
        else:
            rec = self._train(ctx, data, cfg, path)
        ref = rec["reference"]
        e_target = self.cfg["e_target"] or float(self.cfg["e_target_ratio"]) * float(ref["energy_uj"])
        return {"supernet": str(path), "data_seed": ctx.seed, "calib_seed": ctx.seed, "e_target_uj": float(e_target),
                "reference": ref, "train_seconds": rec["train_seconds"], "epochs": cfg["epochs"]}

    def _train(self, ctx: EvalContext, data: DataBundle, cfg: dict[str, Any], path: Path) -> dict[str, Any]:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            net = _build_supernet(cfg).to(self.cfg["device"])
        steps = cfg["epochs"] * -(-len(data.train) // cfg["batch_size"])  # type: ignore[arg-type]
        train_dir = Path(ctx.run_dir) / "supernet_train"
        last = train_dir / "checkpoints" / "last.safetensors"
        if last.is_file():      # a setup killed while training: continue it if it trained this supernet
            _same_config(load_checkpoint(last)["meta"].get("config", {}), cfg, last)
        t0 = time.perf_counter()
        fit(net, data, T=ctx.T, encoding=cfg["encoding"], epochs=cfg["epochs"], batch_size=cfg["batch_size"],
            optimizer=optimizer_factory("adamw", cfg["lr"], weight_decay=cfg["weight_decay"]),
            lr_schedule=cosine_warmup(cfg["lr"], steps), method=SupernetStep(self.choices, ctx.seed,
                                                                              cfg["sample_neurons"]),
            run_dir=train_dir, seed=ctx.seed, progress=False, config=cfg, eval_every=cfg["epochs"], resume=True)
        seconds = time.perf_counter() - t0
        net.eval()
        big = self.choices.largest()
        ref = {**self._measure(net, big, data, ctx.T, ctx.seed), "genotype": big}
        rec = {"config": cfg, "reference": ref, "train_seconds": seconds}
        save_checkpoint(path, model=net.state_dict(), meta={"autospikformer": rec})
        return rec

    def _measure(self, net: SpikformerSupernet, genotype: dict[str, Any], data: DataBundle, T: int,
                 calib_seed: int) -> dict[str, Any]:
        return measure_subnet(net, genotype, data, T=T, encoding=self.cfg["encoding"],
                              bn_batches=int(self.cfg["bn_batches"]), bn_batch_size=int(self.cfg["bn_batch_size"]),
                              calib_seed=calib_seed)

    # -- evolution --------------------------------------------------------------------------------------
    def random(self, rng: Random) -> dict[str, Any]:
        """Each gene uniformly from its choices."""
        return self.choices.sample(rng)

    def mutate(self, genotype: dict[str, Any], rng: Random) -> dict[str, Any]:
        """Each gene with more than one choice is redrawn, with probability ``mutation_rate``, to another of
        its choices; at least one gene changes (when any can)."""
        g = self.choices.check(genotype)
        genes = [k for k in GENES if len(getattr(self.choices, k)) > 1]
        picked = [k for k in genes if rng.random() < float(self.cfg["mutation_rate"])]
        if not picked and genes:
            picked = [rng.choice(genes)]
        for k in picked:
            g[k] = rng.choice([v for v in getattr(self.choices, k) if v != g[k]])
        return g

    def crossover(self, a: dict[str, Any], b: dict[str, Any], rng: Random) -> dict[str, Any]:
        """Uniform crossover (each gene from ``a`` or ``b``), for a runner that recombines parents as the paper
        does; always a valid genotype."""
        a, b = self.choices.check(a), self.choices.check(b)
        return {k: (a if rng.random() < 0.5 else b)[k] for k in GENES}

    # -- scoring ----------------------------------------------------------------------------------------
    def evaluate(self, genotype: dict[str, Any], ctx: EvalContext) -> dict[str, Any]:
        """The sub-network's ``val_accuracy``, ``test_accuracy``, ``energy_uj`` (µJ per sample, as
        ``spikeforge report``; with ``energy_mj``, ``ac``, ``mac``), ``params`` and the ``e_target_uj`` its
        fitness uses; inherited weights, BatchNorm recalibrated, deterministic."""
        g = self.choices.check(genotype)
        if "supernet" not in ctx.setup:
            raise SearchError("autospikformer: evaluate needs setup()'s result in ctx.setup (the supernet file)")
        net, rec = load_supernet(ctx.setup["supernet"], self.cfg["device"])
        data = self._data(ctx, int(ctx.setup.get("data_seed", rec["config"]["seed"])))
        m = self._measure(net, g, data, ctx.T, int(ctx.setup.get("calib_seed", rec["config"]["seed"])))
        target = self.cfg["e_target"] or ctx.setup.get("e_target_uj")
        return {**m, **({"e_target_uj": float(target)} if target else {})}

    def fitness(self, metrics: dict[str, Any]) -> float:
        """``aeb_fitness(val_accuracy, energy_uj, e_target_uj, 0, beta)``; the target is the option
        ``e_target`` or the one ``evaluate`` recorded."""
        target = self.cfg["e_target"] or metrics.get("e_target_uj")
        if not target:
            raise SearchError("autospikformer: no energy target: set e_target (µJ) or score metrics from evaluate")
        return aeb_fitness(metrics["val_accuracy"], metrics["energy_uj"], float(target), beta=float(self.cfg["beta"]))


def _same_config(saved: dict[str, Any], wanted: dict[str, Any], path: Path) -> None:
    if saved == wanted:
        return
    diff = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
    k = diff[0]
    raise SearchError(f"autospikformer: {path} was trained with {k}={saved.get(k)!r}, this search asks for "
                      f"{wanted.get(k)!r} (differing: {diff}); use a new run folder or remove the file")


"""Architecture search on Ray (issue 18's reproductions), each part a subcommand:

    python examples/search_digits.py spenser          # digits: λ = 4, 8 generations, 3 epochs at T = 4
    python examples/search_digits.py spenser --dataset fashion-mnist --limit-train 5000 --generations 4
    python examples/search_digits.py autospikformer --population 8 --generations 6 --epochs 10
                                                      # digits, Spikformer-{1,2}-{32,48,64}, T = 2: Pareto front
    python examples/search_digits.py speedup --generations 1 --population 16
                                                      # 2 workers × 1 thread against 1 worker × 2 threads

* **spenser**: the search, then the best fitness per generation (it must never drop), the best candidate's
  validation and test accuracy (its own short training, nothing selected on the test split), and
  ``spiking_cnn_tiny`` trained the same way: for the candidates' epochs, and for the search's whole budget
  (all candidates' epochs).
* **autospikformer**: the supernet trained once (``--epochs-per-candidate`` epochs), sub-networks scored with
  inherited weights; the Pareto front (validation accuracy against energy per sample) is printed and plotted
  to ``--plot`` beside every candidate and the largest sub-network.
* **speedup**: the same SPENSER search (``--generations``, ``--population``, ``--epochs``) run in two fresh
  processes, one per setting; candidates per minute of each, from the runner's progress line (after Ray's
  start, with the workers' start).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from spikeforge.app import TrainConfig, train
from spikeforge.app.search import search
from spikeforge.search import read_candidates


def spenser(args: argparse.Namespace) -> None:
    out = args.out / f"spenser-{args.dataset}"
    space_args = {"img_size": 8 if args.dataset == "digits" else 28}
    flags = (f"--space spenser --dataset {args.dataset} --generations {args.generations} --population "
             f"{args.population} --epochs-per-candidate {args.epochs} --T {args.T} --workers {args.workers} "
             f"--seed {args.seed} --run-dir {out} --space-arg img_size={space_args['img_size']}"
             + (f" --limit-train {args.limit_train}" if args.limit_train else ""))
    print(f"spikeforge search {flags}", flush=True)
    res = search("spenser", args.dataset, args.generations, args.population, args.epochs, args.workers, args.seed,
                 out, T=args.T, limit_train=args.limit_train, space_args=space_args, resume=(out / "search.json")
                 .exists())
    cands = read_candidates(out / "candidates.jsonl")
    best_by_gen = [max(c["fitness"] for c in cands if c["generation"] <= g) for g in range(args.generations + 1)]
    assert best_by_gen == sorted(best_by_gen), "the best fitness dropped"
    best = res["best"]["metrics"]
    print(f"best fitness per generation: {', '.join(f'{f:.4f}' for f in best_by_gen)}")
    print(f"best candidate: val {100 * best['val_accuracy']:.2f}%, test {100 * best['test_accuracy']:.2f}% after "
          f"{args.epochs} epochs; {best['params']} parameters, {best['energy_uj']:.3f} µJ per sample")
    print(f"genotype: {json.dumps(res['best_genotype'])[:400]}")
    budget = len(cands) * args.epochs
    for epochs in (args.epochs, budget):
        cfg = TrainConfig(dataset=args.dataset, model="spiking_cnn_tiny", model_args={"pool": "max"}, T=args.T,
                          encoding="direct", epochs=epochs, seed=args.seed, progress=False, threads=1,
                          limit_train=args.limit_train, eval_every=epochs, run_dir=str(out / f"baseline-{epochs}"))
        r, _, _ = train(cfg, overwrite=True)
        last = r.history[-1]
        print(f"spiking_cnn_tiny, {epochs} epochs: val {100 * last['val_accuracy']:.2f}%, test "
              f"{100 * last['test_accuracy']:.2f}% (last epoch)", flush=True)


def autospikformer(args: argparse.Namespace) -> None:
    out = args.out / "autospikformer-digits"
    res = search("autospikformer", "digits", args.generations, args.population, args.epochs, args.workers,
                 args.seed, out, T=2, space_args={}, resume=(out / "search.json").exists())
    cands = read_candidates(out / "candidates.jsonl")
    setup = json.loads((out / "setup.json").read_text())
    ref = setup.get("reference", {})
    print(f"supernet: {setup.get('epochs')} epochs, {setup.get('train_seconds', 0):.0f} s; largest sub-network: "
          f"{json.dumps(ref)[:300]}")
    front = json.loads((out / "pareto.json").read_text())
    print(f"{len(cands)} candidates, best fitness {res['best']['fitness']:.4f}; Pareto front (val accuracy, energy "
          "µJ per sample, genotype):")
    for c in front:
        g = c["genotype"]
        print(f"  {100 * c['metrics']['val_accuracy']:6.2f}%  {c['metrics']['energy_uj']:7.3f} µJ  "
              f"test {100 * c['metrics']['test_accuracy']:6.2f}%  Spikformer-{g['depth']}-{g['dim']} heads "
              f"{g['heads']} mlp {g['mlp_ratio']} τ {g['tau']} V_th {g['v_threshold']}")
    plot(cands, front, ref, args.plot)


def plot(cands: list[dict[str, Any]], front: list[dict[str, Any]], ref: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.scatter([c["metrics"]["energy_uj"] for c in cands], [100 * c["metrics"]["val_accuracy"] for c in cands],
               s=12, c="0.7", label="candidates")
    ax.plot([c["metrics"]["energy_uj"] for c in front], [100 * c["metrics"]["val_accuracy"] for c in front],
            "o-", c="C0", label="Pareto front")
    if "energy_uj" in ref and "val_accuracy" in ref:
        ax.scatter([ref["energy_uj"]], [100 * ref["val_accuracy"]], marker="*", s=120, c="C3",
                   label="largest sub-network")
    ax.set_xlabel("energy per sample (µJ, 45 nm, report's convention)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Auto-Spikformer on digits, T = 2")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


def speedup(args: argparse.Namespace) -> None:
    rates = {}
    for workers, threads in ((2, 1), (1, 2)):
        out = args.out / f"speed-w{workers}t{threads}"
        cmd = [sys.executable, "-m", "spikeforge", "search", "--space", "spenser", "--dataset", "digits",
               "--generations", str(args.generations), "--population", str(args.population),
               "--epochs-per-candidate", str(args.epochs), "--T", "4",
               "--workers", str(workers), "--threads", str(threads), "--seed", str(args.seed), "--run-dir",
               str(out), "--space-arg", "img_size=8"]
        if (out / "search.json").exists():
            cmd.append("--resume")
        p = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rate = float(re.findall(r"([\d.]+) candidates/min", p.stderr)[-1])
        rates[(workers, threads)] = rate
        print(f"{workers} worker(s) × {threads} thread(s): {rate:.1f} candidates/min", flush=True)
    print(f"speed-up of 2 workers × 1 thread over 1 worker × 2 threads: {rates[(2, 1)] / rates[(1, 2)]:.2f}×")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=("spenser", "autospikformer", "speedup"))
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--generations", type=int, default=8)
    ap.add_argument("--population", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--T", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit-train", dest="limit_train", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("runs/search"))
    ap.add_argument("--plot", type=Path, default=Path("docs/assets/autospikformer-pareto.png"))
    args = ap.parse_args()
    {"spenser": spenser, "autospikformer": autospikformer, "speedup": speedup}[args.part](args)


if __name__ == "__main__":
    main()

"""LATS soft-threshold pruning on scikit-learn's digits: sparsity against accuracy for four threshold schedules
(issue 16's reproduction; Chen et al., ICLR 2023, arXiv 2302.13019).

Network: SNN MLP 64-256-10 (``spiking_mlp_tiny --model-arg hidden=256``: Linear-LIF-Linear, LIF τ = 2,
ATan surrogate), T = 4, rate-coded input, SGD (momentum 0.9, weight decay 0) with a cosine learning rate
from 0.2 to 0 (no warm-up: S-LATS is the integral of that cosine), 40 epochs, batch 64. Every Linear
weight is soft-thresholded, ``w = sign(θ)·max(|θ| − d, 0)``.

For each schedule (constant, linear ramp, S-LATS, LATS), each target sparsity and each seed, the final
threshold ``D`` is **bisected** (in log D, regula falsi) until the trained model's sparsity is within ±1 point
of the target. Sparsity is a property of the weights trained on the training split; the validation and test
splits are not looked at while choosing ``D``. The first probe of every bisection is ``lats@TARGET`` (``D`` =
the TARGET quantile of |θ| at initialisation), so the table also shows what that calibration gives.
Accuracies are last-epoch test accuracies.

    python examples/lats_digits.py [--seeds 0 1 2] [--targets 0.5 0.75 0.9 0.95 0.97] [--epochs 40]
                                   [--out runs/lats-digits]

Each run is equivalent to::

    spikeforge train --dataset digits --model spiking_mlp_tiny --model-arg hidden=256 --T 4 --epochs 40 \\
        --optimizer sgd --momentum 0.9 --lr 0.2 --schedule cosine --prune lats:schedule=slats,D=<D> --seed 0

(the constant column: ``--prune lats:schedule=constant,shift=false,D=<D>``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from spikeforge.app import TrainConfig, train

SCHEDULES = {"constant": "schedule=constant,shift=false", "linear": "schedule=linear", "slats": "schedule=slats",
             "lats": "schedule=lats"}
"""What each column runs. The bisected constant threshold starts from θ = w (``shift=false``): with the
official init θ = sign(w)(|w| + D) the weights start dense whatever D is, and D does not set the sparsity
(``shifted_constant`` measures that)."""


SGD = {"lr": 0.2, "momentum": 0.9}
"""The optimiser's settings (``--lr`` / ``--momentum`` change them)."""


def run(prune: str | None, seed: int, epochs: int, scratch: Path) -> dict[str, Any]:
    """Train once; the final sparsity, threshold and accuracies."""
    cfg = TrainConfig(dataset="digits", model="spiking_mlp_tiny", model_args={"hidden": 256}, T=4, epochs=epochs,
                      optimizer="sgd", momentum=SGD["momentum"], lr=SGD["lr"], schedule="cosine", seed=seed,
                      progress=False, eval_every=epochs, prune=prune, run_dir=str(scratch), threads=1)
    result, model, _ = train(cfg, overwrite=True)
    last = result.history[-1]
    out = {"test": 100 * last["test_accuracy"], "val": 100 * last["val_accuracy"]}
    for comp in getattr(model, "_spikeforge_compressors", []):
        d = comp.describe(model)
        out.update(sparsity=d["sparsity"], D=d["D"])
    return out


def bisect(schedule: str, target: float, seed: int, epochs: int, scratch: Path, tol: float = 0.01,
           max_runs: int = 10) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Find D whose trained sparsity is within ``tol`` of ``target``: the chosen run and every probe."""
    probes: list[dict[str, Any]] = []
    r = run(f"lats:{SCHEDULES[schedule]}@{target}", seed, epochs, scratch)
    probes.append(r)
    lo: tuple[float, float] | None = None          # (log D, sparsity) below the target
    hi: tuple[float, float] | None = None          # ... above it
    while abs(r["sparsity"] - target) > tol and len(probes) < max_runs:
        x, y = math.log(max(r["D"], 1e-6)), r["sparsity"]
        if y < target:
            lo = (x, y)
        else:
            hi = (x, y)
        if lo is None:
            nxt = hi[0] - math.log(2.0)  # type: ignore[index]
        elif hi is None:
            nxt = lo[0] + math.log(2.0)
        else:
            t = (target - lo[1]) / max(hi[1] - lo[1], 1e-9)
            nxt = lo[0] + min(max(t, 0.15), 0.85) * (hi[0] - lo[0])   # interpolate, but shrink the bracket
        r = run(f"lats:{SCHEDULES[schedule]},D={math.exp(nxt):.6g}", seed, epochs, scratch)
        probes.append(r)
    return r, probes


def shifted_constant(seed: int, epochs: int, scratch: Path) -> list[dict[str, Any]]:
    """The official constant threshold (θ starts at sign(w)(|w| + D)) at D = the init's 0.9 quantile × 1, 4, 16."""
    first = run("lats:schedule=constant@0.9", seed, epochs, scratch)
    return [first] + [run(f"lats:schedule=constant,D={k * first['D']:.6g}", seed, epochs, scratch) for k in (4, 16)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--targets", type=float, nargs="+", default=[0.5, 0.75, 0.9, 0.95, 0.97])
    ap.add_argument("--schedules", nargs="+", default=list(SCHEDULES), choices=list(SCHEDULES))
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--out", type=Path, default=Path("runs/lats-digits"))
    ap.add_argument("--lr", type=float, default=0.2)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--no-shifted", action="store_true", help="skip the official shifted-constant runs")
    args = ap.parse_args()
    SGD.update(lr=args.lr, momentum=args.momentum)
    args.out.mkdir(parents=True, exist_ok=True)
    scratch = args.out / "scratch"
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    dense = [run(None, s, args.epochs, scratch)["test"] for s in args.seeds]
    print(f"dense: {statistics.mean(dense):.2f} % ({', '.join(f'{v:.2f}' for v in dense)})", flush=True)
    for schedule in args.schedules:
        for target in args.targets:
            for seed in args.seeds:
                r, probes = bisect(schedule, target, seed, args.epochs, scratch)
                rows.append({"schedule": schedule, "target": target, "seed": seed, "D": r["D"],
                             "sparsity": r["sparsity"], "test": r["test"], "val": r["val"], "runs": len(probes),
                             "calibrated_D": probes[0]["D"], "calibrated_sparsity": probes[0]["sparsity"]})
                print(json.dumps(rows[-1]), f"[{time.perf_counter() - t0:.0f} s]", flush=True)
    shifted = [] if args.no_shifted else shifted_constant(args.seeds[0], args.epochs, scratch)
    with open(args.out / "lats.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    report(rows, dense, args)
    if shifted:
        print(f"\nconstant with the official init θ = sign(w)(|w| + D), seed {args.seeds[0]}: D → sparsity %, test %")
    for r in shifted:
        print(f"  D {r['D']:.4g}: {100 * r['sparsity']:.1f} %, {r['test']:.2f} %")
    print(f"total {time.perf_counter() - t0:.0f} s; rows in {args.out / 'lats.csv'}")


def report(rows: list[dict[str, Any]], dense: list[float], args: argparse.Namespace) -> None:
    """Print the tables (mean over seeds, per-seed values) and draw the sparsity-accuracy curves."""
    def cell(schedule: str, target: float, key: str) -> list[float]:
        return [r[key] for r in rows if r["schedule"] == schedule and r["target"] == target]

    print(f"\ndigits, MLP 64-256-10, T=4, SGD {args.lr} (momentum {args.momentum}) cosine, {args.epochs} epochs, "
          f"seeds {args.seeds}; dense "
          f"{statistics.mean(dense):.2f} %")
    print("test accuracy % at the bisected D (mean over seeds; achieved sparsity in brackets)")
    print("| target | " + " | ".join(args.schedules) + " |")
    print("|---" * (len(args.schedules) + 1) + "|")
    for t in args.targets:
        cells = [f"{statistics.mean(cell(s, t, 'test')):.2f} ({100 * statistics.mean(cell(s, t, 'sparsity')):.1f}%)"
                 for s in args.schedules]
        print(f"| {100 * t:.0f}% | " + " | ".join(cells) + " |")
    if {"slats", "linear"} <= set(args.schedules):
        print("\nS-LATS − linear ramp, per seed (test accuracy points)")
        for t in args.targets:
            diff = [a - b for a, b in zip(cell("slats", t, "test"), cell("linear", t, "test"))]
            print(f"  {100 * t:.0f}%: mean {statistics.mean(diff):+.2f}  ({', '.join(f'{d:+.2f}' for d in diff)})")
    print("\nlats@TARGET (D = init quantile of |θ|): final sparsity %, mean over seeds")
    for s in args.schedules:
        print(f"  {s:8s} " + "  ".join(f"{100 * t:.0f}%→{100 * statistics.mean(cell(s, t, 'calibrated_sparsity')):.1f}"
                                      for t in args.targets))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    dead = [s for s in args.schedules if max(statistics.mean(cell(s, t, "test")) for t in args.targets) < 50]
    for s in args.schedules:
        if s in dead:          # at chance: drawn, it would squash the others into one line
            continue
        xs = [100 * statistics.mean(cell(s, t, "sparsity")) for t in args.targets]
        ys = [statistics.mean(cell(s, t, "test")) for t in args.targets]
        es = [statistics.stdev(cell(s, t, "test")) if len(args.seeds) > 1 else 0.0 for t in args.targets]
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=s)
    ax.axhline(statistics.mean(dense), color="gray", ls="--", label="dense")
    ax.set_xlabel("sparsity (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("LATS schedules, digits MLP 64-256-10, T=4"
                 + (f"\n(at chance, not drawn: {', '.join(dead)})" if dead else ""), fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "lats_sparsity_accuracy.png", dpi=120)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()

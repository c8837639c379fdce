"""Gradient Rewiring on scikit-learn's digits: connectivity against epochs, accuracy against dense, regrowth
(issue 16's reproduction; Chen et al., IJCAI 2021; official code Yanqi-Chen/Gradient-Rewiring).

Network: SNN MLP 64-256-10 (``spiking_mlp_tiny --model-arg hidden=256``: Linear-LIF-Linear, LIF τ = 2,
ATan surrogate), T = 8, rate-coded input, MSE between the time-averaged output and the one-hot label (the
official MNIST script's loss), Adam lr 1e-3 constant (AdamW with weight decay 0), batch 64, 60 epochs.
Grad R on both Linear weights for α ∈ {1e-3, 1e-2, 1e-1} × s ∈ {0.9, 0.97}, and the dense network.
Connectivity, regrown and pruned synapses are the per-epoch numbers the run logs (``train_gradr_*`` in
``metrics.csv``): regrown = connected at the end of the epoch but not at its start (the official count).
Accuracies are last-epoch test accuracies (no selection on the test split).

The prior's centre μ = ln(2(1 − s))/α is −1609 (α = 1e-3), −161 (1e-2) or −16 (1e-1) for s = 0.9 — far below
every θ — so sign(θ − μ) = +1 and the prior is a constant shrink of α·lr/(1 − β₁ᵗ) per step (≈ α·lr·1269
over 60 epochs of 21 steps). The script measures what that does rather than expecting connectivity 1 − s,
and runs α = 0.1, s = 0.9 for ``--long`` epochs to see whether connectivity stops at 1 − s.

    python examples/gradr_digits.py [--seeds 0 1 2] [--epochs 60] [--long 240] [--out runs/gradr-digits]

Each run is equivalent to::

    spikeforge train --dataset digits --model spiking_mlp_tiny --model-arg hidden=256 --T 8 --loss mse_rate \\
        --optimizer adamw --lr 1e-3 --schedule constant --epochs 60 --rewire gradr:s=0.9,alpha=1e-3 --seed 0
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from spikeforge.app import TrainConfig, train

ALPHAS = (1e-3, 1e-2, 1e-1)
TARGETS = (0.9, 0.97)


def run(rewire: str | None, seed: int, epochs: int, scratch: Path) -> dict[str, Any]:
    """Train once: per-epoch connectivity/regrowth, the final accuracy and the final weights."""
    cfg = TrainConfig(dataset="digits", model="spiking_mlp_tiny", model_args={"hidden": 256}, T=8, epochs=epochs,
                      loss="mse_rate", optimizer="adamw", lr=1e-3, weight_decay=0.0, schedule="constant", seed=seed,
                      progress=False, eval_every=epochs, rewire=rewire, run_dir=str(scratch), threads=1)
    result, model, _ = train(cfg, overwrite=True)
    h = result.history
    return {"test": 100 * h[-1]["test_accuracy"], "steps": int(h[-1]["step"]),
            "connectivity": [r.get("train_gradr_connectivity", 1.0) for r in h],
            "regrown": [int(r.get("train_gradr_regrown", 0)) for r in h],
            "pruned": [int(r.get("train_gradr_pruned", 0)) for r in h],
            "weights": {k: v.detach().clone() for k, v in model.state_dict().items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--out", type=Path, default=Path("runs/gradr-digits"))
    ap.add_argument("--long", type=int, default=240, help="epochs of one longer α = 0.1, s = 0.9 run (0: none)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    scratch = args.out / "scratch"
    t0 = time.perf_counter()
    res: dict[tuple[float, float] | None, list[dict[str, Any]]] = {None: []}
    for seed in args.seeds:
        res[None].append(run(None, seed, args.epochs, scratch))
        print(f"dense seed {seed}: {res[None][-1]['test']:.2f} % [{time.perf_counter() - t0:.0f} s]", flush=True)
        for alpha in ALPHAS:
            for s in TARGETS:
                r = run(f"gradr:s={s},alpha={alpha}", seed, args.epochs, scratch)
                res.setdefault((alpha, s), []).append(r)
                print(f"alpha {alpha:g} s {s}: seed {seed}: {r['test']:.2f} %, connectivity "
                      f"{r['connectivity'][-1]:.4f}, regrown {sum(r['regrown'])} [{time.perf_counter() - t0:.0f} s]",
                      flush=True)
    report(res, args)
    if args.long:
        r = run("gradr:s=0.9,alpha=0.1", args.seeds[0], args.long, scratch)
        marks = [e for e in (30, 60, 120, 180, 240, 360, 480) if e <= args.long]
        below = next((e for e, c in enumerate(r["connectivity"], 1) if c <= 0.1), None)
        print(f"\nα = 0.1, s = 0.9, {args.long} epochs, seed {args.seeds[0]}: connectivity "
              + ", ".join(f"e{e} {r['connectivity'][e - 1]:.3f}" for e in marks)
              + f"; below 1 − s = 0.1 from epoch {below}; test accuracy {r['test']:.2f} %")
    print(f"total {time.perf_counter() - t0:.0f} s")


def report(res: dict[Any, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    """The tables (mean over seeds with per-seed values), the per-epoch CSV and the figure."""
    def fmt(vals: list[float], nd: int = 2) -> str:
        return f"{statistics.mean(vals):.{nd}f} ({', '.join(f'{v:.{nd}f}' for v in vals)})"

    dense = [r["test"] for r in res[None]]
    steps = res[None][0]["steps"]
    print(f"\ndigits, MLP 64-256-10, T=8, MSE, Adam 1e-3, {args.epochs} epochs, seeds {args.seeds}")
    print(f"dense test accuracy {fmt(dense)} %\n")
    print("| α | s | μ | final connectivity | test accuracy % | Δ vs dense | regrown (all epochs) "
          "| same weights as s=0.9 |")
    print("|---|---|---|---|---|---|---|---|")
    for alpha in ALPHAS:
        for s in TARGETS:
            rs = res[(alpha, s)]
            mu = math.log(2 * (1 - s)) / alpha
            same = all(all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])
                       for a, b in zip(rs, res[(alpha, 0.9)]))
            delta = statistics.mean(r["test"] for r in rs) - statistics.mean(dense)
            print(f"| {alpha:g} | {s} | {mu:.0f} | {fmt([r['connectivity'][-1] for r in rs], 4)} | "
                  f"{fmt([r['test'] for r in rs])} | {delta:+.2f} "
                  f"| {fmt([float(sum(r['regrown'])) for r in rs], 0)} | {'yes' if same else 'no'} |")
        print(f"|   | prior shift over the run ≈ α·lr·steps = {alpha * 1e-3 * steps:.4g} "
              "(mean |θ₀| ≈ 0.0625 first layer, 0.031 head) |||||")
    with open(args.out / "gradr_epochs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["alpha", "s", "seed", "epoch", "connectivity", "regrown", "pruned"])
        for key, rs in res.items():
            if key is None:
                continue
            for seed, r in zip(args.seeds, rs):
                for e, (c, g, p) in enumerate(zip(r["connectivity"], r["regrown"], r["pruned"]), 1):
                    w.writerow([key[0], key[1], seed, e, f"{c:.6f}", g, p])
    print(f"\nper-epoch connectivity/regrowth: {args.out / 'gradr_epochs.csv'}")
    print("connectivity at epochs 1, 10, 30, 60 and regrown per epoch (mean over seeds), s = 0.9:")
    for alpha in ALPHAS:
        rs = res[(alpha, 0.9)]
        conn = [statistics.mean(r["connectivity"][e] for r in rs) for e in range(args.epochs)]
        reg = [statistics.mean(r["regrown"][e] for r in rs) for e in range(args.epochs)]
        marks = [e for e in (1, 10, 30, 60) if e <= args.epochs]
        print(f"  α {alpha:g}: " + ", ".join(f"e{e} {conn[e - 1]:.3f}" for e in marks)
              + f"; regrown/epoch e1-10 {statistics.mean(reg[:10]):.1f}, last 10 {statistics.mean(reg[-10:]):.1f}")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    epochs = range(1, args.epochs + 1)
    for alpha in ALPHAS:
        for s, ls in zip(TARGETS, ("-", ":")):
            rs = res[(alpha, s)]
            a1.plot(epochs, [statistics.mean(r["connectivity"][e] for r in rs) for e in range(args.epochs)], ls=ls,
                    label=f"α={alpha:g}, s={s}")
        rs = res[(alpha, 0.9)]
        a2.plot(epochs, [statistics.mean(r["regrown"][e] for r in rs) for e in range(args.epochs)],
                label=f"α={alpha:g}")
    for s in TARGETS:
        a1.axhline(1 - s, color="gray", lw=0.8, ls="--")
    a1.set_xlabel("epoch")
    a1.set_ylabel("connectivity")
    a1.set_title("Grad R connectivity (dashed: 1 − s)")
    a1.legend(fontsize=7)
    a2.set_xlabel("epoch")
    a2.set_ylabel("synapses regrown in the epoch")
    a2.set_yscale("symlog")
    a2.set_title("regrowth (s = 0.9)")
    a2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.out / "gradr_connectivity.png", dpi=120)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()

"""Temporal contrastive learning on scikit-learn's digits: does TCL lose less when run with fewer steps?

The paper's claim (Qiu et al., arXiv 2305.13909): cross-entropy on the mean output degrades quickly when a
network trained at T steps runs at fewer; TCL keeps its accuracy. Here the zoo's small CNN
(``spiking_cnn_tiny``: conv16-BN-LIF-pool-conv32-BN-LIF-pool-linear, 8×8 input) is trained at T = 4 with each
loss — ``ce`` (CE of the mean output), ``tet`` (CE at every step), ``tcl`` (CE + 0.5 × SupCon over the time
steps, τ = 0.1) and ``stcl`` (TCL over two randomly shifted views) — and evaluated, without retraining, at
T = 1, 2 and 4. Direct input, AdamW 5e-3, cosine schedule, batch 64. Accuracies are last-epoch test
accuracies (no selection on the test split), mean ± standard deviation over the seeds, per seed beside.

    python examples/tcl_digits.py [--seeds 0 1 2] [--epochs 20] [--out runs/tcl-digits]
    python examples/tcl_digits.py --quick       # 3 epochs on 512 samples, 2 seeds: a smoke run, not a result

The command each run is equivalent to::

    spikeforge train --dataset digits --model spiking_cnn_tiny --T 4 --encoding direct --loss tcl \\
        --optimizer adamw --lr 5e-3 --schedule cosine --epochs 20 --batch-size 64 --seed 0
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from spikeforge.app import TrainConfig, train
from spikeforge.training import evaluate

LOSSES = ("ce", "tet", "tcl", "stcl")
STEPS = (1, 2, 4)


def run(loss: str, seed: int, epochs: int, limit: int | None, out: Path) -> dict[int, float]:
    """Train at T = 4 with ``loss``; the test accuracy (%) at each T of ``STEPS``."""
    cfg = TrainConfig(dataset="digits", model="spiking_cnn_tiny", T=4, encoding="direct", loss=loss,
                      optimizer="adamw", lr=5e-3, schedule="cosine", epochs=epochs, batch_size=64, seed=seed,
                      limit_train=limit, progress=False, run_dir=str(out / f"{loss}-{seed}"))
    _, model, data = train(cfg, overwrite=True)
    return {T: 100 * evaluate(model, data.test, data.kind, T, "direct")["accuracy"] for T in STEPS}


def summary(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):5.1f} ± {sd:4.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2 (0 1 with --quick)")
    ap.add_argument("--epochs", type=int, default=None, help="default 20 (3 with --quick)")
    ap.add_argument("--losses", nargs="+", default=list(LOSSES), choices=LOSSES)
    ap.add_argument("--quick", action="store_true", help="a smoke run: 3 epochs on 512 training samples, 2 seeds")
    ap.add_argument("--out", type=Path, default=Path("runs/tcl-digits"))
    args = ap.parse_args()
    seeds = args.seeds or ([0, 1] if args.quick else [0, 1, 2])
    epochs = args.epochs or (3 if args.quick else 20)
    limit = 512 if args.quick else None
    torch.set_num_threads(2)
    acc: dict[str, list[dict[int, float]]] = {loss: [] for loss in args.losses}
    for seed in seeds:
        for loss in args.losses:
            acc[loss].append(run(loss, seed, epochs, limit, args.out))
            print(loss, seed, {f"T={T}": round(a, 2) for T, a in acc[loss][-1].items()}, flush=True)

    what = f"{limit} training samples" if limit else "the full training split"
    print(f"\ndigits, spiking_cnn_tiny trained at T=4 for {epochs} epochs on {what}, seeds {seeds}:")
    print("test accuracy (%) when run at T steps, mean ± std over seeds [per seed]")
    print(f"  {'loss':5}" + "".join(f"{f'T={T}':>16}" for T in STEPS) + "   drop T=4→1")
    for loss, runs in acc.items():
        cells = "".join(f"{summary([r[T] for r in runs]):>16}" for T in STEPS)
        drop = summary([r[4] - r[1] for r in runs])
        print(f"  {loss:5}{cells}   {drop}   [" + "; ".join(
            ", ".join(f"{r[T]:.1f}" for T in STEPS) for r in runs) + "]")


if __name__ == "__main__":
    main()

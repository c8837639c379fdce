"""ANN→SNN conversion: accuracy against T for max-norm, percentile-norm and QCFS, beside the ANNs (issue 14).

Per dataset and seed, two ANN twins of the spiking CNN with average pooling (``spiking_cnn_tiny --model-arg
pool=avg``: conv-BN-act-avgpool twice, linear head) are trained at T = 1 on direct input: ``--method ann``
(ReLU) and ``--method qcfs`` (L = 4, λ from 2, φ = 0.5). Each is converted with ``spikeforge convert`` to IF
neurons with reset by subtraction at T = 4, 8, 16, 32, 64:

* ``max``: θ = the largest activation of each layer over 10 training batches (Diehl et al. 2015);
* ``p99.99``: θ = the 99.99th percentile of the positive activations (Rueckauer et al. 2017; fixed, not
  tuned, so nothing is chosen on any split);
* ``max + θ/2``: ``max``, with the IF neurons started at θ/2 (``--shift 0.5``): the initial membrane
  alone, without QCFS training;
* ``qcfs``: θ = the trained clip λ, IF neurons started at θ/2 (Bu et al. 2022).

The checkpoint converted is each run's ``best`` (by validation accuracy); thresholds come from training
data only. Every figure is the median over the seeds, the per-seed values beside it.

    python examples/conversion.py [--datasets digits fashion-mnist] [--seeds 0 1 2] [--out runs/conversion]

Each run is equivalent to::

    spikeforge train --dataset digits --model spiking_cnn_tiny --model-arg pool=avg --method qcfs \\
        --epochs 20 --batch-size 64 --lr 5e-3 --seed 0 --run-dir runs/conversion/digits-qcfs-0
    spikeforge convert runs/conversion/digits-qcfs-0 --T 4 8 16 32 64

A dataset that is not installed (``fashion-mnist`` is the Debian package ``fashion-mnist``) is skipped with
a note.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from spikeforge.app import TrainConfig, convert_run, train
from spikeforge.core import UserError

SETTINGS = {"digits": {"epochs": 20, "batch_size": 64}, "fashion-mnist": {"epochs": 5, "batch_size": 128}}
STEPS = [4, 8, 16, 32, 64]
# row → (the twin, convert_run's settings, the output folder inside the run)
ROWS = {"max": ("ann", {"norm": "max"}, "convert-max"),
        "p99.99": ("ann", {"norm": "percentile", "percentile": 99.99}, "convert-p99.99"),
        "max + θ/2": ("ann", {"norm": "max", "shift": 0.5}, "convert-max-shift0.5"),
        "qcfs": ("qcfs", {}, "convert-clip")}


def twin(dataset: str, method: str, seed: int, out: Path) -> Path:
    run = out / f"{dataset}-{method}-{seed}"
    cfg = TrainConfig(dataset=dataset, model="spiking_cnn_tiny", model_args={"pool": "avg"}, method=method, T=1,
                      encoding="direct", lr=5e-3, seed=seed, progress=False, run_dir=str(run), **SETTINGS[dataset])
    train(cfg, overwrite=True)
    return run


def one_seed(dataset: str, seed: int, out: Path) -> dict[str, Any]:
    runs = {m: twin(dataset, m, seed, out) for m in ("ann", "qcfs")}
    res: dict[str, Any] = {}
    for row, (method, kw, folder) in ROWS.items():
        r = convert_run(runs[method], STEPS, out_dir=runs[method] / folder, overwrite=True, **kw)
        res[f"ANN ({method})"] = 100 * r["ann_test_accuracy"]
        res[row] = {t: 100 * r["test_accuracy"][str(t)] for t in STEPS}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", nargs="+", default=["digits", "fashion-mnist"], choices=list(SETTINGS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=Path("runs/conversion"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    summary: dict[str, list[dict[str, Any]]] = {}
    for dataset in args.datasets:
        t0 = time.perf_counter()
        try:
            summary[dataset] = [one_seed(dataset, s, args.out) for s in args.seeds]
        except UserError as e:
            print(f"{dataset}: skipped ({e})")
            continue
        print(f"\n{dataset}: spiking_cnn_tiny pool=avg, {SETTINGS[dataset]['epochs']} epochs, seeds {args.seeds}, "
              f"{time.perf_counter() - t0:.0f} s; test accuracy %, median (per seed)\n")
        print("| | " + " | ".join(f"T={t}" for t in STEPS) + " |")
        print("|---" * (len(STEPS) + 1) + "|")
        runs = summary[dataset]
        for ann in ("ANN (ann)", "ANN (qcfs)"):
            vals = [r[ann] for r in runs]
            print(f"| {ann} | {statistics.median(vals):.2f} ({', '.join(f'{v:.1f}' for v in vals)}) |" + " |" *
                  (len(STEPS) - 1))
        for row in ROWS:
            cells = []
            for t in STEPS:
                vals = [r[row][t] for r in runs]
                cells.append(f"{statistics.median(vals):.2f} ({', '.join(f'{v:.1f}' for v in vals)})")
            print(f"| {row} | " + " | ".join(cells) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

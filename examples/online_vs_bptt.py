"""Online training (SLTT, ``--method online``) against BPTT: the same network, data, loss and epochs.

Fashion-MNIST, the first ``--limit-train`` training images (5,000 by default) and the whole test set
(10,000), direct encoding over T = 6 steps (SLTT's CIFAR setting), ``spiking_cnn_tiny`` (Conv(1→16)-BN-LIF-
MaxPool-Conv(16→32)-BN-LIF-MaxPool-Linear, LIF τ = 2 with the ATan surrogate, the zoo default), AdamW 1e-3
with a cosine schedule, batch 64, ``--epochs`` epochs (10 by default), ``--loss ce``. The rows:

* ``bptt``: backpropagation through time, cross-entropy of the time-averaged output;
* ``online``: SLTT — one step forward and backward at a time, the neurons' state detached between steps;
  its objective is the configured loss of each step's output, averaged over the steps (TET's form of
  cross-entropy);
* ``bptt (tet)`` (``--rows bptt online "bptt (tet)"``): BPTT with that same per-step loss (``--loss tet``),
  which separates what the per-step loss does from what dropping the temporal gradient does.

Every figure is the test accuracy after the last epoch (no selection on the test split), mean ± standard
deviation over the seeds, with the per-seed values and the median time per epoch.

    python examples/online_vs_bptt.py [--seeds 0 1 2] [--epochs 10] [--limit-train 5000] [--T 6] [--threads 1]
                                      [--rows bptt online "bptt (tet)"]

Each run is equivalent to::

    spikeforge train --dataset fashion-mnist --limit-train 5000 --model spiking_cnn_tiny --T 6 \\
        --encoding direct --method online --optimizer adamw --lr 1e-3 --epochs 10 --batch-size 64 --seed 0
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import spikeforge.learning  # noqa: F401  (registers --method online)
from spikeforge.data import build_dataset
from spikeforge.models import create_model
from spikeforge.training import cosine_warmup, fit

ROWS = {"bptt": ("bptt", "ce"), "online": ("online", "ce"), "bptt (tet)": ("bptt", "tet")}


def run(row: str, seed: int, args: argparse.Namespace) -> dict[str, float]:
    method, loss = ROWS[row]
    data = build_dataset("fashion-mnist", T=args.T, limit_train=args.limit_train, val_fraction=0.0, seed=seed,
                         progress=False)
    torch.manual_seed(seed)
    model = create_model("spiking_cnn_tiny", in_channels=1, img_size=28, num_classes=10, T=args.T)
    steps = args.epochs * -(-len(data.train) // 64)  # type: ignore[arg-type]
    t0 = time.perf_counter()
    result = fit(model, data, T=args.T, encoding="direct", method=method, loss=loss, epochs=args.epochs,
                 batch_size=64, seed=seed, progress=False, eval_every=args.epochs,
                 optimizer=lambda ps: torch.optim.AdamW(ps, lr=1e-3), lr_schedule=cosine_warmup(1e-3, steps))
    seconds = time.perf_counter() - t0
    last = result.history[-1]
    return {"acc": 100 * last["test_accuracy"],
            "s_per_epoch": statistics.median(h["seconds"] for h in result.history), "total_s": seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--limit-train", type=int, default=5000)
    ap.add_argument("--T", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rows", nargs="+", default=["bptt", "online"], choices=list(ROWS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    table: dict[str, list[dict[str, float]]] = {r: [] for r in args.rows}
    for seed in args.seeds:
        for row in args.rows:
            res = run(row, seed, args)
            table[row].append(res)
            print(f"seed {seed} {row:<11} test accuracy {res['acc']:.2f}%  ({res['s_per_epoch']:.1f} s/epoch)",
                  flush=True)
    print(f"\nFashion-MNIST ({args.limit_train} training images, 10,000 test), spiking_cnn_tiny, T = {args.T}, "
          f"{args.epochs} epochs, seeds {args.seeds}: last-epoch test accuracy")
    for row, rs in table.items():
        accs = [r["acc"] for r in rs]
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        per = ", ".join(f"{a:.2f}" for a in accs)
        print(f"  {row:<11} {statistics.fmean(accs):6.2f} ± {sd:.2f} %   ({per})   "
              f"{statistics.median(r['s_per_epoch'] for r in rs):.1f} s/epoch")


if __name__ == "__main__":
    main()

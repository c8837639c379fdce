"""DSR on scikit-learn's digits, beside surrogate BPTT on the same network (issue 14's reproduction).

MLP 64-256-10 with a BatchNorm before each DSR neuron (``spiking_mlp_tiny --model-arg hidden=256
--model-arg bn=true``), T = 8, direct input, DSR IF neurons with α = 0.5 and a trainable threshold per
layer starting at 1, Adam 1e-3 (AdamW without decay), constant rate, 30 epochs, batch 64. The same
network trained by BPTT (LIF τ = 2, ATan surrogate, the zoo default). Then the DSR model evaluated at
T = 4 without retraining. Three seeds; every figure is the median, with the per-seed values beside it.
Accuracies are last-epoch test accuracies (no selection on the test split).

    python examples/dsr_digits.py [--seeds 0 1 2] [--epochs 30] [--out runs/dsr-digits]

The command each run is equivalent to::

    spikeforge train --dataset digits --model spiking_mlp_tiny --model-arg hidden=256 --model-arg bn=true \\
        --T 8 --encoding direct --method dsr --method-arg alpha=0.5 --method-arg vth=1.0 \\
        --optimizer adamw --lr 1e-3 --schedule constant --epochs 30 --seed 0
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

import torch

from spikeforge.app import TrainConfig, rebuild, train
from spikeforge.learning import rate_neurons
from spikeforge.training import evaluate


def run(method: str, seed: int, epochs: int, out: Path) -> dict[str, float]:
    cfg = TrainConfig(dataset="digits", model="spiking_mlp_tiny", model_args={"hidden": 256, "bn": True}, T=8,
                      encoding="direct", method=method, optimizer="adamw", lr=1e-3, schedule="constant",
                      epochs=epochs, batch_size=64, seed=seed, progress=False, run_dir=str(out / f"{method}-{seed}"),
                      method_args={"alpha": 0.5, "vth": 1.0} if method == "dsr" else {})
    result, model, _ = train(cfg, overwrite=True)
    with open(Path(cfg.run_dir or "") / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    res = {"acc": 100 * result.history[-1]["test_accuracy"],
           "s_per_epoch": statistics.median(float(r["seconds"]) for r in rows)}
    if method == "dsr":
        res["vth_moved_pct"] = min(100 * abs(float(n.threshold()) - 1.0) for n in rate_neurons(model).values())
        r4 = rebuild(Path(cfg.run_dir or "") / "checkpoints" / "last.safetensors", T=4)
        res["acc_T4"] = 100 * evaluate(r4.model, r4.data.test, r4.data.kind, 4, "direct")["accuracy"]
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--out", type=Path, default=Path("runs/dsr-digits"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    table: dict[str, list[dict[str, float]]] = {"dsr": [], "bptt": []}
    for seed in args.seeds:
        for method in table:
            table[method].append(run(method, seed, args.epochs, args.out))
            print(method, seed, {k: round(v, 3) for k, v in table[method][-1].items()}, flush=True)

    def med(method: str, key: str) -> str:
        vals = [r[key] for r in table[method]]
        return f"{statistics.median(vals):.2f} ({', '.join(f'{v:.2f}' for v in vals)})"

    print(f"\ndigits, MLP 64-256-10 + BN, T=8, {args.epochs} epochs, seeds {args.seeds}: median (per seed)")
    print(f"  DSR  test accuracy T=8   {med('dsr', 'acc')} %")
    print(f"  DSR  same model at T=4   {med('dsr', 'acc_T4')} %")
    print(f"  DSR  threshold moved     {med('dsr', 'vth_moved_pct')} % (smallest layer)")
    print(f"  BPTT test accuracy T=8   {med('bptt', 'acc')} %")
    print(f"  seconds per epoch        DSR {med('dsr', 's_per_epoch')}  BPTT {med('bptt', 's_per_epoch')}")


if __name__ == "__main__":
    main()

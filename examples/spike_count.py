"""The spike-count rule (Wu et al., arXiv 1902.05705) on mnist5k, beside the same ReLU MLP (issue 14).

* SNN: 784-500-10 (``spiking_mlp_tiny --model-arg hidden=500``) plus the method's spiking output layer,
  soft-reset IF neurons (ϑ = 1), T = 10 (the latency limit is the T it trains with), direct input, the
  ``ce`` loss on the output counts ``CE(c_out/T)``, the spike-rate limit λ = 1, r_max = 0.5.
* ReLU MLP: the same 784-500-10 network with ReLU in place of the neurons (``--method ann``: T = 1, direct).
* Both: AdamW, cosine schedule, 5 epochs, batch 64, mnist5k (3,600 train / 400 val / 1,000 test; the
  paper's 98.40 % is on full MNIST, which is not available offline). The learning rate of each is picked
  from {1e-3, 3e-3} by seed 0's validation accuracy (never the test split); then three seeds run at it and
  the figure is the median last-epoch test accuracy.
* Ablations at the spike-count rule's learning rate, three seeds each: the output layer's bias started at
  0 instead of ϑ/2 per step (``out_bias=0``: about half the output neurons start silent for a given input,
  and a silent neuron gets no gradient),
  a logit scale (``scale=4``: ``CE(4·c_out/T)``), and no rate limit (``rate_limit=0``).

    python examples/spike_count.py [--seeds 0 1 2] [--out runs/spike-count]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import torch

from spikeforge.app import TrainConfig, train
from spikeforge.app.train import layer_firing_rates


def command(cfg: TrainConfig) -> str:
    """The ``spikeforge train`` command line equivalent to ``cfg``."""
    margs = " ".join(f"--model-arg {k}={v}" for k, v in cfg.model_args.items())
    aargs = " ".join(f"--method-arg {k}={v}" for k, v in cfg.method_args.items())
    return " ".join(f"spikeforge train --dataset mnist5k --model spiking_mlp_tiny {margs} --method {cfg.method} "
                    f"{aargs} --T {cfg.T} --encoding direct --lr {cfg.lr} --epochs {cfg.epochs} "
                    f"--seed {cfg.seed}".split())


def run(method: str, lr: float, seed: int, out: Path, epochs: int, **method_args: Any) -> dict[str, Any]:
    tag = "-".join(f"{k}{v}" for k, v in method_args.items())
    cfg = TrainConfig(dataset="mnist5k", model="spiking_mlp_tiny", model_args={"hidden": 500}, method=method,
                      method_args=method_args, T=1 if method == "ann" else 10, encoding="direct", lr=lr,
                      epochs=epochs, seed=seed, progress=False, threads=1,
                      run_dir=str(out / f"{method}{tag}-lr{lr:g}-s{seed}"))
    print("  " + command(cfg), flush=True)
    result, model, data = train(cfg, overwrite=True)
    last = result.history[-1]
    rates = layer_firing_rates(model, data, cfg) if method != "ann" else {}
    return {"val": 100 * last["val_accuracy"], "test": 100 * last["test_accuracy"], "rates": rates}


def summary(name: str, runs: list[dict[str, Any]]) -> float:
    tests = [r["test"] for r in runs]
    med = statistics.median(tests)
    rates = runs[0]["rates"]
    extra = ("; firing rates (seed 0) " + ", ".join(f"{k} {v:.3f}" for k, v in rates.items())) if rates else ""
    print(f"{name:40s} median {med:.2f} % ({', '.join(f'{t:.2f}' for t in tests)}){extra}", flush=True)
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("runs/spike-count"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    s0, medians, chosen = args.seeds[0], {}, {}
    for method in ("spike-count", "ann"):
        print(f"\n{method}: learning rate from seed {s0}'s validation accuracy")
        val = {lr: run(method, lr, s0, args.out, args.epochs) for lr in (1e-3, 3e-3)}
        lr = chosen[method] = max(val, key=lambda k: val[k]["val"])
        print("  " + ", ".join(f"lr {k:g}: val {v['val']:.2f} %" for k, v in val.items()) + f" -> lr {lr:g}")
        runs = [val[lr] if s == s0 else run(method, lr, s, args.out, args.epochs) for s in args.seeds]
        medians[method] = summary(f"{method} (lr {lr:g})", runs)
    lr = chosen["spike-count"]
    for setting in ({"out_bias": 0.0}, {"scale": 4.0}, {"rate_limit": 0.0}):
        print(f"\nspike-count with {setting} (lr {lr:g})")
        runs = [run("spike-count", lr, s, args.out, args.epochs, **setting) for s in args.seeds]
        summary(f"spike-count {setting}", runs)
    gap = medians["ann"] - medians["spike-count"]
    print(f"\nmnist5k, 784-500-10, {args.epochs} epochs, seeds {args.seeds}: spike-count rule (T=10) "
          f"{medians['spike-count']:.2f} %, ReLU MLP {medians['ann']:.2f} %, gap {gap:+.2f} points")


if __name__ == "__main__":
    main()

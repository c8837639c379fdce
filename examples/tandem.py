"""Tandem learning (Wu et al., arXiv 1907.01167) on digits and mnist5k (issue 14's reproduction).

1. **The count identity.** A soft-reset IF neuron (ϑ = 1, T = 8) under a constant current emits
   ``clamp(⌊I/ϑ⌋, 0, T)`` spikes exactly (I = T·x); under random spike inputs through random weights
   (``x[t] = W s[t] + b``, which changes sign over time) the count error ``c − clamp(⌊I/ϑ⌋, 0, T)`` is
   printed as a histogram: it is not bounded by 1.
2. **Digits**, MLP 64-256-10 (``spiking_mlp_tiny --model-arg hidden=256``), T = 8, direct input (the
   image is a constant current into the first layer, as in the paper), AdamW, cosine schedule, 20 epochs,
   batch 64. The learning rate is picked from {1e-3, 3e-3} by the validation accuracy of seed 0 (never
   the test split), then three seeds run at it; the figure is the median last-epoch test accuracy.
3. **mnist5k**, MLP 784-500-10, T = 8, 5 epochs, the same protocol.

    python examples/tandem.py [--seeds 0 1 2] [--out runs/tandem]

Each run is the command it prints, e.g.::

    spikeforge train --dataset digits --model spiking_mlp_tiny --model-arg hidden=256 --method tandem \\
        --T 8 --encoding direct --lr 0.003 --epochs 20 --seed 0
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import torch

from spikeforge.app import TrainConfig, train
from spikeforge.learning import count_activation, count_neuron, if_count


def command(cfg: TrainConfig) -> str:
    """The ``spikeforge train`` command line equivalent to ``cfg``."""
    margs = " ".join(f"--model-arg {k}={v}" for k, v in cfg.model_args.items())
    aargs = " ".join(f"--method-arg {k}={v}" for k, v in cfg.method_args.items())
    return (f"spikeforge train --dataset {cfg.dataset} --model {cfg.model} {margs} --method {cfg.method} {aargs} "
            f"--T {cfg.T} --encoding {cfg.encoding} --lr {cfg.lr} --epochs {cfg.epochs} --seed {cfg.seed}")


def run(dataset: str, hidden: int, epochs: int, lr: float, seed: int, out: Path) -> dict[str, Any]:
    cfg = TrainConfig(dataset=dataset, model="spiking_mlp_tiny", model_args={"hidden": hidden}, method="tandem",
                      T=8, encoding="direct", lr=lr, epochs=epochs, seed=seed, progress=False, threads=1,
                      run_dir=str(out / f"{dataset}-lr{lr:g}-s{seed}"))
    print("  " + " ".join(command(cfg).split()), flush=True)
    result, model, data = train(cfg, overwrite=True)
    last = result.history[-1]
    return {"val": 100 * last["val_accuracy"], "test": 100 * last["test_accuracy"], "model": model, "data": data}


def histogram() -> None:
    """Part 1: the count of a soft-reset IF neuron against ``clamp(⌊I/ϑ⌋, 0, T)`` and ``f(I)``."""
    T, vth = 8, 1.0
    g = torch.Generator().manual_seed(0)
    neuron = count_neuron(vth, backend="torch")
    x = torch.rand(20000, generator=g, dtype=torch.float64) * 3 * vth - vth         # constant currents
    c = neuron(x.expand(T, -1).contiguous()).sum(0)
    err = c - if_count(T * x, vth, T)
    print(f"constant current, {x.numel()} neurons, T={T}: count − clamp(⌊I/ϑ⌋, 0, T) is 0 for "
          f"{int((err == 0).sum())} of them (max |error| {err.abs().max().item():g})")
    # 100 presynaptic Bernoulli(0.3) spike trains through weights N(0, 0.25²): x[t] changes sign over time
    s = (torch.rand(T, 20000, 100, generator=g, dtype=torch.float64) < 0.3).double()
    w = torch.randn(100, generator=g, dtype=torch.float64) * 0.25
    b = torch.randn(20000, generator=g, dtype=torch.float64) * 0.25
    xs = s @ w + b
    c = neuron(xs).sum(0)
    u = xs.sum(0)
    err = (c - if_count(u, vth, T)).long()
    print(f"random spike inputs (x[t] = W s[t] + b, {xs.shape[1]} neurons, T={T}, ϑ={vth}): "
          f"{(xs < 0).any(0).double().mean().item():.0%} of them see a negative current at some step")
    print("  count − clamp(⌊I/ϑ⌋, 0, T)   neurons")
    for e in range(int(err.min()), int(err.max()) + 1):
        print(f"  {e:+d}                          {int((err == e).sum()):6d}")
    dev = (c - count_activation(u, vth, T)).abs()
    print(f"  |error| > 1 for {(err.abs() > 1).double().mean().item():.2%}; |c − f(I)| > 1 for "
          f"{(dev > 1).double().mean().item():.2%} (f(I) = clamp(I/ϑ, 0, T), the ANN's activation)")


def reproduce(dataset: str, hidden: int, epochs: int, seeds: list[int], out: Path) -> None:
    print(f"\n{dataset}: MLP {hidden} hidden, T=8, {epochs} epochs; lr chosen on seed {seeds[0]}'s validation")
    val = {lr: run(dataset, hidden, epochs, lr, seeds[0], out) for lr in (1e-3, 3e-3)}
    for lr, r in val.items():
        print(f"  lr {lr:g}: val {r['val']:.2f} %")
    lr = max(val, key=lambda k: val[k]["val"])
    runs = [val[lr] if s == seeds[0] else run(dataset, hidden, epochs, lr, s, out) for s in seeds]
    tests = [r["test"] for r in runs]
    print(f"{dataset}: tandem test accuracy, lr {lr:g}, seeds {seeds}: median {statistics.median(tests):.2f} % "
          f"({', '.join(f'{t:.2f}' for t in tests)})")
    model, data = runs[0]["model"], runs[0]["data"]
    xs = torch.stack([data.test[i][0] for i in range(len(data.test))])
    with torch.no_grad():
        u = model.fc(model.stem(xs)).sum(0)            # the hidden layer's aggregate current, direct input
        c = model.sn(model.fc(model.stem(xs))).sum(0)
    exact = (c - if_count(u, 1.0, 8)).abs().max().item()
    dev = (c - count_activation(u, 1.0, 8)).abs().max().item()
    print(f"  hidden layer on the test set (seed {seeds[0]}): count − clamp(⌊I/ϑ⌋, 0, T) max |.| {exact:g}; "
          f"|c − f(I)| max {dev:.4f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", type=Path, default=Path("runs/tandem"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    histogram()
    reproduce("digits", 256, 20, args.seeds, args.out)
    reproduce("mnist5k", 500, 5, args.seeds, args.out)


if __name__ == "__main__":
    main()

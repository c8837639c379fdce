"""A digits CNN on the simulated integer chip: 4-bit MINT, then 4-bit MINT with crossbar-aware pruning.

* Model: ``spiking_cnn_tiny(pool="max")`` (Conv 16 - LIF - MaxPool - Conv 32 - LIF - MaxPool - Linear), T = 4,
  direct encoding, LIF τ = 2, ``V_th`` = 1, on scikit-learn's digits (split into train, validation and test as
  ``spikeforge.data`` splits them). AdamW, lr 1e-3, cosine schedule.
* FP32: ``--epochs`` epochs. Then, from the same seed's FP32 checkpoint (``init=``), ``--qat-epochs`` of
  quantisation-aware training with 4-bit weights, 4-bit membranes and a 4-bit head (``w4u4``), once plain and
  once with crossbar-aware pruning of half the 32×16 crossbars (``--prune crossbar:R=32,C=16@0.5``).
* Both run on the chip: ``spikeforge deploy RUN --crossbar 32x16 --neurons-per-core 64 --weight-bits 4`` (the
  encoder conv on the host, the rest on 64-neuron cores), the whole test split, each batch checked equal to the
  integer model. Each run's last checkpoint is deployed (a run folder would give its best-validation one, which
  for a pruning run can be a checkpoint from before the last cuts); its fake-quantised accuracy is printed
  beside the chip's. Nothing is selected on the test split. Median of the seeds.

    python examples/deploy_digits.py [--seeds 0 1 2] [--epochs 20] [--qat-epochs 10] [--out runs/deploy]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from spikeforge.app import TrainConfig, evaluate_checkpoint, train
from spikeforge.app.deploy import chip_config, deploy_run

CHIP = {"crossbar": (32, 16), "neurons_per_core": 64, "weight_bits": 4}
PRUNE = "crossbar:R=32,C=16@0.5"


def command(cfg: TrainConfig) -> str:
    """The ``spikeforge train`` command line equivalent to ``cfg``."""
    extra = "".join(f" --{k} {v}" for k, v in (("quantize", cfg.quantize), ("prune", cfg.prune)) if v)
    return (f"spikeforge train --dataset digits --model spiking_cnn_tiny --model-arg pool=max --T 4 "
            f"--encoding direct --epochs {cfg.epochs} --seed {cfg.seed}{extra} --run-dir {cfg.run_dir}")


def run(name: str, seed: int, epochs: int, out: Path, **kw: Any) -> tuple[float, Path]:
    cfg = TrainConfig(dataset="digits", model="spiking_cnn_tiny", model_args={"pool": "max"}, T=4,
                      encoding="direct", epochs=epochs, seed=seed, progress=False, threads=1,
                      run_dir=str(out / f"{name}-s{seed}"), **kw)
    print("  " + command(cfg), flush=True)
    result, _, _ = train(cfg, overwrite=True)
    return 100 * result.history[-1]["test_accuracy"], Path(cfg.run_dir or "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--qat-epochs", dest="qat_epochs", type=int, default=10)
    ap.add_argument("--out", type=Path, default=Path("runs/deploy"))
    args = ap.parse_args()
    rows: dict[str, list[dict[str, Any]]] = {"w4u4": [], "w4u4 + crossbar pruning": []}
    fp32: list[float] = []
    for seed in args.seeds:
        acc, fp_dir = run("fp32", seed, args.epochs, args.out)
        fp32.append(acc)
        q = f"mint:weight_bits=4,state_bits=4,head_bits=4,init={fp_dir / 'checkpoints' / 'last.safetensors'}"
        for name, extra in (("w4u4", {}), ("w4u4 + crossbar pruning", {"prune": PRUNE})):
            acc, d = run(name.split()[0] + ("-pruned" if extra else ""), seed, args.qat_epochs, args.out,
                         quantize=q, **extra)
            res = deploy_run(d / "checkpoints" / "last.safetensors", chip_config(**CHIP))
            fq = evaluate_checkpoint(res["checkpoint"])["test_accuracy"]   # the same checkpoint, fake-quantised
            assert res["bit_exact"] and res["accuracy"] == res["integer_accuracy"]
            print(f"    {name}: last epoch {acc:.2f}%; its checkpoint: fake-quant {100 * fq:.2f}%, chip "
                  f"{100 * res['accuracy']:.2f}%, {res['cores']} cores, {res['crossbars']} crossbars", flush=True)
            rows[name].append(res | {"last_epoch": acc, "fake_quant": fq})
    med = statistics.median
    print(f"\nFP32 (host model): {med(fp32):.2f}% test accuracy (median of {len(args.seeds)} seeds)")
    print(f"chip: {rows['w4u4'][0]['config']}")
    print(f"{'':26s} {'fake-quant %':>12s} {'chip acc %':>10s} {'= int model':>11s} {'cores':>6s} "
          f"{'crossbars':>9s} {'synops':>8s} {'energy nJ':>9s} {'decision':>8s}")
    for name, rs in rows.items():
        print(f"{name:26s} {med(100 * r['fake_quant'] for r in rs):>12.2f} "
              f"{med(100 * r['accuracy'] for r in rs):>10.2f} "
              f"{str(all(r['accuracy'] == r['integer_accuracy'] for r in rs)):>11s} "
              f"{med(r['cores'] for r in rs):>6g} {med(r['crossbars'] for r in rs):>9g} "
              f"{med(r['run']['total']['synops'] for r in rs):>8.0f} "
              f"{med(r['run']['total']['energy_nJ'] for r in rs):>9.1f} "
              f"{med(r['decision_step_mean'] for r in rs):>8.2f}")


if __name__ == "__main__":
    main()

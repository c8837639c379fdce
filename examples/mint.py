"""MINT quantisation (Yin et al., arXiv 2305.09850) on mnist5k: FP32 against 2-bit weights with a full-precision
membrane, 2/2-bit with separate scales and 2/2-bit with the shared scale (issue 16).

* Model: ``spiking_cnn_tiny`` (Conv 16 - LIF - MaxPool - Conv 32 - LIF - MaxPool - Linear), T = 4, direct
  encoding, LIF τ = 2 (leak 1/2), ``V_th`` = 1. AdamW, lr 1e-3, cosine schedule, batch 64; mnist5k is 3,600
  train / 400 val / 1,000 test images.
* FP32: ``--epochs`` epochs from scratch (with BatchNorm).
* Quantised: MINT folds BatchNorm into the weights before quantisation-aware training, so each quantised run
  starts from the same seed's FP32 checkpoint (``init=``: its trained BatchNorms folded, the scales initialised
  the official way from the folded weights) and trains ``--qat-epochs`` more. The encoder conv and its neurons
  stay FP32 (direct encoding); the head is 8-bit; the reset becomes MINT's soft reset.
* Nothing is selected on the test split: every figure is the last epoch's, the median of the seeds. Memory is
  MINT's accounting (weights, biases and one membrane value per neuron, in bits) of the whole model and of the
  quantised layers alone; energy is ``spikeforge report``'s (45 nm; with a shared scale an accumulate after the
  encoder is an integer add of the accumulator's width, otherwise an FP32 add).
* The shared-scale runs are also run as integer models (``to_integer``) on the whole test split: spikes of
  every layer and the predictions must equal the float model's.

    python examples/mint.py [--seeds 0 1 2] [--epochs 20] [--qat-epochs 5] [--out runs/mint]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import torch

from spikeforge.app import TrainConfig, run_report, train
from spikeforge.compress import memory_bits, to_integer
from spikeforge.data import batch_loader, to_time_first

VARIANTS = {"w2 (FP membrane)": "mint:weight_bits=2", "w2u2 separate": "mint:weight_bits=2,state_bits=2,"
            "shared_scale=false", "w2u2 shared": "mint:weight_bits=2,state_bits=2"}


def command(cfg: TrainConfig) -> str:
    """The ``spikeforge train`` command line equivalent to ``cfg``."""
    q = f" --quantize {cfg.quantize}" if cfg.quantize else ""
    return (f"spikeforge train --dataset mnist5k --model spiking_cnn_tiny --T 4 --encoding direct "
            f"--epochs {cfg.epochs} --seed {cfg.seed}{q} --run-dir {cfg.run_dir}")


def run(name: str, seed: int, epochs: int, out: Path, quantize: str | None = None) -> dict[str, Any]:
    cfg = TrainConfig(dataset="mnist5k", model="spiking_cnn_tiny", T=4, encoding="direct", epochs=epochs,
                      seed=seed, quantize=quantize, progress=False, threads=1, run_dir=str(out / f"{name}-s{seed}"))
    print("  " + command(cfg), flush=True)
    result, model, data = train(cfg, overwrite=True)
    ck = Path(cfg.run_dir or "") / "checkpoints" / "last.safetensors"
    rep = run_report(ck, progress=False, plots=False)
    mem = memory_bits(model)
    row = {"test": 100 * result.history[-1]["test_accuracy"], "energy_uj": 1e3 * rep["energy"]["energy_mj"],
           "ac_nj": 1e6 * rep["energy"]["ac_mj"],
           "ac": rep["energy"]["ac"], "e_ac_pj": rep["energy"]["e_ac_pj"], "mem": mem, "ck": ck}
    if quantize and "state_bits=2" in quantize and "shared_scale=false" not in quantize:
        row["integer"] = integer_check(model, data)
    return row


def integer_check(model: torch.nn.Module, data: Any) -> str:
    """Run the float model and ``to_integer``'s model on the whole test split; compare every layer's spikes."""
    integer = to_integer(model)
    names = ["sn1", "sn2"]
    seen: dict[str, list[torch.Tensor]] = {}

    def hook(key: str) -> Any:
        return lambda m, a, o: seen.setdefault(key, []).append(o)

    handles = [mod.get_submodule(n).register_forward_hook(hook(f"{tag}{n}"))
               for tag, mod in (("f", model), ("i", integer)) for n in names]
    spikes_equal = preds_equal = True
    n = 0
    model.eval()
    with torch.no_grad():
        for x, _ in batch_loader(data.test, data.kind, batch_size=250, shuffle=False):
            x_seq = to_time_first(x, data.kind, 4, "direct", None)
            a, b = model(x_seq), integer(x_seq)
            preds_equal &= torch.equal(a.mean(0).argmax(1), b.float().mean(0).argmax(1))
            for nm in names:
                spikes_equal &= torch.equal(seen[f"f{nm}"][-1], seen[f"i{nm}"][-1].float())
            n += len(x)
    for h in handles:
        h.remove()
    return f"{n} test samples: spikes {'identical' if spikes_equal else 'DIFFER'} at every layer and step, " \
           f"predictions {'identical' if preds_equal else 'DIFFER'}"


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--qat-epochs", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("runs/mint"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows: dict[str, list[dict[str, Any]]] = {"FP32": []}
    for seed in args.seeds:
        print(f"\nseed {seed}", flush=True)
        fp = run("fp32", seed, args.epochs, args.out)
        rows["FP32"].append(fp)
        for name, spec in VARIANTS.items():
            tag = name.split()[0] + ("-sep" if "separate" in name else "")
            r = run(tag, seed, args.qat_epochs, args.out, f"{spec},init={fp['ck']}")
            rows.setdefault(name, []).append(r)
            if "integer" in r:
                print(f"  integer model: {r['integer']}", flush=True)
    print(f"\nmnist5k, spiking_cnn_tiny, T=4; medians of seeds {args.seeds} (last epoch; quantised: "
          f"{args.qat_epochs} QAT epochs from the FP32 run's {args.epochs})")
    print(f"{'':18s} {'test %':>7s} {'seeds':>20s} {'memory kbit':>12s} {'x less':>7s} "
          f"{'quantised layers kbit':>22s} {'x less':>7s} {'energy µJ':>10s} {'AC nJ':>7s} {'pJ/AC':>6s}")
    ref = rows["w2u2 shared"][0]["mem"]["quantized_fp32_bits"]
    for name, rs in rows.items():
        med = statistics.median(r["test"] for r in rs)
        m = rs[0]["mem"]
        q_bits = m["quantized_bits"] or ref                  # FP32: the same layers at 32 bits
        tests = ", ".join(f"{r['test']:.1f}" for r in rs)
        print(f"{name:18s} {med:7.2f} {tests:>20s} {m['total_bits'] / 1e3:12.1f} {m['reduction']:7.2f} "
              f"{q_bits / 1e3:22.1f} {ref / q_bits:7.2f} "
              f"{statistics.median(r['energy_uj'] for r in rs):10.3f} {statistics.median(r['ac_nj'] for r in rs):7.1f} "
              f"{rs[0]['e_ac_pj']:6.3f}")

if __name__ == "__main__":
    main()

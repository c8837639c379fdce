"""STBP with and without NeuNorm on emulated N-MNIST: accuracy and firing rates over seeds (issue 15, part 4).

Wu, Deng, Li, Zhu, Xie & Shi, "Direct training for spiking neural networks: faster, larger, better",
AAAI 2019, arXiv 1809.05793. The paper trains spiking CNNs directly (STBP: BPTT with a surrogate spike
derivative), feeds the event frames straight into the first conv, reads out through a *voting* layer
(several spiking output neurons per class, averaged) with an MSE loss on the output rate, and adds
*NeuNorm*: an auxiliary neuron per position integrates the channel sum of a layer's spikes and inhibits
the next layer's input, which the paper credits with higher accuracy at a lower firing rate.

The network, in the paper's style at CPU scale (``w = --width``, 16 by default)::

    frames [T, B, 2, 34, 34] → Conv3×3(2→w)+b → LIF → AvgPool2 → [NeuNorm]
                             → Conv3×3(w→2w)+b → LIF → AvgPool2 → [NeuNorm] → Flatten
                             → Linear(2w·8·8 → 10·n_vote)+b → LIF → vote (mean of each class's n_vote rates)

No batch norm anywhere (NeuNorm is the paper's normalisation; BN would confound the comparison). NeuNorm
sits after each hidden spiking layer and its pooling, right before the next synaptic layer: that layer sees
``o − W⊙a`` (the form of SpikingJelly, which ``spikeforge.layers.NeuNorm`` follows), so the inhibition reaches
it through its own weights. The auxiliary neuron is linear in its input, so
NeuNorm on the pooled spikes equals NeuNorm on the spikes themselves followed by the pooling, with ``W``
tied over each 2×2 window; on pooled maps it costs a quarter (it doubled the step time at 34×34, and NeuNorm
runs are the long ones). The two variants come from one builder with ``neunorm=True/False``:
the shared layers are created first from ``torch.manual_seed(seed)``, and NeuNorm's weights after them
from their own seed inside ``torch.random.fork_rng`` (which puts the global RNG back), so both variants
start from identical shared weights and an identical RNG state; the script checks that with
``torch.equal`` before training. The variants see the same data order (``fit``'s order is a function of
the seed) and the same dataset (built once, with data seed 0, for every run): each seed is a pair.

Loss: ``mse_rate`` — the MSE between the voting rates (in [0, 1]: they are spike rates) and the one-hot
label, as in the paper; CE on rates bounded in [0, 1] would keep pushing the winning group to fire at
every step. Accuracy is the argmax of the voting rates. Training: AdamW, lr 3e-3, cosine schedule with
0.2 epochs of warm-up, batch 64, T = 8, 6 epochs (the demo's settings), 1 thread per run.

Reported per variant: the last epoch's test accuracy (mean ± sample std over seeds, and per seed) and the
firing rate of every spiking layer (spikes per neuron per step, averaged over the whole test set and all
T steps; ``spikeforge.analysis.record``), plus their neuron-weighted mean over the hidden layers. The
decision rule (paired, since the seeds are paired): with ``d_s = acc_with − acc_without`` per seed, the
effect is *reproduced* only if ``mean(d) > 2·std(d)`` (sample std, ddof = 1) **and** the hidden-layer
firing rate is comparable or lower (its paired difference ``r_with − r_without`` is not above
``2·std``); otherwise it *did not reproduce at this scale*. The unpaired form (difference of means vs
2 × the larger of the two stds) is printed beside it.

    python examples/neunorm_nmnist.py                       # 3 seeds × 2 variants on emulated N-MNIST
    python examples/neunorm_nmnist.py --quick               # smoke: 1 seed, 1 epoch, 256 samples
    python examples/neunorm_nmnist.py --nmnist-root PATH    # also the real N-MNIST (Train/ and Test/ folders)

On the real N-MNIST (60,000 training recordings, framed once into the on-disk cache) an epoch takes about
15× as long as on the emulated set; ``--limit-train N`` trains on a fixed random N of them.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Subset

from spikeforge.analysis import record
from spikeforge.core import UserError, eval_mode
from spikeforge.data import DataBundle, batch_loader, build_dataset
from spikeforge.layers import NeuNorm, TimeFold, ToSequence
from spikeforge.neurons import LIF
from spikeforge.surrogate import Rectangle
from spikeforge.training import Callback, cosine_warmup, fit, mean_ce, mse_rate, optimizer_factory

HIDDEN = ("sn1", "sn2")          # the layers NeuNorm acts on (it inhibits what follows them)
NMNIST_URL = "https://www.garrickorchard.com/datasets/n-mnist"


def neuron() -> LIF:
    """The STBP neuron: ``u[t] = k_τ1·u[t−1]·(1 − o[t−1]) + I[t]``, ``o[t] = 1[u[t] ≥ V_th]`` (spikeforge's
    spike condition; STBP's code uses ``>``), with ``k_τ1 = 0.2`` (``τ = 1.25``: LIF's leak is ``1 − dt/τ``),
    ``V_th = 0.5``, no leak on the input, and a rectangular surrogate of width 1 and height 1 around the
    threshold: the constants of the widely copied STBP reference code (``decay = 0.2``, ``thresh = 0.5``,
    ``lens = 0.5``)."""
    return LIF(tau=1.25, decay_input=False, v_threshold=0.5, surrogate=Rectangle(alpha=1.0))


class Voting(nn.Module):
    """The paper's voting readout: ``K·n`` output neurons, class ``k``'s score the mean of neurons
    ``k·n … k·n + n − 1``. ``s [T, B, K·n] -> [T, B, K]`` (a fixed average, no parameters)."""

    def __init__(self, num_classes: int, n_vote: int) -> None:
        super().__init__()
        self.num_classes, self.n_vote = num_classes, n_vote

    def forward(self, s: Tensor) -> Tensor:
        return s.unflatten(-1, (self.num_classes, self.n_vote)).mean(-1)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, n_vote={self.n_vote}"


class NeuNormCNN(nn.Module):
    """Conv-LIF-AvgPool-[NeuNorm] ×2, Linear-LIF, voting. ``x [T, B, C, H, W] -> [T, B, num_classes]``.

    Args:
        in_channels, img_size, num_classes, T: the data's.
        neunorm: put a ``NeuNorm`` after each hidden spiking layer (else ``nn.Identity``).
        seed: the shared layers' initialisation; NeuNorm's weights come from ``seed + 1`` drawn in a forked
            RNG, so the shared layers and the global RNG afterwards are the same with or without NeuNorm.
        width: channels of the first conv (the second has ``2·width``).
        n_vote: output neurons per class.
        k: NeuNorm's decay ``k_τ2``.
    """

    def __init__(self, in_channels: int, img_size: int, num_classes: int, T: int, *, neunorm: bool, seed: int,
                 width: int = 16, n_vote: int = 10, k: float = 0.9) -> None:
        super().__init__()
        w, side = width, img_size // 2 // 2
        torch.manual_seed(seed)
        self.stem = ToSequence(T, sample_dims=3)
        self.conv1 = TimeFold(nn.Conv2d(in_channels, w, 3, padding=1))
        self.sn1 = neuron()
        self.pool1 = TimeFold(nn.AvgPool2d(2))
        self.conv2 = TimeFold(nn.Conv2d(w, 2 * w, 3, padding=1))
        self.sn2 = neuron()
        self.pool2 = TimeFold(nn.AvgPool2d(2))
        self.flat = TimeFold(nn.Flatten())
        self.fc = TimeFold(nn.Linear(2 * w * side * side, num_classes * n_vote))
        self.sn_out = neuron()
        self.vote = Voting(num_classes, n_vote)
        with torch.random.fork_rng(devices=[]):      # NeuNorm's init must not move the shared RNG stream
            torch.manual_seed(seed + 1)
            half = img_size // 2
            self.norm1: nn.Module = NeuNorm(w, half, half, k=k) if neunorm else nn.Identity()
            self.norm2: nn.Module = NeuNorm(2 * w, side, side, k=k) if neunorm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm1(self.pool1(self.sn1(self.conv1(self.stem(x)))))
        x = self.flat(self.norm2(self.pool2(self.sn2(self.conv2(x)))))
        return self.vote(self.sn_out(self.fc(x)))


def build(data: DataBundle, T: int, neunorm: bool, seed: int, a: argparse.Namespace) -> NeuNormCNN:
    return NeuNormCNN(data.in_channels, data.img_size, data.num_classes, T, neunorm=neunorm, seed=seed,
                      width=a.width, n_vote=a.n_vote, k=a.k)


def check_paired_init(data: DataBundle, T: int, seed: int, a: argparse.Namespace) -> None:
    """The shared layers start equal with and without NeuNorm, and so does the global RNG afterwards."""
    m0 = build(data, T, False, seed, a)
    r0 = torch.get_rng_state()
    m1 = build(data, T, True, seed, a)
    r1 = torch.get_rng_state()
    s0, s1 = m0.state_dict(), m1.state_dict()
    same = all(torch.equal(v, s1[k]) for k, v in s0.items()) and torch.equal(r0, r1)
    extra = sorted(set(s1) - set(s0))
    print(f"paired init (seed {seed}): shared weights and RNG state identical: {same}; NeuNorm-only tensors: {extra}")
    if not same:
        raise RuntimeError("the two variants do not start from the same shared weights")


class EpochLine(Callback):
    """One line per epoch (the progress bar is off: several runs share the log)."""

    def __init__(self, tag: str) -> None:
        self.tag = tag

    def on_epoch_end(self, trainer: Any, m: dict[str, Any]) -> None:
        test = f", test acc {100 * m['test_accuracy']:.2f}%" if "test_accuracy" in m else ""
        print(f"  {self.tag} epoch {m['epoch']}: loss {m['train_loss']:.4f}, train acc "
              f"{100 * m['train_accuracy']:.2f}%{test} ({m['seconds']:.0f} s)", flush=True)


def measure(model: nn.Module, data: DataBundle, batch_size: int = 250) -> dict[str, float]:
    """Firing rate of every spiking layer over the whole test set and all steps, the hidden layers'
    neuron-weighted mean (``hidden``), and per NeuNorm the inhibition relative to the spikes it sees,
    ``mean|W ⊙ a| / mean(o)`` (``inhib_norm1`` …)."""
    inhib: dict[str, list[float]] = {}
    handles = []
    for name in ("norm1", "norm2"):
        mod = getattr(model, name)
        if isinstance(mod, NeuNorm):
            def hook(m: nn.Module, args: Any, out: Tensor, name: str = name) -> None:
                o = args[0]
                inhib.setdefault(name, []).append(float((o - out).abs().mean() / o.mean().clamp_min(1e-12)))
            handles.append(mod.register_forward_hook(hook))
    loader = batch_loader(data.test, data.kind, batch_size=batch_size, shuffle=False)
    try:
        with eval_mode(model), torch.no_grad(), record(model) as rec:
            for x, _ in loader:
                model(x)
    finally:
        for h in handles:
            h.remove()
    out = rec.rates()
    recs = [rec.records[n] for n in HIDDEN]
    out["hidden"] = float(sum(float(r.step_sum.sum()) for r in recs) / sum(float(r.step_count.sum()) for r in recs))
    out.update({f"inhib_{n}": statistics.fmean(v) for n, v in inhib.items()})
    return out


def neunorm_w(model: nn.Module) -> float:
    """Mean ``|W|`` over the NeuNorm layers (NaN without them)."""
    ws = [m.weight.detach().abs().mean() for m in model.modules() if isinstance(m, NeuNorm)]
    return float(torch.stack(ws).mean()) if ws else math.nan


def run_one(data: DataBundle, neunorm: bool, seed: int, a: argparse.Namespace) -> dict[str, float]:
    tag = f"{'NeuNorm' if neunorm else 'plain  '} seed {seed}"
    model = build(data, a.T, neunorm, seed, a)
    steps = a.epochs * -(-len(data.train) // a.batch_size)  # type: ignore[arg-type]
    w0 = neunorm_w(model)
    t0 = time.perf_counter()
    result = fit(model, data, T=a.T, loss=mse_rate if a.loss == "mse" else mean_ce,
                 optimizer=optimizer_factory("adamw", a.lr),
                 lr_schedule=cosine_warmup(a.lr, steps, int(0.2 * steps / a.epochs)), epochs=a.epochs,
                 batch_size=a.batch_size, seed=seed, eval_every=a.epochs, progress=False,
                 callbacks=[EpochLine(tag)])
    seconds = time.perf_counter() - t0
    last = result.history[-1]
    has_val = len(data.val or []) > 0  # type: ignore[arg-type]
    row = {"test_accuracy": last["test_accuracy"], "val_accuracy": last["val_accuracy"] if has_val else math.nan,
           "seconds": seconds, **measure(model, data)}
    if neunorm:
        row["neunorm_w0"], row["neunorm_w"] = w0, neunorm_w(model)
    rates = ", ".join(f"{n} {row[n]:.4f}" for n in (*HIDDEN, "sn_out", "hidden"))
    extra = (f"; NeuNorm mean|W| {row['neunorm_w0']:.4f} → {row['neunorm_w']:.4f}, inhibition/spikes "
             f"norm1 {row['inhib_norm1']:.4f} norm2 {row['inhib_norm2']:.4f}") if neunorm else ""
    print(f"  {tag}: test acc {100 * row['test_accuracy']:.2f}% (val {100 * row['val_accuracy']:.2f}%), "
          f"rates {rates}{extra}; {seconds:.0f} s", flush=True)
    return row


def sd(xs: list[float]) -> float:
    return statistics.stdev(xs) if len(xs) > 1 else math.nan


def compare(name: str, plain: list[float], norm: list[float], scale: float, unit: str,
            digits: int) -> tuple[float, float]:
    """Print the paired and the unpaired comparison of ``norm − plain``; returns (mean d, std d)."""
    d = [n - p for n, p in zip(norm, plain)]
    md, sdd = statistics.fmean(d), sd(d)
    big = max(sd(plain), sd(norm))
    diff = statistics.fmean(norm) - statistics.fmean(plain)
    f = f".{digits}f"
    print(f"  {name} ({unit}): NeuNorm − plain per seed [{', '.join(f'{scale * x:+{f}}' for x in d)}]")
    print(f"    paired:   mean(d) = {scale * md:+{f}}, 2·std(d) = {scale * 2 * sdd:{f}} → "
          f"|mean(d)| {'>' if abs(md) > 2 * sdd else '≤'} 2σ")
    print(f"    unpaired: difference of means = {scale * diff:+{f}}, 2 × larger std = {scale * 2 * big:{f}} → "
          f"|difference| {'>' if abs(diff) > 2 * big else '≤'} 2σ")
    return md, sdd


def study(data: DataBundle, a: argparse.Namespace) -> None:
    n_tr, n_va, n_te = len(data.train), len(data.val or []), len(data.test)  # type: ignore[arg-type]
    print(f"\n=== {data.name}: {n_tr} train / {n_va} val / {n_te} test, T={a.T}, {a.epochs} epochs, width {a.width}, "
          f"{a.n_vote} voters per class, loss {a.loss}, seeds {a.seeds} ===")
    check_paired_init(data, a.T, a.seeds[0], a)
    rows: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for seed in a.seeds:
        for neunorm in (False, True):
            rows[neunorm].append(run_one(data, neunorm, seed, a))
    print(f"\n--- {data.name}: last-epoch test accuracy and firing rates (spikes / neuron / step, test set, all T) ---")
    cols = ["test_accuracy", *HIDDEN, "sn_out", "hidden"]
    print(f"  {'variant':<8} " + " ".join(f"{c:>18}" for c in cols))
    for neunorm in (False, True):
        cells = []
        for c in cols:
            v = [r[c] for r in rows[neunorm]]
            f, s = (".2f", 100.0) if c == "test_accuracy" else (".4f", 1.0)
            cells.append(f"{s * statistics.fmean(v):{f}} ± {s * sd(v):{f}}".rjust(18))
        print(f"  {'NeuNorm' if neunorm else 'plain':<8} " + " ".join(cells))
        for seed, r in zip(a.seeds, rows[neunorm]):
            print(f"    seed {seed}: acc {100 * r['test_accuracy']:.2f}%  "
                  + "  ".join(f"{c} {r[c]:.4f}" for c in cols[1:]) + f"  ({r['seconds']:.0f} s)")
    nn_rows = rows[True]
    print(f"  NeuNorm's size: mean|W| {statistics.fmean(r['neunorm_w0'] for r in nn_rows):.4f} at init → "
          f"{statistics.fmean(r['neunorm_w'] for r in nn_rows):.4f} trained; inhibition relative to the spikes it "
          f"sees, mean|W⊙a| / mean(o): norm1 {statistics.fmean(r['inhib_norm1'] for r in nn_rows):.2e}, "
          f"norm2 {statistics.fmean(r['inhib_norm2'] for r in nn_rows):.2e}")
    print("  comparisons (NeuNorm − plain; σ = sample std, ddof = 1):")
    acc = compare("test accuracy", [r["test_accuracy"] for r in rows[False]],
                  [r["test_accuracy"] for r in rows[True]], 100.0, "percentage points", 2)
    rate = compare("hidden firing rate", [r["hidden"] for r in rows[False]], [r["hidden"] for r in rows[True]],
                   1.0, "spikes/neuron/step", 5)
    for layer in HIDDEN:
        compare(f"{layer} firing rate", [r[layer] for r in rows[False]], [r[layer] for r in rows[True]], 1.0,
                "spikes/neuron/step", 5)
    higher_acc = acc[0] > 2 * acc[1]
    rate_ok = not rate[0] > 2 * rate[1]
    print(f"  rule (paired, one-sided): accuracy higher by > 2·std(d): {higher_acc}; hidden firing rate comparable "
          f"or lower (not higher by > 2·std(d)): {rate_ok}")
    if len(a.seeds) < 2:
        print(f"VERDICT ({data.name}): did not reproduce at this scale (one seed: no spread to test against)")
    elif higher_acc and rate_ok:
        print(f"VERDICT ({data.name}): NeuNorm effect reproduced")
    else:
        print(f"VERDICT ({data.name}): did not reproduce at this scale")


def load(name: str, a: argparse.Namespace, root: str | None = None) -> DataBundle:
    """The dataset with data seed 0 (the same for every run); ``--limit-train N`` keeps a fixed random N of
    the training split (``build_dataset``'s own ``limit_train`` would cut the event test split too, and to
    its first, single-class, samples)."""
    data = build_dataset(name, T=a.T, root=root, seed=0, progress=False,
                         options={"source": a.source} if name == "emulated-nmnist" else {})
    if a.limit_train is not None:
        order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))  # type: ignore[arg-type]
        data = dataclasses.replace(data, train=Subset(data.train, order[:a.limit_train].tolist()))
    return data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--T", type=int, default=8)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--n-vote", type=int, default=10)
    ap.add_argument("--k", type=float, default=0.9, help="NeuNorm's decay k_τ2")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--loss", default="mse", choices=("mse", "ce"), help="mse: the paper's MSE on voting rates")
    ap.add_argument("--source", default="mnist5k", choices=("mnist5k", "digits", "fashion"))
    ap.add_argument("--limit-train", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--nmnist-root", default=None,
                    help="the N-MNIST release folder (Train/, Test/): also run the study on the real recordings")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 1 epoch, 256 training samples")
    a = ap.parse_args()
    if a.quick:
        a.seeds, a.epochs, a.limit_train = a.seeds[:1], 1, 256
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    study(load("emulated-nmnist", a), a)
    if a.nmnist_root is None:
        print(f"\nnmnist: skipped (no --nmnist-root; the recordings are at {NMNIST_URL})")
    elif not Path(a.nmnist_root).is_dir():
        print(f"\nnmnist: skipped ({a.nmnist_root} is not a folder; it should hold Train/ and Test/ from {NMNIST_URL})")
    else:
        try:
            data = load("nmnist", a, a.nmnist_root)
        except (UserError, OSError) as e:
            print(f"\nnmnist: skipped ({str(e).splitlines()[0]})")
        else:
            study(data, a)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

"""Memory of one training step against T: BPTT, BPTT + ``--memory lean``, online (SLTT), SpikingJelly's BPTT.

For each (method, T) a fresh process builds ``spiking_cnn_tiny`` at its defaults (Conv(2→16)-BN-LIF-MaxPool-
Conv(16→32)-BN-LIF-MaxPool-Linear, 2×34×34 input), batch 32, SGD, a static image direct-encoded (the same
``[B, 2, 34, 34]`` at every step, a view), runs two warm-up steps on one sample and ``min(T, 4)`` steps
(code loaded on first use, the optimiser's state: not memory of the step), resets the RSS high-water mark
(``/proc/self/clear_refs`` = 5) and reads ``VmHWM − VmRSS`` over one more training step (forward, loss,
backward, optimiser): the
**peak-RSS growth of one training step over the post-build baseline**, as ``benchmarks/learning.py`` measures
it. spikeforge's steps are the methods' own (``TrainStep`` with the ``ce`` loss); SpikingJelly's is the
multi-step CNN of ``benchmarks/models.py`` (``LIFNode`` with its torch backend, ``reset_net`` after the step;
it has one more LIF after the Linear, 10 neurons per step).

* ``bptt``: the default (fused CPU LIF, keeping its input only; the first conv and BN run once on the
  static image);
* ``bptt+lean``: the same on the fused CPU kernels (they keep the input only in both modes) — the
  convolutions, batch norms and pooling after the first keep their inputs at every step, so the growth
  still rises linearly with T;
* ``online``: ``--method online`` (one step forward and backward at a time): the goal is growth at T = 128
  within 1.3× of its T = 16 growth.

One thread by default: the measure is memory, and online's many small steps slow down far more than the
others when its threads contend for cores on a shared machine. The step time printed is of that one step.

    python benchmarks/memory.py [--T 16 64 128] [--repeats 1] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
B = 32
ROWS = ["bptt", "bptt+lean", "online", "spikingjelly bptt"]


def _status(field: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return float(line.split()[1]) / 1024
    return float("nan")


def worker(row: str, T: int, threads: int) -> None:
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.rand(B, 2, 34, 34)
    y = torch.randint(0, 10, (B,))
    x_seq = x.unsqueeze(0).expand(T, *x.shape)          # direct encoding: a view, as spikeforge.encode.direct
    if row == "spikingjelly bptt":
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from models import cnn_spikingjelly
        net, reset = cnn_spikingjelly()
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)

        def step(n: int = B, steps: int = T) -> None:
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(net(x_seq[:steps, :n]).mean(0), y[:n]).backward()
            opt.step()
            reset()
    else:
        import spikeforge.learning  # noqa: F401  (registers --method online)
        from spikeforge.models import create_model
        from spikeforge.neurons import set_memory
        from spikeforge.training import StepContext, get_loss, get_method

        net = create_model("spiking_cnn_tiny")
        if row == "bptt+lean":
            set_memory(net, "lean")
        method = get_method("online" if row == "online" else "bptt")
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        ctx = StepContext(get_loss("ce"), opt, torch.amp.GradScaler("cpu", enabled=False), lambda *a: None, None, net)

        def step(n: int = B, steps: int = T) -> None:
            opt.zero_grad(set_to_none=True)
            method(net, (x_seq[:steps, :n], y[:n]), ctx)
            opt.step()

    for _ in range(2):
        step(1, min(T, 4))
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    base = _status("VmRSS")
    t0 = time.perf_counter()
    step()
    seconds = time.perf_counter() - t0
    print(json.dumps({"growth": _status("VmHWM") - base, "s": seconds}))


def run(row: str, T: int, threads: int) -> dict[str, float] | str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"),
                                                                      str(ROOT / "src")]))}
    r = subprocess.run([sys.executable, __file__, "--worker", row, str(T), str(threads)], capture_output=True,
                       text=True, cwd=ROOT, timeout=900, env=env)
    if r.returncode != 0:
        return f"failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}"
    return json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def slope(Ts: list[int], gs: list[float]) -> float:
    """Least-squares MiB per time step."""
    mt, mg = statistics.fmean(Ts), statistics.fmean(gs)
    return sum((t - mt) * (g - mg) for t, g in zip(Ts, gs)) / sum((t - mt) ** 2 for t in Ts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--T", type=int, nargs="+", default=[16, 64, 128])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), int(args.worker[2]))
        return
    runs: dict[tuple[str, int], list[dict[str, float] | str]] = {(r, T): [] for r in ROWS for T in args.T}
    for _ in range(args.repeats):
        for T in args.T:
            for r in ROWS:
                runs[(r, T)].append(run(r, T, args.threads))
    print(f"one training step of spiking_cnn_tiny (2x34x34 static image, direct encoding, batch {B}, SGD), fresh "
          f"process per cell, {args.threads} threads, median of {args.repeats}; growth = peak RSS over the "
          "post-build baseline")
    T0 = args.T[0]
    print(f"  {'method':<18} {'T':>4} {'RSS growth MiB':>15} {f'x T={T0}':>8} {'x bptt':>7} {'step s':>7}")
    growth: dict[str, dict[int, float]] = {r: {} for r in ROWS}
    for T in args.T:
        for r in ROWS:
            ok = [x for x in runs[(r, T)] if isinstance(x, dict)]
            if not ok:
                print(f"  {r:<18} {T:>4} {runs[(r, T)][0]}")
                continue
            g, s = statistics.median(x["growth"] for x in ok), statistics.median(x["s"] for x in ok)
            growth[r][T] = g
            first = growth[r].get(T0, float("nan"))
            base = growth["bptt"].get(T, float("nan"))
            print(f"  {r:<18} {T:>4} {g:>15.1f} {g / first:>8.2f} {g / base:>7.2f} {s:>7.2f}")
    print("\nslope of the growth against T (least squares), MiB per step:")
    for r in ROWS:
        Ts = sorted(growth[r])
        if len(Ts) >= 2:
            print(f"  {r:<18} {slope(Ts, [growth[r][T] for T in Ts]):8.2f}")
    on, last = growth["online"], args.T[-1]
    if T0 in on and last in on:
        ratio = on[last] / on[T0]
        print(f"\nonline: growth at T={last} is {ratio:.2f}x its T={T0} growth (goal <= 1.3x: "
              f"{'met' if ratio <= 1.3 else 'NOT met'})")
    bp, ln = growth["bptt"], growth["bptt+lean"]
    if len(bp) >= 2 and len(ln) >= 2:
        sb = slope(sorted(bp), [bp[T] for T in sorted(bp)])
        sl = slope(sorted(ln), [ln[T] for T in sorted(ln)])
        print(f"bptt+lean: slope {sl:.2f} MiB/step, {sl / sb:.2f}x bptt's {sb:.2f} (the neurons' state is "
              "checkpointed; conv, BN and pooling inputs still grow with T)")


if __name__ == "__main__":
    main()

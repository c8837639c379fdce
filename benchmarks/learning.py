"""Memory and time of one training step per learning method, at T = 4, 16, 64.

For each registered method (``spikeforge list methods``) and each T, a fresh process builds
``spiking_cnn_tiny`` (average pooling, 1×28×28 input, batch 32), prepares it for the method, runs two
warm-up steps on one sample (so memory the allocator keeps from them is not mistaken for none), resets
the RSS high-water mark (``/proc/self/clear_refs`` = 5) and reads
``VmHWM − VmRSS`` over one more step (forward, loss, backward, optimiser): the **peak-RSS growth of one
training step over the post-build baseline**. The step time is the median of the next five steps.
Repeats are interleaved across methods and the medians printed, with BPTT's figure as the ratio's base.
The ANN twins (``ann``, ``qcfs``) train at T = 1 whatever T is asked: their row is measured once, at T = 1.

    python benchmarks/learning.py [--repeats 3] [--T 4 16 64]
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


def _status(field: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return float(line.split()[1]) / 1024
    return float("nan")


def worker(method: str, T: int, threads: int) -> None:
    import torch

    from spikeforge.learning import METHODS
    from spikeforge.models import create_model
    from spikeforge.training import get_loss, get_method

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    m = get_method(method)
    fixed_T = getattr(METHODS[method], "config", {}).get("T", T)
    model = create_model("spiking_cnn_tiny", in_channels=1, img_size=28, num_classes=10, T=fixed_T, pool="avg")
    if m.check(model) is None:
        model = m.prepare(model)
    loss_fn = get_loss("ce")
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    x = torch.rand(fixed_T, 32, 1, 28, 28)
    y = torch.randint(0, 10, (32,))

    def step(n: int = 32) -> None:
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[:, :n]), y[:n], {"model": model})
        loss.backward()
        opt.step()

    for _ in range(2):     # code loaded on first use, optimiser state: not memory of the step
        step(1)
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    base = _status("VmRSS")
    step()
    growth = _status("VmHWM") - base
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"growth": growth, "ms": statistics.median(times) * 1e3, "T": fixed_T}))


def run(method: str, T: int, threads: int) -> dict[str, float] | str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"),
                                                                      str(ROOT / "src")]))}
    r = subprocess.run([sys.executable, __file__, "--worker", method, str(T), str(threads)], capture_output=True,
                       text=True, cwd=ROOT, timeout=900, env=env)
    if r.returncode != 0:
        return f"failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}"
    return json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--T", type=int, nargs="+", default=[4, 16, 64])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]), int(args.worker[2]))
        return
    sys.path.insert(0, str(ROOT / "src"))
    from spikeforge.learning import METHODS
    # online's step runs per time step (benchmarks/memory.py measures it); ttfs trains MLPs of exact-time layers
    methods = [m for m in METHODS if m not in ("online", "ttfs")]
    cells = [(m, T) for T in args.T for m in methods
             if T == args.T[0] or "T" not in getattr(METHODS[m], "config", {})]
    runs: dict[tuple[str, int], list[dict[str, float] | str]] = {c: [] for c in cells}
    for _ in range(args.repeats):
        for c in cells:
            runs[c].append(run(c[0], c[1], args.threads))
    print("one training step of spiking_cnn_tiny (avg pool, 1x28x28, batch 32, AdamW), fresh process per cell, "
          f"{args.threads} threads, median of {args.repeats} interleaved repeats")
    print(f"  {'method':<12} {'T':>3} {'RSS growth MiB':>15} {'x bptt':>7} {'step ms':>9} {'x bptt':>7}")
    for T in args.T:
        base = runs.get(("bptt", T))
        bok = [r for r in base or [] if isinstance(r, dict)]
        bg = statistics.median(r["growth"] for r in bok) if bok else float("nan")
        bms = statistics.median(r["ms"] for r in bok) if bok else float("nan")
        for m in methods:
            if (m, T) not in runs:
                continue
            ok = [r for r in runs[(m, T)] if isinstance(r, dict)]
            if not ok:
                print(f"  {m:<12} {T:>3} {runs[(m, T)][0]}")
                continue
            g, ms = statistics.median(r["growth"] for r in ok), statistics.median(r["ms"] for r in ok)
            shown = int(ok[0]["T"])
            ratio = f"{g / bg:>7.2f}" if bg > 0 else f"{'-':>7}"
            print(f"  {m:<12} {shown:>3} {g:>15.1f} {ratio} {ms:>9.1f} {ms / bms:>7.2f}")


if __name__ == "__main__":
    main()

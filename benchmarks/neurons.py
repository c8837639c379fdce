"""Multi-step LIF side by side: spikeforge vs SpikingJelly 2.0, snnTorch 1.0 and Norse 1.1, one process.

LIF with τ = 2 (leak ½ per step), threshold 1, hard reset to 0, a sigmoid surrogate, on ``[T, B·N]``.
Forward (no grad) and forward + backward, medians of interleaved repetitions, ratios peer/spikeforge;
bytes kept for backward per neuron-step (``saved_tensors_hooks``); peak RSS of one fwd+bwd in a fresh
process per library; the documented custom neuron (AdEx, ``examples/custom_neuron.py``) fused vs its
torch reference.

    python benchmarks/neurons.py [--reps 11] [--threads 2] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SIZES = [(4, 2**20), (16, 2**18), (64, 2**16), (16, 2**22)]
Fn = Callable[[torch.Tensor], torch.Tensor]


def make(lib: str) -> Fn | str:
    """A function ``x [T, BN] -> spikes [T, BN]`` starting from rest, or why the library is unavailable."""
    if lib == "spikeforge":
        from spikeforge.neurons import LIF
        from spikeforge.surrogate import Sigmoid
        m = LIF(tau=2.0, surrogate=Sigmoid(alpha=4.0))
        return m
    if lib == "spikingjelly":
        try:
            from spikingjelly.activation_based import neuron, surrogate
        except Exception as e:  # noqa: BLE001
            return f"not importable ({type(e).__name__}: {e})"
        sj = neuron.LIFNode(tau=2.0, v_threshold=1.0, v_reset=0.0, surrogate_function=surrogate.Sigmoid(alpha=4.0),
                            step_mode="m")

        def f_sj(x: torch.Tensor) -> torch.Tensor:
            sj.reset()
            return sj(x)
        return f_sj
    if lib == "snntorch":
        try:
            import snntorch as snn
            from snntorch import surrogate as ss
        except Exception as e:  # noqa: BLE001
            return f"not importable ({type(e).__name__}: {e})"
        leaky = snn.Leaky(beta=0.5, threshold=1.0, reset_mechanism="zero", spike_grad=ss.sigmoid(slope=4))

        def f_snn(x: torch.Tensor) -> torch.Tensor:
            mem = torch.zeros_like(x[0])
            out = []
            for xt in x:
                s, mem = leaky(xt, mem)
                out.append(s)
            return torch.stack(out)
        return f_snn
    if lib == "norse":
        try:
            import norse.torch as nt
        except Exception as e:  # noqa: BLE001
            return f"not importable ({type(e).__name__}: {e})"
        cell = nt.LIFBoxCell(nt.LIFBoxParameters(tau_mem_inv=torch.tensor(500.0), v_th=torch.tensor(1.0),
                                                 method="super", alpha=torch.tensor(4.0)), dt=0.001)

        def f_norse(x: torch.Tensor) -> torch.Tensor:
            state = None
            out = []
            for xt in x:
                z, state = cell(xt, state)
                out.append(z)
            return torch.stack(out)
        return f_norse
    raise ValueError(lib)


LIBS = ["spikeforge", "spikingjelly", "snntorch", "norse"]


def time_fwd(f: Fn, x: torch.Tensor) -> float:
    t0 = time.perf_counter()
    with torch.no_grad():
        y = f(x)
    dt = time.perf_counter() - t0
    del y
    return dt


def time_fb(f: Fn, x: torch.Tensor) -> float:
    t0 = time.perf_counter()
    y = f(x)
    y.sum().backward()
    dt = time.perf_counter() - t0
    x.grad = None
    del y
    return dt


def saved_per_step(f: Fn, x: torch.Tensor) -> float:
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = f(x)
    del y
    return sum(seen.values()) / x.numel()


def memory_child(lib: str, T: int, BN: int, threads: int) -> None:
    """In a fresh process: peak RSS growth of one forward+backward, beyond the input and its gradient."""
    torch.set_num_threads(threads)
    f = make(lib)
    assert not isinstance(f, str), f
    x = (torch.randn(T, BN) * 0.8 + 0.3).requires_grad_()
    x.grad = torch.zeros_like(x)
    x.grad = None
    with open("/proc/self/clear_refs", "w") as fh:   # reset the high-water mark
        fh.write("5")
    base = _rss("VmRSS")
    y = f(x)
    y.sum().backward()
    print(( _rss("VmHWM") - base) / 2**20)


def _rss(field: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return float(line.split()[1]) * 1024
    return float("nan")


def peak_memory(lib: str, T: int, BN: int, threads: int) -> str:
    try:
        out = subprocess.run([sys.executable, __file__, "--memory-child", lib, str(T), str(BN), str(threads)],
                             capture_output=True, text=True, timeout=600, cwd=ROOT)
        return f"{float(out.stdout.strip().splitlines()[-1]):.0f} MiB" if out.returncode == 0 else "failed"
    except Exception as e:  # noqa: BLE001
        return f"failed ({e})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=11)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="3 repetitions, the three 16 MiB sizes only")
    ap.add_argument("--device", default="cpu", help="cpu (cuda: see the GPU backend issue)")
    ap.add_argument("--memory-child", nargs=4, metavar=("LIB", "T", "BN", "THREADS"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.memory_child:
        lib, T, BN, th = a.memory_child
        memory_child(lib, int(T), int(BN), int(th))
        return
    if a.device != "cpu":
        raise SystemExit("only --device cpu is implemented in this benchmark")
    torch.set_num_threads(a.threads)
    reps = 3 if a.quick else a.reps
    sizes = SIZES[:3] if a.quick else SIZES
    fns = {lib: make(lib) for lib in LIBS}
    for lib, f in fns.items():
        if isinstance(f, str):
            print(f"{lib}: {f}")
    libs = [lib for lib, f in fns.items() if not isinstance(f, str)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {reps} interleaved repetitions, medians\n")
    print(f"{'T':>3} {'B·N':>8} {'library':<13} {'fwd ms':>8} {'ratio':>6} {'fwd+bwd ms':>11} {'ratio':>6}")
    summary = {}
    for T, BN in sizes:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(T, BN, generator=g) * 0.8 + 0.3
        xg = x.clone().requires_grad_()
        cold = None
        if BN == 2**22:
            from spikeforge.kernels import POOL
            POOL.clear()
            cold = (time_fwd(fns["spikeforge"], x), time_fb(fns["spikeforge"], xg))   # fresh buffers
        for lib in libs:                    # warm-up (JIT compile, first-touch)
            time_fwd(fns[lib], x)
            time_fb(fns[lib], xg)
        times: dict[str, tuple[list[float], list[float]]] = {lib: ([], []) for lib in libs}
        for _ in range(reps):
            for lib in libs:
                times[lib][0].append(time_fwd(fns[lib], x))
                times[lib][1].append(time_fb(fns[lib], xg))
        med = {lib: (statistics.median(v[0]), statistics.median(v[1])) for lib, v in times.items()}
        sf = med["spikeforge"]
        for lib in libs:
            f, fb = med[lib]
            print(f"{T:>3} {BN:>8} {lib:<13} {f * 1e3:>8.2f} {f / sf[0]:>6.1f} {fb * 1e3:>11.2f} {fb / sf[1]:>6.1f}")
        if cold:
            print(f"{T:>3} {BN:>8} {'sf (cold)':<13} {cold[0] * 1e3:>8.2f} {'':>6} {cold[1] * 1e3:>11.2f}")
        summary[(T, BN)] = med
        print()
    # memory kept for backward, bytes per neuron-step
    T, BN = 16, 2**16
    x = (torch.randn(T, BN) * 0.8 + 0.3).requires_grad_()
    print("bytes kept for backward per neuron-step (T=16):")
    kept = {lib: saved_per_step(fns[lib], x) for lib in libs}
    for lib in libs:
        print(f"  {lib:<13} {kept[lib]:6.2f}")
    if not a.quick:
        print("\npeak RSS growth of one fwd+bwd, fresh process, T=16, B·N=2^18:")
        for lib in libs:
            print(f"  {lib:<13} {peak_memory(lib, 16, 2**18, a.threads)}")
    # the custom neuron
    from examples.custom_neuron import AdEx
    x = torch.rand(16, 2**18) * 1.5
    xg = x.clone().requires_grad_()
    fused, ref = AdEx(backend="cpu"), AdEx(backend="torch")
    for m in (fused, ref):
        time_fb(m, xg)
    tf = [(time_fwd(fused, x), time_fb(fused, xg), time_fwd(ref, x), time_fb(ref, xg))
          for _ in range(max(3, reps // 2))]
    med_c = [statistics.median(c) for c in zip(*tf)]
    print(f"\ncustom AdEx neuron (T=16, B·N=2^18): fused fwd {med_c[0] * 1e3:.2f} ms, fwd+bwd {med_c[1] * 1e3:.2f} ms; "
          f"torch reference fwd {med_c[2] * 1e3:.2f} ms, fwd+bwd {med_c[3] * 1e3:.2f} ms "
          f"({med_c[2] / med_c[0]:.1f}× / {med_c[3] / med_c[1]:.1f}×)")
    # targets
    print("\ntargets:")
    for (T, BN), med in summary.items():
        peers = [lib for lib in med if lib != "spikeforge"]
        if not peers:
            continue
        sf = med["spikeforge"]
        if "spikingjelly" in med and T in (16, 64) and BN != 2**22:
            need = 4 if T == 16 else 6
            r = med["spikingjelly"][1] / sf[1]
            print(f"  fwd+bwd vs SpikingJelly at T={T}: {r:.1f}× (target ≥ {need}×) {'ok' if r >= need else 'MISSED'}")
        if T * BN * 4 == 16 * 2**20:
            fastest = min(peers, key=lambda p: med[p][0])
            r = med[fastest][0] / sf[0]
            print(f"  fwd vs fastest peer ({fastest}) at T={T}: {r:.1f}× (target ≥ 6×) {'ok' if r >= 6 else 'MISSED'}")
    if "spikingjelly" in kept:
        r = kept["spikeforge"] / kept["spikingjelly"]
        print(f"  memory kept for backward: {r:.2f} of SpikingJelly's (target ≤ 0.5) {'ok' if r <= 0.5 else 'MISSED'}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()

"""Multi-step LIF side by side: spikeforge vs SpikingJelly 2.0, snnTorch 1.0 and Norse 1.1, one process.

LIF with τ = 2 (leak ½ per step), threshold 1, hard reset to 0, a sigmoid surrogate, on ``[T, B·N]``.
Forward (no grad) and forward + backward, medians of interleaved repetitions, ratios peer/spikeforge;
bytes kept for backward per neuron-step (``saved_tensors_hooks``); peak RSS of one fwd+bwd in a fresh
process per library; the documented custom neuron (AdEx, ``examples/custom_neuron.py``) fused vs its
torch reference.

    python benchmarks/neurons.py [--reps 21] [--threads 2] [--quick]
    python benchmarks/neurons.py --device cuda      # Triton backend vs SpikingJelly's CUDA path and the
                                                    # torch loop, plus the fraction of memory bandwidth
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


def _sync(x: torch.Tensor) -> None:
    if x.is_cuda:
        torch.cuda.synchronize(x.device)


def time_fwd(f: Fn, x: torch.Tensor) -> float:
    _sync(x)
    t0 = time.perf_counter()
    with torch.no_grad():
        y = f(x)
    _sync(x)
    dt = time.perf_counter() - t0
    del y
    return dt


def time_fb(f: Fn, x: torch.Tensor) -> float:
    _sync(x)
    t0 = time.perf_counter()
    y = f(x)
    y.sum().backward()
    _sync(x)
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
    """In a fresh process: peak RSS growth of one forward+backward, beyond the input and its gradient.

    A tiny fwd+bwd runs first, so one-time costs (code loaded on first use: a JIT's libraries, a kernel
    read from the disk cache; ~100 MiB of RSS for ours) are not counted as memory of the step."""
    torch.set_num_threads(threads)
    f = make(lib)
    assert not isinstance(f, str), f
    f(torch.rand(T, 64).requires_grad_()).sum().backward()
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
    ap.add_argument("--reps", type=int, default=21)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="3 repetitions, the three 16 MiB sizes only")
    ap.add_argument("--device", default="cpu", help="cpu (cuda: see the GPU backend issue)")
    ap.add_argument("--memory-child", nargs=4, metavar=("LIB", "T", "BN", "THREADS"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.memory_child:
        lib, T, BN, th = a.memory_child
        memory_child(lib, int(T), int(BN), int(th))
        return
    if a.device == "cuda":
        cuda_main(a.reps)
        return
    if a.device != "cpu":
        raise SystemExit(f"--device must be cpu or cuda, got {a.device!r}")
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
    from spikeforge.neurons import ALIF, LIF
    from spikeforge.surrogate import ATan
    for name, mod in (("LIF lean", LIF(tau=2.0, surrogate=ATan(2.0), detach_reset=True, memory="lean")),
                      ("ALIF (2 state variables)", ALIF(surrogate=ATan(2.0))),
                      ("ALIF lean", ALIF(surrogate=ATan(2.0), memory="lean"))):
        print(f"  {'sf ' + name:<13} {saved_per_step(mod, x):6.2f}")
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


def cuda_main(reps: int) -> None:
    """The GPU comparison: spikeforge's Triton kernels, SpikingJelly 2.0 on CUDA, the torch loop.

    Bandwidth model per neuron-step (float32): forward 8 B (x in, spikes out); forward+backward 26 B
    (x, spikes, 2 B of checkpoints; backward reads x, the spike gradient and the checkpoints, writes the
    input gradient). Fractions are against a measured device-to-device copy and, when the device reports
    its memory clock and bus width, the theoretical peak.
    """
    if not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here; run this on a GPU machine")
    from spikeforge.neurons import LIF
    from spikeforge.surrogate import Sigmoid
    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    big = torch.empty(2**28, dtype=torch.uint8, device=dev)
    copy_s = min(_timed(lambda: big.clone(), dev) for _ in range(5))
    copy_bw = 2 * big.numel() / copy_s
    peak = None
    if getattr(props, "memory_clock_rate", 0) and getattr(props, "memory_bus_width", 0):
        peak = 2 * props.memory_clock_rate * 1e3 * props.memory_bus_width / 8
    print(f"{props.name}: copy {copy_bw / 1e9:.0f} GB/s" + (f", theoretical {peak / 1e9:.0f} GB/s" if peak else ""))
    fns: dict[str, Fn | str] = {"spikeforge": LIF(tau=2.0, surrogate=Sigmoid(alpha=4.0), backend="triton").to(dev),
                                "spikeforge-torch": LIF(tau=2.0, surrogate=Sigmoid(alpha=4.0), backend="torch").to(dev),
                                "spikingjelly": make("spikingjelly")}
    sizes = [*SIZES, (4, 2**26)]
    print(f"{'T':>3} {'B·N':>9} {'library':<17} {'fwd ms':>8} {'fwd+bwd ms':>11} {'ratio':>6} "
          f"{'fwd BW':>7} {'f+b BW':>7}")
    for T, BN in sizes:
        x = torch.randn(T, BN, device=dev) * 0.8 + 0.3
        xg = x.clone().requires_grad_()
        res = {}
        for name, f in fns.items():
            if isinstance(f, str):
                continue
            if name == "spikeforge-torch" and T * BN > 2**24:
                continue
            time_fwd(f, x)
            time_fb(f, xg)
            res[name] = (statistics.median(time_fwd(f, x) for _ in range(reps)),
                         statistics.median(time_fb(f, xg) for _ in range(reps)))
        for name, (tf, tfb) in res.items():
            ratio = tfb / res["spikeforge"][1]
            bw_f, bw_fb = 8 * T * BN / tf, 26 * T * BN / tfb
            ref = peak or copy_bw
            print(f"{T:>3} {BN:>9} {name:<17} {tf * 1e3:>8.3f} {tfb * 1e3:>11.3f} {ratio:>6.1f} "
                  f"{bw_f / ref:>6.0%} {bw_fb / ref:>6.0%}")


def _timed(fn: Callable[[], object], dev: torch.device) -> float:
    torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize(dev)
    return time.perf_counter() - t0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()

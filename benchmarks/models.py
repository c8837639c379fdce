"""A real training step, side by side: spikeforge vs SpikingJelly 2.0, snnTorch 1.0 and Norse 1.1.

Every (architecture, library) pair runs in fresh processes (``--repeats``, interleaved): build, one forward and
backward on one sample (code loaded on first use — torch's kernels, a JIT's libraries and compiled kernels —
is not memory of the step), read that RSS as the baseline, reset the RSS high-water mark
(``/proc/self/clear_refs`` = 5), 3 warm-up steps, then
``--steps`` timed SGD steps (forward, mean over T, cross-entropy, backward, ``opt.step()``). Reported: the
median step time; the **peak-RSS growth over the post-build baseline** (``VmHWM`` after the steps minus
``VmRSS`` after the build: what the steps themselves take) and the absolute peak RSS, each the median over the
repeats, with ranges. SpikingJelly has no fast CPU backend: its rows are its torch backend. Every process,
whatever the library, first sets glibc to keep freed memory between steps (``--malloc kept``, the default: what
``spikeforge train`` does, ``spikeforge.core.allocator``); with glibc's defaults (``--malloc system``) the large
blocks of every step are unmapped and faulted in again, which costs all libraries alike.

Architectures (input ``[T=10, B=32, 2, 34, 34]`` binary event frames, 10 classes):

* ``spiking_cnn_tiny``: Conv(2→16, 3×3) – BN – LIF – MaxPool(2) – Conv(16→32) – BN – LIF – MaxPool(2) –
  Linear(2048→10) (the zoo model; a linear readout every step). Peer configurations (each in its idiomatic
  fast form):

  - spikeforge: ``create_model("spiking_cnn_tiny")``: ``TimeFold(Conv2d, BatchNorm2d)`` +
    ``LIF(τ=2, ATan(2), detach_reset=True)`` (fused CPU kernel, with the batch norm computed inside it:
    ``layers.fused_bn``), ``TimeFold(MaxPool2d)``, ``TimeFold(Linear)``; "spikeforge BN unfused": the same
    with ``fuse_bn = False`` on the folds (torch's batch norm, then the neuron: the code before);
  - SpikingJelly: multi-step ``layer.Conv2d / BatchNorm2d / MaxPool2d / Flatten / Linear`` (``step_mode='m'``,
    folded over T·B) and ``neuron.LIFNode(τ=2, ATan(), detach_reset=True, step_mode='m')``;
    ``functional.reset_net`` after each step;
  - snnTorch: ``nn.Conv2d / BatchNorm2d / MaxPool2d / Linear`` and ``snn.Leaky(β=0.5, atan surrogate,
    reset_mechanism='zero')`` called in a Python loop over T (the tutorials' form; BN sees one step);
  - Norse: the stateless layers folded over T·B by hand and ``norse.torch.LIFBoxCell`` (leaky integrator
    without synaptic current, ``dt·τ⁻¹ = 0.5``: the same leak as τ = 2) in a loop over T.

* ``sew_resnet_tiny`` and ``spikformer_tiny``: the registered spikeforge models against the same
  architectures built from SpikingJelly's multi-step layers and ``LIFNode`` (its ``model`` package imports
  torchvision, absent here).

* ``static``: the README's Fashion-MNIST recipe, ``spiking_cnn_tiny(in_channels=1, img_size=28, width=32)``
  on a static image ``[B=64, 1, 28, 28]`` direct-encoded over ``T = 4`` steps (a view, as
  ``spikeforge.encode.direct``): spikeforge with the first conv and BN computed once for all steps
  (``TimeFold`` on a static input), the same with ``static_once = False`` (every step computed: the code
  before), and SpikingJelly (the image repeated over T, its tutorials' form). Channels-last, as the recipe
  trains (``--channels-last true``); "spikeforge NCHW": the same in NCHW (``spikeforge train``'s default).

``--profile`` (on by default) adds, for each spikeforge row, the step's self CPU time by category (conv, linear,
batch norm, neuron, pooling, loss, optimizer; the rest of the wall time is Python, autograd and element-wise glue), from
``torch.profiler`` over 5 steps. Then the inference throughput (samples/s) of the forward pass as
``spikeforge report`` runs it (``torch.inference_mode``, batch 64) beside SpikingJelly's (``torch.no_grad``),
and ``psn``: neuron-level forward+backward on one layer of the sequential-CIFAR net (``T = 32``, ``B = 64``,
128 channels × 32): ``PSN`` (one GEMM), ``SlidingPSN`` (k = 4), the fused LIF and the same LIF on the torch
reference loop (``backend="torch"``).

    python benchmarks/models.py [--steps 20] [--repeats 3] [--threads 2] [--only spiking_cnn_tiny,psn]
                                [--no-profile] [--channels-last auto] [--malloc kept|system]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
T, B, C, H = 10, 32, 2, 34
STATIC = {"T": 4, "B": 64, "C": 1, "H": 28, "width": 32}     # the README's Fashion-MNIST recipe
ARCHS = {"spiking_cnn_tiny": ["spikeforge", "spikeforge BN unfused", "spikingjelly", "snntorch", "norse"],
         "sew_resnet_tiny": ["spikeforge", "spikingjelly"], "spikformer_tiny": ["spikeforge", "spikingjelly"],
         "static": ["spikeforge", "spikeforge every step", "spikeforge NCHW", "spikingjelly"]}


# -- the small CNN in each library (spiking_cnn_tiny: two conv-BN-LIF-pool stages, a linear readout) -----------
def cnn_spikeforge(cin: int = C, w: int = 16, side: int = H) -> tuple[nn.Module, Callable[[], None]]:
    from spikeforge.models import create_model
    return create_model("spiking_cnn_tiny", in_channels=cin, width=w, img_size=side), lambda: None


def cnn_spikingjelly(cin: int = C, w: int = 16, side: int = H) -> tuple[nn.Module, Callable[[], None]]:
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    def lif() -> nn.Module:
        return neuron.LIFNode(tau=2.0, surrogate_function=surrogate.ATan(), detach_reset=True, step_mode="m")
    net = nn.Sequential(
        layer.Conv2d(cin, w, 3, padding=1, bias=False, step_mode="m"), layer.BatchNorm2d(w, step_mode="m"), lif(),
        layer.MaxPool2d(2, step_mode="m"),
        layer.Conv2d(w, 2 * w, 3, padding=1, bias=False, step_mode="m"), layer.BatchNorm2d(2 * w, step_mode="m"),
        lif(), layer.MaxPool2d(2, step_mode="m"),
        layer.Flatten(step_mode="m"), layer.Linear(2 * w * (side // 4) ** 2, 10, step_mode="m"))
    return net, lambda: functional.reset_net(net)


class _SnnTorchCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        import snntorch as snn
        from snntorch import surrogate
        sg = surrogate.atan(alpha=2.0)
        self.c1, self.b1 = nn.Conv2d(2, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.c2, self.b2 = nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)
        self.fc = nn.Linear(2048, 10)
        self.l1, self.l2 = (snn.Leaky(beta=0.5, spike_grad=sg, reset_mechanism="zero") for _ in range(2))

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        m1, m2 = self.l1.init_leaky(), self.l2.init_leaky()
        out = []
        for x in x_seq:
            s, m1 = self.l1(self.b1(self.c1(x)), m1)
            s, m2 = self.l2(self.b2(self.c2(nn.functional.max_pool2d(s, 2))), m2)
            out.append(self.fc(nn.functional.max_pool2d(s, 2).flatten(1)))
        return torch.stack(out)


def cnn_snntorch() -> tuple[nn.Module, Callable[[], None]]:
    return _SnnTorchCNN(), lambda: None


class _NorseCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        import norse.torch as nt
        p = nt.LIFBoxParameters(tau_mem_inv=torch.tensor(500.0), v_th=torch.tensor(1.0), v_reset=torch.tensor(0.0))
        self.c1, self.b1 = nn.Conv2d(2, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.c2, self.b2 = nn.Conv2d(16, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)
        self.fc = nn.Linear(2048, 10)
        self.l1, self.l2 = (nt.LIFBoxCell(p, dt=1e-3) for _ in range(2))

    @staticmethod
    def _run(cell: nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
        state, out = None, []
        for x in x_seq:
            z, state = cell(x, state)
            out.append(z)
        return torch.stack(out)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        def fold(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return f(x.flatten(0, 1)).unflatten(0, x.shape[:2])
        s = self._run(self.l1, fold(lambda z: self.b1(self.c1(z)), x_seq))
        s = self._run(self.l2, fold(lambda z: self.b2(self.c2(nn.functional.max_pool2d(z, 2))), s))
        return fold(lambda z: self.fc(nn.functional.max_pool2d(z, 2).flatten(1)), s)


def cnn_norse() -> tuple[nn.Module, Callable[[], None]]:
    return _NorseCNN(), lambda: None


# -- the tiny zoo models built from SpikingJelly's layers -------------------------------------------------
def _sj() -> Any:
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    def lif(v_th: float = 1.0) -> nn.Module:
        return neuron.LIFNode(tau=2.0, v_threshold=v_th, surrogate_function=surrogate.ATan(), detach_reset=True,
                              step_mode="m")

    def cbn(cin: int, cout: int, k: int = 3, s: int = 1, dim: int = 2) -> nn.Module:
        conv = (layer.Conv2d if dim == 2 else layer.Conv1d)(cin, cout, k, s, k // 2, bias=False, step_mode="m")
        return nn.Sequential(conv, (layer.BatchNorm2d if dim == 2 else layer.BatchNorm1d)(cout, step_mode="m"))
    return functional, layer, lif, cbn


def sew_resnet_tiny_spikingjelly() -> tuple[nn.Module, Callable[[], None]]:
    functional, layer, lif, cbn = _sj()

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.branch = nn.Sequential(cbn(cin, cout, 3, stride), lif(), cbn(cout, cout), lif())
            self.down = nn.Sequential(cbn(cin, cout, 1, stride), lif()) if stride != 1 or cin != cout else None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.branch(x) + (x if self.down is None else self.down(x))
    net = nn.Sequential(cbn(2, 16), lif(), Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2),
                        layer.AdaptiveAvgPool2d(1, step_mode="m"), layer.Flatten(step_mode="m"),
                        layer.Linear(64, 10, step_mode="m"))
    return net, lambda: functional.reset_net(net)


def spikformer_tiny_spikingjelly() -> tuple[nn.Module, Callable[[], None]]:
    functional, layer, lif, cbn = _sj()
    D, heads = 64, 4

    class SSA(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q, self.k, self.v = (nn.Sequential(cbn(D, D, 1, dim=1), lif()) for _ in range(3))
            self.attn_lif = lif(0.5)
            self.proj = nn.Sequential(layer.Conv1d(D, D, 1, step_mode="m"), layer.BatchNorm1d(D, step_mode="m"), lif())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            q, k, v = (f(x).unflatten(2, (heads, -1)) for f in (self.q, self.k, self.v))
            out = ((k @ v.transpose(-1, -2)).transpose(-1, -2) @ q) * 0.125
            return self.proj(self.attn_lif(out.flatten(2, 3)))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            ch = [2, 8, 16, 32, 64]
            self.sps = nn.ModuleList(nn.Sequential(cbn(ch[i], ch[i + 1]), lif()) for i in range(4))
            self.pool = layer.MaxPool2d(3, 2, 1, step_mode="m")
            self.rpe = nn.Sequential(cbn(D, D), lif())
            self.attn = SSA()
            self.mlp = nn.Sequential(layer.Conv1d(D, 4 * D, 1, step_mode="m"), layer.BatchNorm1d(4 * D, step_mode="m"),
                                     lif(), layer.Conv1d(4 * D, D, 1, step_mode="m"),
                                     layer.BatchNorm1d(D, step_mode="m"), lif())
            self.head = layer.Linear(D, 10, step_mode="m")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for i, unit in enumerate(self.sps):
                x = unit(x)
                x = self.pool(x) if i >= 2 else x
            x = (x + self.rpe(x)).flatten(3)
            x = x + self.attn(x)
            x = x + self.mlp(x)
            return self.head(x.mean(-1))
    net = Net()
    return net, lambda: functional.reset_net(net)


def zoo_spikeforge(name: str) -> tuple[nn.Module, Callable[[], None]]:
    from spikeforge.models import create_model
    return create_model(name), lambda: None


def scan_keeps_layout() -> bool:
    """Whether spikeforge's neurons return spikes in their input's memory layout (channels-last stays
    channels-last). Only then does running the convs and BNs channels-last pay off: otherwise every neuron
    converts, and BN's backward receives gradients in the other layout."""
    from spikeforge.layers import default_neuron
    x = torch.zeros(2, 2, 3, 4, 4).flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (2, 2))
    return default_neuron()(x).stride() == x.stride()


def _on_folds(net: nn.Module, **flags: bool) -> None:
    """Set ``flags`` on every ``TimeFold`` of a spikeforge model (the rows that run its fast paths off)."""
    from spikeforge.layers import TimeFold
    for m in net.modules():
        if isinstance(m, TimeFold):
            for k, v in flags.items():
                setattr(m, k, v)


def build(arch: str, lib: str, channels_last: bool = False) -> tuple[nn.Module, Callable[[], None]]:
    if arch == "static":
        cfg = (STATIC["C"], STATIC["width"], STATIC["H"])
        net, reset = cnn_spikingjelly(*cfg) if lib == "spikingjelly" else cnn_spikeforge(*cfg)
        if lib == "spikeforge every step":
            _on_folds(net, static_once=False)
    elif arch == "spiking_cnn_tiny":
        net, reset = {"spikeforge": cnn_spikeforge, "spikeforge BN unfused": cnn_spikeforge,
                      "spikingjelly": cnn_spikingjelly, "snntorch": cnn_snntorch, "norse": cnn_norse}[lib]()
        if lib == "spikeforge BN unfused":
            _on_folds(net, fuse_bn=False)
    elif lib == "spikeforge":
        net, reset = zoo_spikeforge(arch)
    else:
        net, reset = {"sew_resnet_tiny": sew_resnet_tiny_spikingjelly,
                      "spikformer_tiny": spikformer_tiny_spikingjelly}[arch]()
    if channels_last and lib.startswith("spikeforge") and lib != "spikeforge NCHW":
        net = net.to(memory_format=torch.channels_last)
    return net, reset


def inputs(arch: str, lib: str, batch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The step's input and labels: binary event frames, or a static image over T steps (a view for
    spikeforge, as ``encode.direct`` makes it; repeated for SpikingJelly, as its tutorials do)."""
    if arch == "static":
        n = batch or STATIC["B"]
        img = torch.rand(n, STATIC["C"], STATIC["H"], STATIC["H"])
        x = img.unsqueeze(0).expand(STATIC["T"], *img.shape)
        return (x.contiguous() if lib == "spikingjelly" else x), torch.randint(0, 10, (n,))
    n = batch or B
    return (torch.rand(T, n, C, H, H) < 0.1).float(), torch.randint(0, 10, (n,))


# -- one (arch, lib) pair in this process -------------------------------------------------------------------
def _status(field: str) -> float:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return float(line.split()[1]) / 1024
    return float("nan")


# the direct conv (kernels.llvm_conv) counts as conv, also where its Function carries a batch norm's statistics
CATEGORIES = [("conv", ("convolution", "conv2d", "conv1d", "mkldnn_conv", "ConvFew", "ConvBatchAffine")),
              ("linear", ("aten::mm", "aten::addmm",
              "aten::bmm")), ("batch norm", ("batch_norm", "BatchAffine")), ("neuron", ("FusedScan",)),
              ("pooling", ("pool",)),
              ("loss", ("nll_loss", "log_softmax", "cross_entropy")), ("optimizer", ("Optimizer.",))]


def profile_categories(step: Callable[[], None], n: int = 5) -> dict[str, float]:
    """ms per step by category (self CPU time of the ops whose name matches), and the wall time of a step."""
    from torch.profiler import ProfilerActivity, profile
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as p:
        for _ in range(n):
            step()
    wall = (time.perf_counter() - t0) / n * 1e3
    out = dict.fromkeys([c for c, _ in CATEGORIES], 0.0)
    for ev in p.key_averages():
        for cat, keys in CATEGORIES:
            if any(k.lower() in ev.key.lower() for k in keys):
                out[cat] += ev.self_cpu_time_total / 1e3 / n
                break
    out["wall"] = wall
    return out


def worker(arch: str, lib: str, steps: int, profile: bool, channels_last: bool, malloc: str) -> dict[str, Any]:
    if malloc == "kept":          # for every library alike: as `spikeforge train` sets it (core.allocator)
        from spikeforge.core import keep_freed_memory
        reason = keep_freed_memory()
        if reason is not None:
            raise RuntimeError(f"--malloc kept: {reason}")
    torch.manual_seed(0)
    net, reset = build(arch, lib, channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    x, y = inputs(arch, lib)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(x).mean(0), y)
        loss.backward()
        opt.step()
        reset()
    # one sample forward and backward first: code loaded on first use (torch's kernels, a JIT's libraries and
    # compiled kernels) is not memory of the step
    nn.functional.cross_entropy(net(x[:, :1]).mean(0), y[:1]).backward()
    net.zero_grad(set_to_none=True)
    reset()
    base = _status("VmRSS")                      # after the build: the model, the input, torch's runtime
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    for _ in range(3):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    peak = _status("VmHWM")
    out: dict[str, Any] = {"ms": statistics.median(times) * 1e3, "rss": peak, "growth": peak - base}
    if profile:
        out["profile"] = profile_categories(step)
    return out


def run_pair(arch: str, lib: str, args: argparse.Namespace, profile: bool) -> dict[str, Any] | str:
    cmd = [sys.executable, __file__, "--worker", arch, lib, "--steps", str(args.steps), "--threads", str(args.threads),
           "--channels-last", args.channels_last, "--malloc", args.malloc]
    cmd.append("--profile" if profile else "--no-profile")
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=1800, env={**os.environ,
                       "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(ROOT / "src")]))})
    if r.returncode != 0:
        return f"failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}"
    return json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run_rows(arch: str, libs: list[str], args: argparse.Namespace) -> dict[str, dict[str, Any] | str]:
    """``--repeats`` fresh processes per library, interleaved; medians of step time, RSS growth and peak RSS
    (the RSS high-water mark of a multi-threaded process varies by ±10% from run to run with glibc's arenas)."""
    runs: dict[str, list[dict[str, Any] | str]] = {lib: [] for lib in libs}
    for r in range(args.repeats):
        for lib in libs:
            runs[lib].append(run_pair(arch, lib, args, args.profile and lib.startswith("spikeforge") and r == 0))
    out: dict[str, dict[str, Any] | str] = {}
    for lib, rs in runs.items():
        ok = [x for x in rs if isinstance(x, dict)]
        if not ok:
            out[lib] = str(rs[0])
            continue
        out[lib] = {k: statistics.median(x[k] for x in ok) for k in ("ms", "rss", "growth")}
        out[lib].update({f"{k}_range": (min(x[k] for x in ok), max(x[k] for x in ok)) for k in ("ms", "growth")})
        if "profile" in ok[0]:
            out[lib]["profile"] = ok[0]["profile"]
    return out


def print_rows(arch: str, res: dict[str, dict[str, Any] | str]) -> None:
    sf = res["spikeforge"]
    peers = [r for lib, r in res.items() if not lib.startswith("spikeforge") and isinstance(r, dict)]
    best_ms = min((r["ms"] for r in peers), default=float("nan"))
    best_growth = min((r["growth"] for r in peers), default=float("nan"))
    print(f"\n{arch}\n  {'library':<22} {'step ms':>8} {'(range)':>10} {'x best peer':>11} {'RSS growth MiB':>15} "
          f"{'(range)':>10} {'x best peer':>11} {'peak RSS MiB':>13}")
    for lib, r in res.items():
        name = f"{lib} (torch backend)" if lib == "spikingjelly" else lib
        if isinstance(r, str):
            print(f"  {name:<22} {r}")
            continue
        (tlo, thi), (glo, ghi) = r["ms_range"], r["growth_range"]
        print(f"  {name:<22} {r['ms']:>8.1f} {f'{tlo:.0f}-{thi:.0f}':>10} {r['ms'] / best_ms:>11.2f} "
              f"{r['growth']:>15.0f} {f'{glo:.0f}-{ghi:.0f}':>10} {r['growth'] / best_growth:>11.2f} {r['rss']:>13.0f}")
    if isinstance(sf, dict):
        print(f"  spikeforge: step {sf['ms'] / best_ms:.2f}x the best peer's (target <= 0.35), RSS growth "
              f"{sf['growth'] / best_growth:.2f}x (target <= 0.5)")
    profiled = {lib: r["profile"] for lib, r in res.items() if isinstance(r, dict) and "profile" in r}
    if profiled:
        cats = [c for c, _ in CATEGORIES]
        print(f"\n  profile of one step, ms (self CPU time by category; 'rest' = wall minus the categories: Python, "
              f"autograd, element-wise glue)\n  {'':<22} " + " ".join(f"{c:>10}" for c in [*cats, "rest", "wall"]))
        for lib, pr in profiled.items():
            rest = pr["wall"] - sum(pr[c] for c in cats)
            print(f"  {lib:<22} " + " ".join(f"{pr[c]:>10.1f}" for c in cats) + f" {rest:>10.1f} {pr['wall']:>10.1f}")
        if "spikeforge" in profiled:
            floor = profiled["spikeforge"]["conv"] + profiled["spikeforge"]["linear"]
            print(f"  floor: the convolutions and linear layers alone take {floor:.1f} ms = {floor / best_ms:.2f}x the "
                  "best peer's whole step")


# -- inference throughput: the forward pass as ``spikeforge report`` runs it, against SpikingJelly -------------
def inference_bench(archs: list[str], reps: int, channels_last: bool, batch: int = 64) -> None:
    print(f"\ninference throughput, batch {batch} (samples/s, median of {reps} after two warm-ups; spikeforge under "
          "torch.inference_mode as `spikeforge report` measures it, and under torch.no_grad, the two interleaved on "
          "one model, channels-last as the training rows; SpikingJelly (torch backend) under torch.no_grad)")
    for arch in archs:
        row = []
        runs: list[tuple[str, Any, Any, Callable[[], None], torch.Tensor]] = []
        for lib in ("spikeforge", "spikingjelly"):
            try:
                net, reset = build(arch, lib, channels_last)
            except ImportError as e:
                row.append(f"{lib}: not installed ({e.name})")
                continue
            net.eval()
            x, _ = inputs(arch, lib, batch)
            ctxs = [("spikeforge", torch.inference_mode), ("spikeforge no_grad", torch.no_grad)] \
                if lib == "spikeforge" else [(lib, torch.no_grad)]
            runs += [(name, ctx, net, reset, x) for name, ctx in ctxs]
        ts: dict[str, list[float]] = {name: [] for name, *_ in runs}
        for i in range(reps + 2):         # the rows in turn at every repetition: drift hits them alike
            for name, ctx, net, reset, x in runs:
                with ctx():
                    t0 = time.perf_counter()
                    net(x)
                    reset()
                    if i >= 2:
                        ts[name].append(time.perf_counter() - t0)
        row = [f"{name}: {batch / statistics.median(v):8.0f}" for name, v in ts.items()] + row
        print(f"  {arch:<18} " + "   ".join(row))


# -- PSN against LIF on the same shapes ---------------------------------------------------------------------
def psn_bench(reps: int) -> None:
    from spikeforge.neurons import LIF, PSN, SlidingPSN
    from spikeforge.surrogate import ATan
    Ts, Bs, N = 32, 64, 128 * 32
    lif = dict(tau=2.0, surrogate=ATan(alpha=2.0), detach_reset=True)
    cands = {"PSN (GEMM)": PSN(T=Ts), "SlidingPSN k=4 (GEMM)": SlidingPSN(4),
             "SlidingPSN k=4 (conv)": SlidingPSN(4, algorithm="conv"), "LIF fused (cpu)": LIF(**lif),
             "LIF torch loop": LIF(**lif, backend="torch")}
    x = (torch.randn(Ts, Bs, N) * 0.8 + 0.5).requires_grad_()
    res = {}
    for name, m in cands.items():
        ts = []
        for i in range(reps + 2):
            t0 = time.perf_counter()
            m(x).sum().backward()
            if i >= 2:
                ts.append(time.perf_counter() - t0)
            x.grad = None
        res[name] = statistics.median(ts) * 1e3
    ref = res["LIF fused (cpu)"]
    print(f"\nneuron layer fwd+bwd, x [T={Ts}, B={Bs}, {N}] ({Ts * Bs * N / 1e6:.1f}M neuron-steps)")
    for name, ms in res.items():
        print(f"  {name:<24} {ms:8.1f} ms   {ms / ref:5.2f}× fused LIF")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes per row (medians reported)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="spiking_cnn_tiny,sew_resnet_tiny,spikformer_tiny,static,inference,psn")
    ap.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True,
                    help="print spikeforge's step time by category (--no-profile: skip it)")
    ap.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto",
                    help="run spikeforge's convs channels-last (auto: when the neuron scan keeps that layout)")
    ap.add_argument("--malloc", choices=["kept", "system"], default="kept",
                    help="kept: glibc keeps freed memory between steps, for every library alike (as `spikeforge "
                         "train` sets it: spikeforge.core.allocator); system: glibc's defaults")
    ap.add_argument("--worker", nargs=2, metavar=("ARCH", "LIB"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.channels_last == "auto":
        a.channels_last = "on" if scan_keeps_layout() else "off"
    if a.worker:
        print(json.dumps(worker(*a.worker, a.steps, a.profile, a.channels_last == "on", a.malloc)))
        return
    if a.malloc == "kept":       # the inference and neuron rows below run in this process
        from spikeforge.core import keep_freed_memory
        keep_freed_memory()
    only = a.only.split(",")
    print(f"torch {torch.__version__}, {a.threads} threads, {os.cpu_count()} CPUs, event frames [T={T}, B={B}, {C}, "
          f"{H}, {H}], static images [B={STATIC['B']}, {STATIC['C']}, {STATIC['H']}, {STATIC['H']}] over "
          f"T={STATIC['T']}; median of {a.steps} SGD steps, one fresh process per row; spikeforge channels-last: "
          f"{a.channels_last}; allocator: {a.malloc} for every library")
    for arch, libs in ARCHS.items():
        if arch in only:
            print_rows(arch, run_rows(arch, libs, a))
    if "inference" in only:
        inference_bench([arch for arch in ("spiking_cnn_tiny", "sew_resnet_tiny", "static")], reps=5,
                        channels_last=a.channels_last == "on")
    if "psn" in only:
        psn_bench(reps=5)


if __name__ == "__main__":
    main()

"""One report of a trained model: accuracy, speed, memory, firing rates, ACs/MACs, energy and the audit.

    from spikeforge.analysis import run_report
    rep = run_report("runs/x/checkpoints/best.safetensors", "digits", "runs/x/report")

writes ``report.json``, ``raster.png`` (spike raster of one test sample), ``firing_rates.png`` and
``energy.png`` (per layer) into ``out_dir`` and prints a terminal table (``format_report``). The same from
the command line: ``spikeforge report CHECKPOINT --dataset NAME``.

Accuracy, latency (one sample) and throughput are measured with the model as it is (fused neuron
kernels); counting, recording and the audit run on the first ``count_batches`` test batches with the
neurons on the torch reference loop (``OpCounter``), which gives the same spikes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .audit import audit_counter
from .counting import OpCounter
from .energy import EnergyModel, energy, layer_energy
from .operands import Convention
from .perf import param_bytes, peak_memory_bytes, time_forward
from .record import SpikeRecorder

__all__ = ["analyze", "run_report", "format_report", "side_by_side", "write_plots"]


def analyze(model: nn.Module, batches: Iterable[Tensor], convention: str | Convention = "spikingformer",
            energy_model: EnergyModel | None = None, batch_dim: int = 1, progress: Any = None) -> dict[str, Any]:
    """Count, record and audit ``model`` on ``batches`` (each ``[T, B, ...]``) in one pass.

    Returns a JSON-ready dict: ``convention``, ``samples``, ``energy`` (totals, per sample),
    ``layers`` (per synaptic layer: ``ac``, ``mac``, input ``rate``, ``energy_mj``, ``tags``),
    ``firing_rates`` (per spiking layer: ``rate``, ``sparsity``, ``rate_per_step``) and ``audit``.
    """
    em = energy_model or EnergyModel()
    was = model.training
    model.eval()
    try:
        with torch.no_grad(), OpCounter(model, convention, batch_dim) as c, SpikeRecorder(model) as rec:
            for x in batches:
                model(x)
                if progress is not None:
                    progress.update(1)
    finally:
        model.train(was)
    n = max(c.samples, 1)
    per_layer = layer_energy(c, em)
    layers = [{"layer": k, "module_type": v.module_type, "op": v.op, "ac": v.ac / n, "mac": v.mac / n,
               "dense": v.dense / n, "rate_in": v.rate, "energy_mj": per_layer[k], "tags": sorted(v.tags)}
              for k, v in c.per_layer().items()]
    neuron_ops = sum(v.dense for v in c.per_layer("neuron").values()) / n
    return {"convention": c.convention.name, "samples": c.samples, "energy": {**energy(c, em),
            "neuron_internal_mults": neuron_ops}, "layers": layers, "firing_rates": rec.summary(),
            "audit": audit_counter(c).to_dict()}


def _loader(data: Any, batch_size: int) -> Any:
    from torch.utils.data import DataLoader
    return DataLoader(data.test, batch_size=batch_size, shuffle=False)


def run_report(checkpoint: str | Path, dataset: str | None = None, out_dir: str | Path | None = None, *,
               data_root: str | None = None, convention: str | Convention = "spikingformer",
               energy_model: EnergyModel | None = None, batch_size: int = 64, count_batches: int = 4,
               max_samples: int | None = None, progress: bool = True, plots: bool = True) -> dict[str, Any]:
    """Evaluate a checkpoint on its (or ``dataset``'s) test split and write the report.

    Args:
        checkpoint: a spikeforge checkpoint (``.safetensors``) whose metadata holds its training config.
        dataset: test on this dataset instead of the training one (same input shape needed).
        out_dir: where to write ``report.json`` and the PNGs (default: ``<checkpoint dir>/../report``).
        convention: operation-counting convention (``"spikingformer"``, ``"spikformer"``, ``"neurobench"``).
        energy_model: ``E_AC`` / ``E_MAC`` (default 0.9 / 4.6 pJ).
        batch_size: batch for accuracy, throughput and memory.
        count_batches: test batches that are counted, recorded and audited.
        max_samples: evaluate accuracy on the first ``max_samples`` test samples only.
        progress: show a progress bar.
        plots: write the PNG plots (needs matplotlib).

    Returns:
        The report dict (also written to ``out_dir/report.json``).
    """
    from tqdm.auto import tqdm

    from ..config import TrainConfig
    from ..training.checkpoint import load_checkpoint
    from ..training.datasets import build_dataset, to_time_first
    from ..training.run import make_model, validate

    ck = load_checkpoint(checkpoint)
    saved = dict(ck["meta"].get("config") or {})
    if not saved:
        raise ValueError(f"report: checkpoint {checkpoint} stores no training config (meta.config)")
    saved.update({k: v for k, v in (("dataset", dataset), ("data_root", data_root)) if v is not None})
    saved["progress"] = False
    cfg = validate(TrainConfig(**{k: v for k, v in saved.items() if k != "run_dir"}))
    out = Path(out_dir) if out_dir is not None else Path(checkpoint).resolve().parent.parent / "report"
    out.mkdir(parents=True, exist_ok=True)
    data = build_dataset(cfg)
    model = make_model(cfg, data)
    model.load_state_dict(ck["model"])
    model.eval()
    gen = torch.Generator().manual_seed(12345)
    test_n = len(data.test) if max_samples is None else min(max_samples, len(data.test))  # type: ignore[arg-type]
    n_batches = -(-test_n // batch_size)
    bar = tqdm(total=n_batches + count_batches + 3, desc="report", disable=not progress, leave=False)

    correct = seen = 0
    fwd_seconds = 0.0
    counted: list[Tensor] = []
    with torch.no_grad():
        for x, y in _loader(data, batch_size):
            if seen >= test_n:
                break
            x, y = x[: test_n - seen], y[: test_n - seen]
            x_seq = to_time_first(x, data.kind, cfg.T, cfg.encoding, gen)
            t0 = time.perf_counter()
            logits = model(x_seq)
            fwd_seconds += time.perf_counter() - t0
            correct += int((logits.float().mean(0).argmax(-1) == y).sum())
            seen += len(y)
            if len(counted) < count_batches:
                counted.append(x_seq)
            bar.update(1)
    first = counted[0]
    latency = time_forward(model, first[:, :1])
    bar.update(1)
    peak = peak_memory_bytes(model, first)
    bar.update(1)
    analysis = analyze(model, counted, convention, energy_model, progress=bar)
    rec = SpikeRecorder(model, full=True)
    with rec, torch.no_grad():
        model(first[:, :1])
    bar.update(1)
    bar.close()
    rep: dict[str, Any] = {
        "checkpoint": str(checkpoint), "model": cfg.model, "dataset": cfg.dataset, "T": cfg.T,
        "encoding": cfg.encoding, "params": sum(p.numel() for p in model.parameters()),
        "accuracy": correct / max(seen, 1), "test_samples": seen,
        "latency_ms": 1e3 * latency, "throughput_sps": seen / max(fwd_seconds, 1e-12), "batch_size": batch_size,
        "peak_memory_mib": peak / 2**20, "param_mib": param_bytes(model) / 2**20,
        "device": str(first.device), "threads": torch.get_num_threads(), **analysis}
    if plots:
        rep["files"] = write_plots(rep, {n: rec.spikes(n)[:, 0] for n in rec.records if rec.records[n].spikes}, out)
    (out / "report.json").write_text(json.dumps(rep, indent=2))
    rep.setdefault("files", {})["json"] = str(out / "report.json")
    return rep


def write_plots(rep: Mapping[str, Any], spikes: Mapping[str, Tensor], out: Path) -> dict[str, str]:
    """``raster.png``, ``firing_rates.png`` and ``energy.png`` from a report dict and one sample's spikes."""
    from .plots import bars_png, raster_png
    files = {}
    if spikes:
        files["raster"] = str(raster_png(spikes, out / "raster.png", title=f"spike raster, {rep['model']}"))
    rates = {r["layer"]: r["rate"] for r in rep["firing_rates"]}
    if rates:
        files["firing_rates"] = str(bars_png(rates, out / "firing_rates.png", "spikes / neuron / step",
                                             title="firing rate per layer"))
    en = {r["layer"]: 1e3 * r["energy_mj"] for r in rep["layers"]}
    files["energy"] = str(bars_png(en, out / "energy.png", "energy per sample (µJ)",
                                   title=f"energy per layer ({rep['convention']} counting)"))
    return files


def _joules(mj: float) -> str:
    return f"{mj:.4g} mJ" if mj >= 1 else f"{1e3 * mj:.4g} µJ" if mj >= 1e-3 else f"{1e6 * mj:.4g} nJ"


def format_report(rep: Mapping[str, Any]) -> str:
    """The terminal table of a report dict."""
    e = rep["energy"]
    lines = [f"{rep['model']} on {rep['dataset']} (T={rep['T']}, {rep['params']:,} parameters)",
             f"  accuracy {100 * rep['accuracy']:.2f}% on {rep['test_samples']} test samples",
             f"  latency {rep['latency_ms']:.2f} ms (1 sample), throughput {rep['throughput_sps']:.0f} samples/s "
             f"(batch {rep['batch_size']}, {rep['threads']} threads, {rep['device']})",
             f"  peak activation memory {rep['peak_memory_mib']:.1f} MiB (batch {rep['batch_size']}), "
             f"parameters {rep['param_mib']:.2f} MiB",
             f"  per sample ({rep['convention']} counting): {e['ac']:.4g} AC, {e['mac']:.4g} MAC -> "
             f"{_joules(e['energy_mj'])} (AC {_joules(e['ac_mj'])} + MAC {_joules(e['mac_mj'])}; "
             f"as an ANN {_joules(e['ann_mj'])})",
             "", f"  {'layer':34s} {'rate in':>8s} {'AC':>11s} {'MAC':>11s} {'energy µJ':>10s}"]
    for r in rep["layers"]:
        tag = f" [{', '.join(r['tags'])}]" if r["tags"] else ""
        lines.append(f"  {r['layer'][:34]:34s} {r['rate_in']:8.3f} {r['ac']:11.4g} {r['mac']:11.4g} "
                     f"{1e3 * r['energy_mj']:10.4g}{tag}")
    lines += ["", f"  {'spiking layer':34s} {'rate':>7s} {'sparsity':>9s}  per step"]
    for r in rep["firing_rates"]:
        steps = " ".join(f"{v:.3f}" for v in r["rate_per_step"][:8])
        lines.append(f"  {r['layer'][:34]:34s} {r['rate']:7.4f} {r['sparsity']:9.4f}  {steps}")
    a = rep["audit"]
    lines += ["", "  spike-driven audit (non-spike MACs per sample):"]
    for f in a["findings"]:
        tag = f" [{', '.join(f['tags'])}]" if f["tags"] else ""
        lines.append(f"    {f['layer']} ({f['op']}): {f['count']:.4g} - {f['cause']}{tag}")
    if not a["findings"]:
        lines.append("    none")
    verdict = "yes" if a["spike_driven"] else f"no ({a['nonspike_synaptic_macs_excl_encoder_head']:.4g} MACs)"
    lines.append(f"  spike-driven outside the encoder and the head: {verdict}")
    if rep.get("files"):
        lines.append("  wrote: " + ", ".join(rep["files"].values()))
    return "\n".join(lines)


def side_by_side(reports: Mapping[str, Mapping[str, Any]], reference: str | None = None) -> str:
    """A table comparing reports (name -> report dict): accuracy, ACs, MACs, energy, strict non-spike MACs."""
    names = list(reports)
    ref = reference or names[0]
    rows = [f"{'':28s}" + "".join(f"{n:>22s}" for n in names)]

    def row(label: str, fn: Any, fmt: str) -> None:
        rows.append(f"{label:28s}" + "".join(f"{format(fn(reports[n]), fmt):>22s}" for n in names))

    row("test accuracy (%)", lambda r: 100 * r["accuracy"], ".2f")
    row("parameters", lambda r: r["params"], ",d")
    row("AC / sample", lambda r: r["energy"]["ac"], ".4g")
    row("MAC / sample", lambda r: r["energy"]["mac"], ".4g")
    row("energy / sample (µJ)", lambda r: 1e3 * r["energy"]["energy_mj"], ".4g")
    row(f"energy vs {ref} (%)",
        lambda r: 100 * (r["energy"]["energy_mj"] / reports[ref]["energy"]["energy_mj"] - 1), "+.1f")
    row("non-spike MACs (strict)", lambda r: r["audit"]["nonspike_synaptic_macs_excl_encoder_head"], ".4g")
    row("layers with non-spike MACs", lambda r: sum(1 for f in r["audit"]["findings"]
                                                   if f["role"] == "synaptic" and not f["tags"]), "d")
    return "\n".join(rows)

"""The pieces of a model report: ``analyze`` (count, record and audit any model on some batches), the
terminal table (``format_report``), the comparison table (``side_by_side``) and the plots.

Analysis observes any ``nn.Module`` and never knows how it was trained; the workflow that rebuilds a
checkpoint, evaluates it and writes ``report.json`` is ``spikeforge.app.run_report`` (``spikeforge report``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..core import eval_mode
from .audit import audit_counter
from .counting import OpCounter
from .energy import EnergyModel, energy, layer_energy
from .operands import Convention
from .record import SpikeRecorder

__all__ = ["analyze", "format_report", "side_by_side", "write_plots"]


def analyze(model: nn.Module, batches: Iterable[Tensor], convention: str | Convention = "spikingformer",
            energy_model: EnergyModel | None = None, batch_dim: int = 1, progress: Any = None) -> dict[str, Any]:
    """Count, record and audit ``model`` on ``batches`` (each ``[T, B, ...]``) in one pass.

    Returns a JSON-ready dict: ``convention``, ``samples``, ``energy`` (totals, per sample),
    ``layers`` (per synaptic layer: ``ac``, ``mac``, input ``rate``, ``energy_mj``, ``tags``),
    ``firing_rates`` (per spiking layer: ``rate``, ``sparsity``, ``rate_per_step``) and ``audit``.
    """
    em = energy_model or EnergyModel()
    with eval_mode(model), torch.no_grad(), OpCounter(model, convention, batch_dim) as c, SpikeRecorder(model) as rec:
        for x in batches:
            model(x)
            if progress is not None:
                progress.update(1)
    n = max(c.samples, 1)
    per_layer = layer_energy(c, em)
    layers = [{"layer": k, "module_type": v.module_type, "op": v.op, "ac": v.ac / n, "mac": v.mac / n,
               "dense": v.dense / n, "rate_in": v.rate, "energy_mj": per_layer[k], "tags": sorted(v.tags)}
              for k, v in c.per_layer().items()]
    neuron_ops = sum(v.dense for v in c.per_layer("neuron").values()) / n
    return {"convention": c.convention.name, "samples": c.samples, "energy": {**energy(c, em),
            "neuron_internal_mults": neuron_ops}, "layers": layers, "firing_rates": rec.summary(),
            "audit": audit_counter(c, rec.rates()).to_dict()}


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
    for flag, c in rep.get("compression", {}).items():
        nums = ", ".join(f"{k} {v}" for k, v in c.items() if k != "spec" and not isinstance(v, dict))
        lines.append(f"  --{flag} {c['spec']}: {nums}")
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

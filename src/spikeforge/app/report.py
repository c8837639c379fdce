"""The report workflow: one report of a trained checkpoint (what ``spikeforge report`` calls).

    from spikeforge.app import run_report
    rep = run_report("runs/x/checkpoints/best.safetensors", "digits", "runs/x/report")

writes ``report.json``, ``raster.png`` (spike raster of one test sample), ``firing_rates.png`` and
``energy.png`` (per layer) into ``out_dir``; ``spikeforge.analysis.format_report`` prints it as a table.

Accuracy, latency (one sample) and throughput are measured with the model as it is (fused neuron
kernels); counting, recording and the audit (``spikeforge.analysis.analyze``) run on the first
``count_batches`` test batches with the neurons on the torch reference loop, which gives the same spikes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..analysis import EnergyModel, SpikeRecorder, analyze, write_plots
from ..analysis.operands import Convention
from ..analysis.perf import param_bytes, peak_memory_bytes, time_forward
from ..core import atomic_write, keep_freed_memory
from ..data import batch_loader, to_time_first
from ..training import count_correct
from .build import compressors_of, rebuild

__all__ = ["run_report"]


def default_report_dir(checkpoint: str | Path) -> Path:
    """``<run>/report`` for a run's ``<run>/checkpoints/*.safetensors``; beside any other checkpoint file
    (an imported one, a copy), ``<name>-report/`` — never a folder above it that it does not belong to."""
    ck = Path(checkpoint).resolve()
    if ck.parent.name == "checkpoints":
        return ck.parent.parent / "report"
    return ck.with_name(f"{ck.stem}-report")


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

    keep_freed_memory()       # as `fit` does: batches reuse the last one's memory (core.allocator)
    rb = rebuild(checkpoint, dataset=dataset, data_root=data_root, progress=False)
    cfg, data, model = rb.cfg, rb.data, rb.model
    out = Path(out_dir) if out_dir is not None else default_report_dir(checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    gen = torch.Generator().manual_seed(12345)
    test_n = len(data.test) if max_samples is None else min(max_samples, len(data.test))  # type: ignore[arg-type]
    n_batches = -(-test_n // batch_size)
    bar = tqdm(total=n_batches + count_batches + 3, desc="report", disable=not progress, leave=False)

    correct = seen = 0
    fwd_seconds = 0.0
    counted: list[Tensor] = []
    with torch.inference_mode():
        for x, y in batch_loader(data.test, data.kind, batch_size=batch_size, shuffle=False):
            if seen >= test_n:
                break
            k = test_n - seen          # the last batch may be cut (before encoding: the same draws as before)
            x, y = (x[:, :k] if data.kind == "frames" else x[:k]), y[:k]
            x_seq = to_time_first(x, data.kind, cfg.T, cfg.encoding, gen)
            t0 = time.perf_counter()
            logits = model(x_seq)
            fwd_seconds += time.perf_counter() - t0
            correct += count_correct(logits, y)
            seen += len(y)
            if len(counted) < count_batches:
                counted.append(x_seq)
            bar.update(1)
    first = counted[0]
    latency = time_forward(model, first[:, :1])
    bar.update(1)
    peak = peak_memory_bytes(model, first)
    bar.update(1)
    comps = compressors_of(model)
    if energy_model is None:     # a compression may change the energy per operation (MINT: integer adds)
        own = [getattr(c, "energy_model", lambda m: None)(model) for c in comps]
        energy_model = next((em for em in own if em is not None), None)
    analysis = analyze(model, counted, convention, energy_model, progress=bar)
    rec = SpikeRecorder(model, full=True)
    with rec, torch.no_grad():
        model(first[:, :1])
    bar.update(1)
    bar.close()
    rep: dict[str, Any] = {
        "checkpoint": str(checkpoint), "model": cfg.model, "dataset": cfg.dataset, "T": cfg.T,
        "encoding": cfg.encoding, "method": cfg.method, "params": sum(p.numel() for p in model.parameters()),
        "accuracy": correct / max(seen, 1), "test_samples": seen,
        "latency_ms": 1e3 * latency, "throughput_sps": seen / max(fwd_seconds, 1e-12), "batch_size": batch_size,
        "peak_memory_mib": peak / 2**20, "param_mib": param_bytes(model) / 2**20,
        "device": str(first.device), "threads": torch.get_num_threads(), **analysis}
    if comps:
        rep["compression"] = {c.flag: {"spec": c.spec(), **c.describe(model)} for c in comps}
    if plots:
        rep["files"] = write_plots(rep, {n: rec.spikes(n)[:, 0] for n in rec.records if rec.records[n].spikes}, out)
    atomic_write(out / "report.json", json.dumps(rep, indent=2))
    rep.setdefault("files", {})["json"] = str(out / "report.json")
    return rep

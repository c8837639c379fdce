"""The deploy workflow: a MINT-quantised run → its integer model on the simulated chip, event by event, over
the test split (what ``spikeforge deploy`` calls)."""

from __future__ import annotations

import json
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ..compress import CompressionError, mint_layers, to_integer
from ..core import UserError, atomic_write
from ..data import batch_loader, to_time_first
from ..export.chip import ChipConfig, ChipError, map_model
from ..export.chip_sim import LayerStats, simulate, summary
from ..training import RunFailed
from .build import rebuild
from .export import ExportTargetError, check_target
from .rundir import run_checkpoint

__all__ = ["deploy_run"]


def deploy_run(path: str | Path, config: ChipConfig | None = None, batch_size: int = 256, limit: int | None = None,
               data_root: str | None = None, json_out: str | Path | None = None, overwrite: bool = False,
               ) -> dict[str, Any]:
    """Map a run's model (or a checkpoint's) onto the chip and run its test split on it.

    The run must be MINT-quantised with a shared scale (``--quantize w<b>u<b>``): its integer model
    (``compress.to_integer``) is mapped with ``export.chip.map_model`` and simulated with
    ``export.chip_sim.simulate``. Every batch's chip output is compared with the integer model's; a difference
    is a bug and fails the run.

    Returns:
        ``config`` (one line), ``mapping`` (per layer: inputs, neurons, synapses, crossbars, cores), ``run``
        (per layer and total, per sample: synaptic operations, packets, hops, spikes, neuron updates, energy),
        ``accuracy`` of the chip and of the integer model, ``bit_exact``, the decision step (median, mean)
        and the sample count. With ``json_out`` the same as JSON (refused if it exists, unless ``overwrite``).
    """
    cfg = config or ChipConfig()
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise UserError(f"--limit must be a positive number of test samples, got {limit!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"--batch-size must be a positive integer, got {batch_size!r}")
    target = None if json_out is None else check_target(json_out, overwrite)
    ckpt = run_checkpoint(Path(path))
    rb = rebuild(ckpt, progress=False, data_root=data_root)
    if not mint_layers(rb.model):
        raise ChipError(f"{ckpt}: the model is not quantised; the chip runs integer models: train with "
                        "--quantize w<b>u<b> (e.g. w4u4 for --weight-bits 4), see docs/compress/mint.md")
    try:
        integer = to_integer(rb.model.eval())
    except CompressionError as e:
        raise ChipError(f"{ckpt}: {e}") from None
    data, T, enc = rb.data, rb.cfg.T, rb.cfg.encoding
    gen = torch.Generator().manual_seed(12345)
    loader = batch_loader(data.test, data.kind, batch_size=batch_size, shuffle=False)
    mapping = None
    stats: dict[str, LayerStats] = {}
    seen = correct_chip = correct_int = 0
    decisions: list[int] = []
    with torch.no_grad():
        for x, y in loader:
            if limit is not None and seen >= limit:
                break
            if limit is not None:
                x, y = x[:limit - seen], y[:limit - seen]
            x_seq = to_time_first(x, data.kind, T, enc, gen)
            if mapping is None:
                mapping = map_model(integer, x_seq[:, :1], cfg)
                stats = {m.name: LayerStats() for m in mapping.layers}
            run = simulate(mapping, x_seq)
            want = integer(x_seq)
            if not torch.equal(run.outputs, want):
                raise RunFailed(f"the chip's output differs from the integer model's on test samples {seen}.."
                                f"{seen + len(y) - 1}; this is a bug, please report it")
            for k, st in run.stats.items():
                stats[k].add(st)
            correct_chip += int((run.outputs.sum(0).argmax(-1) == y).sum())
            correct_int += int((want.sum(0).argmax(-1) == y).sum())
            decisions += run.decision.tolist()
            seen += len(y)
    if mapping is None:
        raise UserError(f"{ckpt}: the test split of {rb.cfg.dataset} is empty")
    res = {"checkpoint": str(ckpt), "model": rb.cfg.model, "dataset": rb.cfg.dataset, "T": T,
           "config": mapping.config.describe(), "mapping": mapping.table(),
           "cores": mapping.cores, "crossbars": mapping.crossbars, "samples": seen,
           "accuracy": correct_chip / seen, "integer_accuracy": correct_int / seen, "bit_exact": True,
           "decision_step_median": statistics.median(decisions), "decision_step_mean": sum(decisions) / seen,
           "run": summary(mapping, stats, seen)}
    if target is not None:
        try:
            atomic_write(target, json.dumps(res, indent=1), overwrite=overwrite)
        except FileExistsError:
            raise ExportTargetError(f"{target} appeared while deploying; pass --overwrite to replace it") from None
    return res


def chip_config(crossbar: tuple[int, int] | None = None, **fields: Any) -> ChipConfig:
    """``ChipConfig()`` with the fields given (``None`` keeps the default)."""
    cfg = ChipConfig()
    given = {k: v for k, v in fields.items() if v is not None}
    if crossbar is not None:
        given["crossbar"] = crossbar
    return replace(cfg, **given)

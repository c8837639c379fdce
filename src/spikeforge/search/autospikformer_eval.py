"""Scoring an Auto-Spikformer sub-network with inherited weights: BatchNorm recalibration, accuracy, energy.

No sub-network is retrained. Its BatchNorm running statistics, though, were accumulated by the supernet over
*all* sampled sub-networks, so they are recomputed for the sub-network alone (``recalibrate_bn``, as
AutoFormer / once-for-all do): reset, ``momentum=None`` (a cumulative average), and a forward in train mode
without gradient over ``BN_BATCHES = 20`` training batches.

The energy is the figure ``spikeforge report`` prints for the same model, computed the same way
(``report_energy``): ``spikeforge.analysis.analyze`` on the first ``count_batches = 4`` test batches of
``batch_size = 64`` under the ``"spikingformer"`` counting convention with the default ``EnergyModel``
(0.9 pJ per AC, 4.6 pJ per MAC). Only test *inputs* are used (no labels), as the report does.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import Dataset

from ..analysis import analyze
from ..data import DataBundle, batch_loader, to_time_first
from ..training import evaluate
from .autospikformer_supernet import SpikformerSupernet, extract_subnet

__all__ = ["BN_BATCHES", "REPORT_SETTINGS", "recalibrate_bn", "calibration_batches", "report_energy",
           "measure_subnet"]

BN_BATCHES = 20
"""Training batches a sub-network's BatchNorm statistics are recomputed on."""
REPORT_SETTINGS: dict[str, Any] = {"batch_size": 64, "count_batches": 4, "convention": "spikingformer",
                                   "seed": 12345}
"""``spikeforge report``'s defaults that fix its energy figure (``run_report``'s ``batch_size``,
``count_batches``, ``convention`` and its encoder seed); ``tests/search`` pins them to the report's."""


def recalibrate_bn(model: nn.Module, batches: Iterable[Tensor], num_batches: int = BN_BATCHES) -> int:
    """Recompute every BatchNorm's running statistics of ``model`` on exactly ``num_batches`` batches.

    Each BN is reset (mean 0, variance 1, count 0) and set to ``momentum=None``, so after ``n`` batches its
    running mean is the average of the ``n`` batch means (likewise the unbiased variances); the forward runs
    in train mode under ``torch.no_grad()``. The momenta and the model's mode are put back afterwards.

    Args:
        model: any model; only ``torch.nn`` BatchNorm layers change.
        batches: inputs ``[T, B, ...]``; the first ``num_batches`` are used, the rest are not drawn.
        num_batches: how many.

    Returns:
        ``num_batches``. Raises ``ValueError`` when ``batches`` has fewer.
    """
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    was_training = model.training
    model.train()
    used = 0
    try:
        with torch.no_grad():
            it = iter(batches)
            while used < num_batches:
                try:
                    x = next(it)
                except StopIteration:
                    raise ValueError(f"recalibrate_bn: {num_batches} batches are needed, only {used} were given") \
                        from None
                model(x)
                used += 1
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.train(was_training)
    return used


def calibration_batches(dataset: Dataset, kind: str, *, T: int, encoding: str, batch_size: int = 64,
                        seed: int = 0, device: torch.device | str = "cpu") -> Iterator[Tensor]:
    """Endless training batches ``[T, B, ...]`` for ``recalibrate_bn``: a seeded shuffle of ``dataset``,
    reshuffled when exhausted (so any number of full batches exists), encoded as in training.

    A pure function of ``seed``: every sub-network of a search is recalibrated on the same batches."""
    n = len(dataset)  # type: ignore[arg-type]
    if n == 0:
        raise ValueError("calibration_batches: the training split is empty")
    order_gen, enc_gen = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    pool: deque[int] = deque()

    def batch() -> list[int]:
        out: list[int] = []
        while len(out) < batch_size:
            if not pool:
                pool.extend(torch.randperm(n, generator=order_gen).tolist())
            out.append(pool.popleft())
        return out

    while True:
        x, _ = next(iter(batch_loader(dataset, kind, batch_sampler=[batch()])))
        yield to_time_first(x, kind, T, encoding, enc_gen).to(device)


def report_energy(model: nn.Module, test: Dataset, kind: str, T: int, encoding: str) -> dict[str, float]:
    """Energy per sample exactly as ``spikeforge report`` computes it (``REPORT_SETTINGS``).

    Returns:
        ``energy_uj`` (µJ per sample), ``energy_mj``, ``ac`` and ``mac`` (operations per sample).
    """
    s = REPORT_SETTINGS
    gen = torch.Generator().manual_seed(s["seed"])
    dev = next(model.parameters()).device
    counted = []
    for x, _ in batch_loader(test, kind, batch_size=s["batch_size"], shuffle=False):
        counted.append(to_time_first(x, kind, T, encoding, gen).to(dev))
        if len(counted) == s["count_batches"]:
            break
    e = analyze(model, counted, s["convention"])["energy"]
    return {"energy_uj": 1e3 * float(e["energy_mj"]), "energy_mj": float(e["energy_mj"]), "ac": float(e["ac"]),
            "mac": float(e["mac"])}


def measure_subnet(supernet: SpikformerSupernet, genotype: dict[str, Any], data: DataBundle, *, T: int,
                   encoding: str, bn_batches: int = BN_BATCHES, bn_batch_size: int = 64,
                   calib_seed: int = 0) -> dict[str, Any]:
    """Extract ``genotype``'s sub-network, recalibrate its BatchNorms and score it (no retraining).

    Returns:
        ``val_accuracy``, ``test_accuracy``, ``energy_uj`` (and ``energy_mj``, ``ac``, ``mac`` per sample, as
        ``spikeforge report``) and ``params``.
    """
    if data.val is None:
        raise ValueError("measure_subnet: the data has no validation split (val_fraction must be > 0)")
    dev = next(supernet.parameters()).device
    model = extract_subnet(supernet, genotype)
    recalibrate_bn(model, calibration_batches(data.train, data.kind, T=T, encoding=encoding, batch_size=bn_batch_size,
                                              seed=calib_seed, device=dev), bn_batches)
    model.eval()
    val = evaluate(model, data.val, data.kind, T, encoding)["accuracy"]
    test = evaluate(model, data.test, data.kind, T, encoding)["accuracy"]
    return {"val_accuracy": float(val), "test_accuracy": float(test),
            **report_energy(model, data.test, data.kind, T, encoding),
            "params": int(sum(p.numel() for p in model.parameters()))}

"""Paper size on the meta device: every firing rate is 1, so the counter's dense count must equal the
closed form of methods.md §0.2 (Spikformer appendix; Spikingformer's ``flops_counter.py``)."""

from __future__ import annotations

import pytest
import torch

from spikeforge.analysis import audit_counter, count_ops, energy, formula_energy_mj, ssa_sops
from spikeforge.models import create_model

T, D, DEPTH, HEADS, IMG, CLASSES, MLP = 4, 768, 8, 12, 224, 1000, 4


def flops_per_step() -> dict[str, int]:
    """FLOPs of one image at one step, bias additions included (as syops counts them)."""
    ch = [3, D // 8, D // 4, D // 2, D, D]
    res = [IMG, IMG // 2, IMG // 4, IMG // 8, IMG // 16]          # a 3×3/2 max pool before units 1..4
    n, hidden = res[4] ** 2, MLP * D                              # 196 tokens
    f = {f"sps{i}": res[i] ** 2 * 9 * ch[i] * ch[i + 1] for i in range(5)}     # bias-free 3×3 convs
    for b in range(DEPTH):
        f |= {f"{b}.q": n * D * D, f"{b}.k": n * D * D, f"{b}.v": n * D * D, f"{b}.proj": n * D * D + n * D,
              f"{b}.fc1": n * D * hidden + n * hidden, f"{b}.fc2": n * hidden * D + n * D}
    f["head"] = D * CLASSES + CLASSES
    return f


def meta_count(name: str, convention: str):  # type: ignore[no-untyped-def]
    with torch.device("meta"):
        model = create_model(name)
    return count_ops(model, torch.empty(1, 3, IMG, IMG, device="meta"), convention, batch_dim=0)


def test_spikingformer_8_768_dense_count_is_the_formula() -> None:
    f = flops_per_step()
    ssa = [ssa_sops(T, HEADS, 196, D // HEADS, 1.0, 1.0, 1.0)] * DEPTH       # T·h·N·d²·(1 + 1)
    form = formula_energy_mj(f["sps0"], [(v, 1.0) for k, v in f.items() if k != "sps0"], ssa, T)
    c = meta_count("spikingformer_8_768", "spikingformer")
    t = c.totals()
    assert t["ac"] + t["mac"] == form["ac"] + form["mac"] == 74_693_865_376
    # the strict rule charges the head (mean of the real-valued stream) as MACs; the closed form as ACs
    assert t["mac"] == form["mac"] + T * f["head"]
    assert t["ac"] == form["ac"] - T * f["head"]
    assert energy(c)["energy_mj"] == pytest.approx(form["energy_mj"] + (4.6 - 0.9) * 1e-9 * T * f["head"])
    assert {k for k, v in c.per_layer().items() if v.mac} == {"patch_embed.units.0.0", "head.0"}
    bmm = [v for k, v in c.per_layer().items() if ":bmm" in k]
    assert len(bmm) == 2 * DEPTH and sum(v.ac for v in bmm) == sum(ssa)
    assert audit_counter(c).spike_driven()


def test_spikformer_8_768_dense_count_per_convention() -> None:
    f = flops_per_step()
    total = T * sum(f.values()) + DEPTH * ssa_sops(T, HEADS, 196, D // HEADS, 1.0, 1.0, 1.0)
    loose = meta_count("spikformer_8_768", "spikformer").totals()
    assert loose["ac"] + loose["mac"] == total
    assert loose["mac"] == T * (f["sps0"] + f["head"])           # integer sums of spikes are ACs here
    strict = meta_count("spikformer_8_768", "spikingformer")
    s = strict.totals()
    sums = sum(f[f"{b}.{k}"] for b in range(DEPTH) for k in ("q", "k", "v", "fc1"))   # fed by residual sums
    assert s["mac"] == T * (f["sps0"] + f["head"] + sums) and s["ac"] + s["mac"] == total
    a = audit_counter(strict)
    assert len(a.nonspike_macs()) == 4 * DEPTH and not a.spike_driven()
    assert all("sums of spikes" in x.cause for x in a.nonspike_macs())


@pytest.mark.slow
def test_spikingformer_4_384_real_values_agree_with_the_meta_count() -> None:
    """CIFAR size with real values: the same dense count as on the meta device, and the same audit."""
    torch.manual_seed(0)
    model = create_model("spikingformer_4_384", T=2)
    real = count_ops(model, torch.rand(2, 3, 32, 32) * 4, "spikingformer", batch_dim=0)
    with torch.device("meta"):
        twin = create_model("spikingformer_4_384", T=2)
    meta = count_ops(twin, torch.empty(2, 3, 32, 32, device="meta"), "spikingformer", batch_dim=0)
    assert real.totals()["dense"] == meta.totals()["dense"] and real.totals()["ac"] < meta.totals()["ac"]
    a = audit_counter(real)
    assert a.spike_driven() and {f.layer for f in a.findings} == {"patch_embed.units.0.0", "head.0"}

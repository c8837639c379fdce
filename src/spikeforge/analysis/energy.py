"""Energy from operation counts: ``E = E_AC · ACs + E_MAC · MACs``.

Defaults are the 45 nm CMOS, 32-bit float figures of Horowitz (ISSCC 2014) that Spikformer, Spikingformer
and most SNN papers use: ``E_MAC = 4.6 pJ`` (3.7 pJ multiply + 0.9 pJ add) and ``E_AC = 0.9 pJ``.

The closed form most papers quote (Spikformer's appendix; methods.md §0.2) is also here, to check a
counter against it::

    E_SNN = E_MAC · FLOPs(layer 1) + E_AC · ( Σ_{l≥2} fr(l−1) · T · FLOPs(l) + Σ_m SOP_SSA(m) )
    SOP_SSA = T · heads · N · d_head² · (fr_q + min(fr_k, fr_v))          (N tokens, Kᵀ·V first)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["EnergyModel", "energy", "layer_energy", "sops", "ssa_sops", "formula_energy_mj"]


@dataclass(frozen=True)
class EnergyModel:
    """Energy per operation, in picojoules.

    Args:
        e_ac_pj: one accumulate (a spike reaching a synapse): 0.9 pJ (45 nm, FP32 add).
        e_mac_pj: one multiply-accumulate: 4.6 pJ (45 nm, FP32 multiply 3.7 + add 0.9).
    """

    e_ac_pj: float = 0.9
    e_mac_pj: float = 4.6

    def mj(self, ac: float, mac: float) -> float:
        """Millijoules for ``ac`` accumulates and ``mac`` multiply-accumulates (1 pJ = 1e-9 mJ)."""
        return (self.e_ac_pj * ac + self.e_mac_pj * mac) * 1e-9


def layer_energy(counter: Any, model: EnergyModel | None = None, per_sample: bool = True) -> dict[str, float]:
    """Energy (mJ) of each synaptic layer of an ``OpCounter``, per sample by default."""
    model = model or EnergyModel()
    n = max(counter.samples, 1) if per_sample else 1
    return {k: model.mj(v.ac, v.mac) / n for k, v in counter.per_layer().items()}


def energy(counter: Any, model: EnergyModel | None = None, per_sample: bool = True) -> dict[str, float]:
    """Totals of an ``OpCounter``: ``ac``, ``mac`` (operations), ``energy_mj`` and its ``ac_mj`` / ``mac_mj``
    parts, and ``ann_mj`` (the same network as an ANN: every dense multiplication a MAC)."""
    model = model or EnergyModel()
    t = counter.totals(per_sample)
    return {"ac": t["ac"], "mac": t["mac"], "ac_mj": model.mj(t["ac"], 0.0), "mac_mj": model.mj(0.0, t["mac"]),
            "energy_mj": model.mj(t["ac"], t["mac"]), "ann_mj": model.mj(0.0, t["dense"] + t["bias"]),
            "e_ac_pj": model.e_ac_pj, "e_mac_pj": model.e_mac_pj}


def sops(flops: float, fr_in: float, T: int) -> float:
    """``SOP(l) = fr(l−1) · T · FLOPs(l)``: synaptic operations of a layer with FLOPs per step and input rate."""
    return fr_in * T * flops


def ssa_sops(T: int, heads: int, tokens: int, head_dim: int, fr_q: float, fr_k: float, fr_v: float) -> float:
    """Spikingformer's SSA term ``T · heads · N · d² · (fr_q + min(fr_k, fr_v))`` (its ``flops_counter.py``:
    ``Kᵀ·V`` then ``Q·(Kᵀ V)``, ``N = patchSize²`` tokens)."""
    return T * heads * tokens * head_dim ** 2 * (fr_q + min(fr_k, fr_v))


def formula_energy_mj(first_flops: float, layers: Iterable[tuple[float, float]], ssa: Iterable[float], T: int,
                      model: EnergyModel | None = None, first_per_step: bool = True) -> dict[str, float]:
    """The §0.2 closed form.

    Args:
        first_flops: FLOPs of the encoding layer per step (charged as MACs).
        layers: ``(FLOPs per step, input firing rate)`` of every other synaptic layer (charged as ACs).
        ssa: SSA terms (``ssa_sops``).
        T: time steps.
        first_per_step: the encoding layer runs at every step (``T · FLOPs``, as the repeat-T input of
            Spikformer / Spikingformer and their syops counter); ``False`` charges it once.

    Returns:
        ``{"mac", "ac", "energy_mj"}``.
    """
    model = model or EnergyModel()
    mac = first_flops * (T if first_per_step else 1)
    ac = sum(sops(f, r, T) for f, r in layers) + sum(ssa)
    return {"mac": mac, "ac": ac, "energy_mj": model.mj(ac, mac)}

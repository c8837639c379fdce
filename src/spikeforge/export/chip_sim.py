"""The event-driven run of a mapped integer model (``chip.map_model``): ``simulate(mapping, x)``.

Per time step, layer by layer, integers only:

1. the spikes of the layer before (the host encoder's, for the first layer) are **events** ``(sample,
   neuron)``; each becomes one packet per core its routes reach (counted with the mesh hops it travels);
2. the events are routed to the layer's input lines, a line that receives several in one step seeing one;
3. each active input line adds its crossbar row to its neurons' accumulators (one synaptic operation per
   nonzero weight), then the bias;
4. the neurons update with the integer model's rule (``compress.IntegerLIF.step``) and keep their
   membrane in the core's saturating register; the readout layer's accumulators are the output.

Nothing is computed for an input line that receives no spike. The outputs and every layer's spikes equal the
integer model's bit for bit (tested), and so the fake-quantised training model's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import Tensor

from .chip import ChipConfig, LayerMap, Mapping

__all__ = ["LayerStats", "ChipRun", "simulate", "decision_steps", "summary"]


@dataclass
class LayerStats:
    """Event counts of one layer over a run (all samples and steps).

    Attributes:
        input_events: spikes arriving from the layer before (events, before routing).
        packets: packets sent to this layer's cores (one per event and destination core).
        hops: tile-to-tile hops those packets travelled.
        route_pj: energy of those packets (within-tile delivery or hops).
        line_events: input lines that received a spike (after the OR of routing).
        synops: synaptic operations (nonzero weights read by an active input line).
        spikes: spikes the layer's neurons emitted (0 for the readout).
        updates_active: neuron updates with input, a bias or a membrane away from rest.
        updates_inactive: the other neuron updates.
    """

    input_events: int = 0
    packets: int = 0
    hops: int = 0
    route_pj: float = 0.0
    line_events: int = 0
    synops: int = 0
    spikes: int = 0
    updates_active: int = 0
    updates_inactive: int = 0

    def add(self, other: LayerStats) -> None:
        """Accumulate ``other`` into this one."""
        for k in self.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def energy_pj(self, cfg: ChipConfig) -> dict[str, float]:
        """Energy by kind in picojoules, from ``cfg.energy``."""
        e = cfg.energy
        return {"synops": self.synops * e.synop, "neurons": self.updates_active * e.neuron_active
                + self.updates_inactive * e.neuron_inactive, "routing": self.route_pj}


@dataclass
class ChipRun:
    """What ``simulate`` returns.

    Attributes:
        outputs: ``int32 [T, B, ...]``: the readout's currents, the integer model's output.
        spikes: per neuron layer name, ``int8 [T, B, ...]`` (when recorded).
        stats: per synaptic layer name, its ``LayerStats``.
        decision: ``[B]``: each sample's decision step (``decision_steps``).
    """

    outputs: Tensor
    spikes: dict[str, Tensor]
    stats: dict[str, LayerStats]
    decision: Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))


def decision_steps(outputs: Tensor) -> Tensor:
    """``[T, B, K] → [B]``: the first step (1-based) after which the argmax of the cumulative output no longer
    changes (``1``: decided at the first step)."""
    pred = outputs.to(torch.int64).cumsum(0).argmax(-1)            # [T, B]
    changed = pred != pred[-1:]
    idx = torch.arange(pred.shape[0]).unsqueeze(1).expand_as(pred)
    return cast(Tensor, torch.where(changed, idx, torch.full_like(idx, -1)).amax(0) + 2)


@dataclass
class _Plan:
    """What one layer needs per step, precomputed once per mapping from its ``LayerMap``."""

    route_ptr: Tensor       # CSR of the routes: source j's lines are route_idx[route_ptr[j]:route_ptr[j+1]]
    route_idx: Tensor
    syn_ptr: Tensor         # CSR of the crossbar rows: line a's synapses are syn_col/syn_val[syn_ptr[a]:...]
    syn_col: Tensor
    syn_val: Tensor         # int32
    packets: Tensor         # [sources]: destination cores per source spike
    hops: Tensor            # [sources]: mesh hops per source spike
    pj: Tensor              # [sources]: routing energy per source spike (float64)
    placed: Tensor          # [neurons] bool


def _csr(mask: Tensor) -> tuple[Tensor, Tensor]:
    """``[rows, cols]`` bool → (row pointers, column indices)."""
    ptr = torch.zeros(mask.shape[0] + 1, dtype=torch.long)
    ptr[1:] = mask.sum(1).cumsum(0)
    return ptr, torch.nonzero(mask)[:, 1]


def _mesh(cfg: ChipConfig, core: Tensor) -> tuple[Tensor, Tensor]:
    tile = torch.div(core, cfg.cores_per_tile, rounding_mode="floor")
    return tile % cfg.mesh_width, torch.div(tile, cfg.mesh_width, rounding_mode="floor")


def _plan(cfg: ChipConfig, m: LayerMap, src_core: Tensor | None) -> _Plan:
    route_ptr, route_idx = _csr(m.route)
    nz = m.weight != 0
    syn_ptr, syn_col = _csr(nz)
    syn_val = m.weight[nz]
    cores = torch.unique(m.core_of[m.kept])
    onehot = (m.core_of.unsqueeze(1) == cores.unsqueeze(0)).to(torch.float32)  # [neurons, layer cores]
    line_cores = torch.cat([(nz[i:i + 4096].to(torch.float32) @ onehot) > 0
                            for i in range(0, nz.shape[0], 4096)])            # [lines, layer cores]
    dest = (m.route.to(torch.float32) @ line_cores.to(torch.float32)) > 0     # [sources, layer cores]
    n_src = m.route.shape[0]
    sx, sy = (torch.zeros(n_src, dtype=torch.long),) * 2 if src_core is None else _mesh(cfg, src_core.clamp(min=0))
    dx, dy = _mesh(cfg, cores)
    hx = (sx.unsqueeze(1) - dx.unsqueeze(0)).abs()
    hy = (sy.unsqueeze(1) - dy.unsqueeze(0)).abs()
    e = cfg.energy
    cost = torch.where((hx + hy) == 0, torch.tensor(e.spike_in_tile, dtype=torch.float64),
                       hx.to(torch.float64) * e.hop_ew + hy.to(torch.float64) * e.hop_ns)
    placed = torch.zeros(m.weight.shape[1], dtype=torch.bool)
    placed[m.kept] = True
    return _Plan(route_ptr, route_idx, syn_ptr, syn_col, syn_val, dest.sum(1), ((hx + hy) * dest).sum(1),
                 (cost * dest.to(torch.float64)).sum(1), placed)


def _ranges(ptr: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
    """For CSR ``ptr`` and selected ``rows``: (which selected row, position in the CSR arrays) of every entry."""
    cnt = ptr[rows + 1] - ptr[rows]
    rep = torch.repeat_interleave(torch.arange(len(rows)), cnt)
    first = torch.repeat_interleave(cnt.cumsum(0) - cnt, cnt)
    return rep, torch.arange(int(cnt.sum())) - first + ptr[rows][rep]


def _lines(p: _Plan, b: Tensor, j: Tensor, n_lines: int) -> tuple[Tensor, Tensor]:
    """Route events ``(b, j)`` to input lines; several events on one line in a step count once."""
    rep, pos = _ranges(p.route_ptr, j)
    key = torch.unique(b[rep] * n_lines + p.route_idx[pos])
    return torch.div(key, n_lines, rounding_mode="floor"), key % n_lines


def _accumulate(p: _Plan, b: Tensor, a: Tensor, B: int, n: int) -> tuple[Tensor, Tensor, int]:
    """Each active line ``(b, a)`` adds its synapses into its neurons: (currents ``[B, n]`` int32, which
    neurons got a synaptic event, the synaptic operations)."""
    rep, pos = _ranges(p.syn_ptr, a)
    flat = b[rep] * n + p.syn_col[pos]
    cur = torch.zeros(B * n, dtype=torch.int32).index_add_(0, flat, p.syn_val[pos])
    got = torch.zeros(B * n, dtype=torch.bool)
    got[flat] = True
    return cur.view(B, n), got.view(B, n), len(pos)


def simulate(mapping: Mapping, x: Tensor, record: bool = False) -> ChipRun:
    """Run ``x`` (the model's input, ``[B, ...]`` or ``[T, B, ...]``) through the mapped model, event by event.

    Args:
        mapping: from ``map_model``.
        x: the input batch; the encoder runs on the host.
        record: keep every neuron layer's spikes in ``ChipRun.spikes``.

    Returns:
        ``ChipRun``: the output currents ``[T, B, K]``, the per-layer event counts, each sample's decision step.
    """
    cfg = mapping.config
    src = mapping.host(x)                                        # int8 [T, B, *src_shape]
    T, B = src.shape[:2]
    plans = mapping.cache.get("plans")
    if plans is None:                                            # once per mapping
        plans, prev_core = [], None
        for m in mapping.layers:
            plans.append(_plan(cfg, m, prev_core))
            prev_core = m.core_of
        mapping.cache["plans"] = plans
    stats = {m.name: LayerStats() for m in mapping.layers}
    volts: list[Tensor | None] = []
    for m in mapping.layers:
        if m.lif is None:
            volts.append(None)
        else:
            rest = 0 if m.lif.v_reset is None else m.lif.v_reset
            volts.append(torch.full((B, *m.out_shape), rest, dtype=torch.int16))
    outs: list[Tensor] = []
    rec: dict[str, list[Tensor]] = {m.neuron: [] for m in mapping.layers if m.neuron is not None}
    for t in range(T):
        s = src[t].reshape(B, -1)
        for li, (m, p) in enumerate(zip(mapping.layers, plans, strict=True)):
            st = stats[m.name]
            b, j = torch.nonzero(s, as_tuple=True)
            st.input_events += len(j)
            st.packets += int(p.packets[j].sum())
            st.hops += int(p.hops[j].sum())
            st.route_pj += float(p.pj[j].sum())
            bl, al = _lines(p, b, j, m.weight.shape[0])
            st.line_events += len(al)
            cur, had_input, synops = _accumulate(p, bl, al, B, m.weight.shape[1])
            st.synops += synops
            cur += m.bias
            n_placed = int(p.placed.sum()) * B
            if m.lif is None:
                st.updates_active += int((had_input | (m.bias != 0))[:, p.placed].sum())
                st.updates_inactive += n_placed - int((had_input | (m.bias != 0))[:, p.placed].sum())
                outs.append(cur.view(B, *m.out_shape))
                break
            v = cast(Tensor, volts[li])
            rest = 0 if m.lif.v_reset is None else m.lif.v_reset
            active = (had_input | (m.bias != 0) | (v.reshape(B, -1) != rest))[:, p.placed]
            st.updates_active += int(active.sum())
            st.updates_inactive += n_placed - int(active.sum())
            spikes, v32 = m.lif.step(cur.view(B, *m.out_shape), v.to(torch.int32))
            volts[li] = v32.to(torch.int16)                      # clamped within the register: exact
            st.spikes += int(spikes.sum())
            if record:
                rec[cast(str, m.neuron)].append(spikes)
            s = spikes.reshape(B, -1)
    outputs = torch.stack(outs)
    recorded = {k: torch.stack(v) for k, v in rec.items()} if record else {}
    return ChipRun(outputs, recorded, stats, decision_steps(outputs))


def summary(mapping: Mapping, stats: dict[str, LayerStats], samples: int) -> dict[str, Any]:
    """Per layer and in total, per sample: events, synops, packets, hops, spikes, neuron updates, energy (nJ)."""
    cfg = mapping.config
    rows: list[dict[str, Any]] = []
    total = LayerStats()
    for m in mapping.layers:
        st = stats[m.name]
        total.add(st)
        rows.append(_row(m.name, st, cfg, samples) | {"cores": m.cores, "crossbars": m.tiling.crossbars})
    out = _row("total", total, cfg, samples) | {"cores": mapping.cores, "crossbars": mapping.crossbars}
    return {"layers": rows, "total": out, "energy_source": cfg.energy.source}


def _row(name: str, st: LayerStats, cfg: ChipConfig, samples: int) -> dict[str, Any]:
    n = max(1, samples)
    e = st.energy_pj(cfg)
    return {"layer": name, "synops": st.synops / n, "input_events": st.input_events / n, "packets": st.packets / n,
            "hops": st.hops / n, "spikes": st.spikes / n, "updates_active": st.updates_active / n,
            "updates_inactive": st.updates_inactive / n, "energy_nJ": sum(e.values()) / n / 1e3,
            "energy_by_kind_nJ": {k: v / n / 1e3 for k, v in e.items()}}

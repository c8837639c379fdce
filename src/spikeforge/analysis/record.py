"""Recording spikes (and membrane potentials) of chosen modules through forward hooks.

    with record(model, layers=["blocks.*.attn_sn"], full=True, membrane=True) as rec:
        model(x_seq)                                  # x_seq [T, B, ...]
    rec.rates()            # {layer: spikes per neuron per step}
    rec.rates_per_step()   # {layer: [T] tensor}
    rec.spikes("blocks.0.0.branch.attn_sn")      # [T, B_total, ...] (with full=True)

Nothing in the model changes: hooks are removed on exit. By default only summaries are kept (sums per
time step, nonzero counts: a few numbers per layer, whatever the number of batches); ``full=True`` also
keeps the tensors, compactly (``uint8`` when every value is an integer in [0, 255]), up to ``max_bytes``,
after which recording of tensors stops with a warning (summaries go on).

``membrane=True`` records the membrane potential ``V[t]`` of scan neurons (``SpikingNeuron``): the state
after the reset of each step, ``V[t] = H[t](1 − S[t]) + V_reset·S[t]`` (hard) or ``H[t] − V_th·S[t]``
(soft). It is recomputed from the neuron's input with its own step function (the torch reference the
fused kernels are checked against), so it costs one more pass of that neuron.
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["record", "SpikeRecorder", "LayerRecord", "membrane_trace"]


@dataclass
class LayerRecord:
    """Summary statistics of one layer's output ``[T, B, ...]`` over every recorded call.

    Attributes:
        name: module name.
        neurons: outputs per sample and step (``numel / (T·B)``).
        samples: samples seen (sum of ``B``).
        step_sum, step_count, step_nonzero: per time step, the sum of outputs, the number of outputs and
            the number of nonzero outputs (float64 ``[T]``).
    """

    name: str
    neurons: int = 0
    samples: int = 0
    step_sum: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.float64))
    step_count: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.float64))
    step_nonzero: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.float64))
    spikes: list[Tensor] = field(default_factory=list, repr=False)
    membrane: list[Tensor] = field(default_factory=list, repr=False)

    def add(self, out: Tensor) -> None:
        o = out.detach()
        T, B = o.shape[0], o.shape[1]
        flat = o.reshape(T, -1)
        s = flat.sum(1, dtype=torch.float64).cpu()
        nz = (flat != 0).sum(1).double().cpu()
        n = torch.full((T,), float(flat.shape[1]), dtype=torch.float64)
        if T > self.step_sum.numel():
            pad = T - self.step_sum.numel()
            self.step_sum, self.step_count, self.step_nonzero = (
                torch.cat([v, torch.zeros(pad, dtype=torch.float64)])
                for v in (self.step_sum, self.step_count, self.step_nonzero))
        self.step_sum[:T] += s
        self.step_count[:T] += n
        self.step_nonzero[:T] += nz
        self.neurons = flat.shape[1] // max(B, 1)
        self.samples += B

    @property
    def rate(self) -> float:
        """Mean output per neuron per step (the firing rate for spikes)."""
        return float(self.step_sum.sum() / self.step_count.sum()) if self.step_count.sum() > 0 else 0.0

    @property
    def rate_per_step(self) -> Tensor:
        return self.step_sum / self.step_count.clamp_min(1)

    @property
    def sparsity(self) -> float:
        """Fraction of outputs that are zero."""
        c = float(self.step_count.sum())
        return 1.0 - float(self.step_nonzero.sum()) / c if c else 1.0


def membrane_trace(neuron: nn.Module, x_seq: Tensor) -> Tensor:
    """``V[t]`` after each step of a scan neuron on ``x_seq [T, B, ...]`` from rest: ``[T, B, ...]``."""
    from ..neurons import SpikingNeuron
    from ..neurons.scan import scan
    if not isinstance(neuron, SpikingNeuron):
        raise TypeError(f"membrane recording needs a scan neuron (SpikingNeuron), got {type(neuron).__name__}; "
                        "parallel neurons (PSN) have no membrane state")
    vs: list[Tensor] = []
    step_fn = type(neuron).step_fn

    def step(x: Tensor, state: Any, p: Any) -> tuple[Tensor, Any]:
        s, st = step_fn(x, state, p)
        vs.append(st[0].detach())
        return s, st

    with torch.no_grad():
        scan(step, x_seq.detach(), neuron.init_state(x_seq[0]), neuron.params(), backend="torch")
    return torch.stack(vs)


def _compact(t: Tensor) -> Tensor:
    t = t.detach()
    if t.numel() and bool(((t >= 0) & (t <= 255) & (t == t.round())).all()):
        return t.to(torch.uint8).cpu()
    return t.float().cpu()


class SpikeRecorder:
    """Context manager recording the outputs of chosen modules (see the module docstring).

    Args:
        model: the network.
        layers: module names or glob patterns (``"blocks.*.attn_sn"``); ``None``: every spiking neuron.
        full: keep the output tensors (else only summaries).
        membrane: also keep membrane potentials of the chosen scan neurons (implies keeping tensors).
        max_bytes: cap on the bytes of kept tensors.
    """

    def __init__(self, model: nn.Module, layers: Sequence[str] | None = None, full: bool = False,
                 membrane: bool = False, max_bytes: int = 256 * 2**20) -> None:
        from ..layers import is_neuron
        named = dict(model.named_modules())
        if layers is None:
            chosen = [n for n, m in named.items() if is_neuron(m)]
        else:
            chosen = []
            for pat in layers:
                hits = [n for n in named if n == pat or fnmatch.fnmatchcase(n, pat)]
                if not hits:
                    raise ValueError(f"record: no module named {pat!r}; modules: {[n for n in named if n][:40]}")
                chosen += [h for h in hits if h not in chosen]
        self.model, self.full, self.membrane_on, self.max_bytes = model, full or membrane, membrane, int(max_bytes)
        self.modules = {n: named[n] for n in chosen}
        self.records = {n: LayerRecord(n) for n in chosen}
        self.bytes, self.truncated = 0, False
        self._handles: list[Any] = []

    def __enter__(self) -> SpikeRecorder:
        for name, m in self.modules.items():
            self._handles.append(m.register_forward_hook(self._hook(name)))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _keep(self, bucket: list[Tensor], t: Tensor) -> None:
        c = _compact(t)
        size = c.numel() * c.element_size()
        if self.bytes + size > self.max_bytes:
            if not self.truncated:
                warnings.warn(f"record: max_bytes={self.max_bytes} reached; later tensors are not kept "
                              "(summaries continue). Raise max_bytes or record fewer layers.", stacklevel=3)
            self.truncated = True
            return
        self.bytes += size
        bucket.append(c)

    def _hook(self, name: str) -> Any:
        def hook(mod: nn.Module, args: Any, out: Any) -> None:
            o = out[0] if isinstance(out, tuple) else out
            if not isinstance(o, Tensor) or o.dim() < 2:
                return
            rec = self.records[name]
            with torch.no_grad():
                rec.add(o)
                if self.full and not self.truncated:
                    self._keep(rec.spikes, o)
                if self.membrane_on and not self.truncated and isinstance(args[0], Tensor):
                    self._keep(rec.membrane, membrane_trace(mod, args[0]))
        return hook

    # -- results -------------------------------------------------------------------------------------
    def rates(self) -> dict[str, float]:
        """Mean output per neuron per step of every recorded layer (its firing rate)."""
        return {n: r.rate for n, r in self.records.items() if r.samples}

    def rates_per_step(self) -> dict[str, Tensor]:
        """Firing rate per time step, ``{layer: [T]}``."""
        return {n: r.rate_per_step for n, r in self.records.items() if r.samples}

    def sparsity(self) -> dict[str, float]:
        """Fraction of zero outputs per layer."""
        return {n: r.sparsity for n, r in self.records.items() if r.samples}

    def _cat(self, name: str, what: str) -> Tensor:
        if name not in self.records:
            raise KeyError(f"record: layer {name!r} was not recorded; recorded: {list(self.records)}")
        kept = getattr(self.records[name], what)
        if not kept:
            flag = "membrane=True" if what == "membrane" else "full=True"
            raise ValueError(f"record: no {what} tensors kept for {name!r}; record with {flag}")
        return torch.cat(kept, dim=1)

    def spikes(self, name: str) -> Tensor:
        """Every recorded output of ``name``, concatenated along the batch: ``[T, B_total, ...]``."""
        return self._cat(name, "spikes")

    def membrane(self, name: str) -> Tensor:
        """Every recorded membrane trace of ``name``: ``[T, B_total, ...]``."""
        return self._cat(name, "membrane")

    def summary(self) -> list[dict[str, Any]]:
        """One row per layer: ``layer``, ``neurons``, ``samples``, ``rate``, ``sparsity``, ``rate_per_step``."""
        return [{"layer": n, "neurons": r.neurons, "samples": r.samples, "rate": r.rate, "sparsity": r.sparsity,
                 "rate_per_step": [round(float(v), 6) for v in r.rate_per_step]}
                for n, r in self.records.items() if r.samples]


def record(model: nn.Module, layers: Sequence[str] | None = None, full: bool = False, membrane: bool = False,
           max_bytes: int = 256 * 2**20) -> SpikeRecorder:
    """A ``SpikeRecorder`` (use as ``with record(model) as rec: ...``)."""
    return SpikeRecorder(model, layers, full, membrane, max_bytes)

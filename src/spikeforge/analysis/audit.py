"""The spike-driven audit: is every multiplication of the model fit for spike-only neuromorphic hardware?

Every multiplication the model executes (aten level, one forward pass) falls in one category:

==============  ============================================================================================
``ac``          a multiplication with a binary operand (every value 0 or 1): a synapse reached by spikes
                costs an accumulate, a spike-gated product (SEW AND) a selection
``mac``         **a non-spike MAC**: neither operand binary. In a synaptic layer (conv / linear / matmul)
                this is what a spike-only chip cannot run: the finding names the layer, the count and the
                cause (e.g. a residual sum of spikes, integers 0..k, feeding a conv)
``foldable``    a BatchNorm after a conv/linear (folds into its weights), a constant scale or an average
                before a neuron or a synapse (folds into the threshold or the weights)
``neuron``      inside a spiking neuron (leak, reset): the neuron's own arithmetic
==============  ============================================================================================

The binary test is Spikingformer's strict rule (Zhou et al., arXiv 2304.11954), whatever the counting
convention. Values are inspected on the data given, so a residual sum that happens to stay in {0, 1} on
that batch passes; give a batch the trained model actually sees. A model that does not fire on it (an
untrained one, often) passes trivially, since all-zero operands are binary: check its firing rates too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .counting import OpCounter

__all__ = ["Audit", "Finding", "audit", "audit_counter", "CATEGORIES"]

CATEGORIES = ("ac", "mac", "foldable", "neuron")
"""The audit's categories of a multiplication (see the module docstring): ``ac`` (a binary operand),
``mac`` (neither operand binary: real values or integer spike counts), ``foldable`` (folds into weights or
a threshold at inference), ``neuron`` (a neuron's own arithmetic)."""


@dataclass
class Finding:
    """Non-spike multiplications of one layer, per sample."""

    layer: str
    module_type: str
    op: str
    role: str
    count: float
    cause: str
    tags: list[str] = field(default_factory=list)

    @property
    def synaptic(self) -> bool:
        return self.role == "synaptic"


@dataclass
class Audit:
    """Result of ``audit``: multiplications per category and the non-spike MAC findings, per sample."""

    categories: dict[str, float]
    findings: list[Finding]
    samples: int
    silent: list[str] | None = None    # spiking layers that never fired on the inputs (None: not recorded)
    spiking_layers: int | None = None  # how many spiking layers were recorded

    @property
    def fired(self) -> bool | None:
        """Whether any spiking layer fired on the inputs (``None`` when not recorded). An audit of a model that
        never fires passes trivially, since all-zero operands are binary."""
        if self.silent is None or self.spiking_layers is None:
            return None
        return len(self.silent) < self.spiking_layers

    def nonspike_macs(self, exclude: Iterable[str] = ("encoder", "head"), synaptic: bool = True) -> list[Finding]:
        """Findings in synaptic layers (``synaptic=True``), leaving out those tagged in ``exclude``
        (``"encoder"``: multiplies the model input; ``"head"``: produces the model output)."""
        ex = set(exclude)
        return [f for f in self.findings if (f.synaptic or not synaptic) and not ex & set(f.tags)]

    def nonspike_mac_count(self, exclude: Iterable[str] = ("encoder", "head")) -> float:
        return sum(f.count for f in self.nonspike_macs(exclude))

    def spike_driven(self) -> bool:
        """No non-spike synaptic MAC outside the encoding layer and the classifier head."""
        return not self.nonspike_macs()

    def to_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "categories": dict(self.categories),
                "nonspike_synaptic_macs_excl_encoder_head": self.nonspike_mac_count(),
                "spike_driven": self.spike_driven(), "fired": self.fired, "silent_layers": self.silent,
                "findings": [{"layer": f.layer, "module_type": f.module_type, "op": f.op, "role": f.role,
                              "count": f.count, "cause": f.cause, "tags": f.tags} for f in self.findings]}

    def table(self, width: int = 120) -> str:
        """The findings as a text table (layer, count, cause), then the totals per category."""
        rows = [f"{'layer':34s} {'op':12s} {'MACs/sample':>13s}  cause"]
        for f in self.findings:
            tag = f" [{', '.join(f.tags)}]" if f.tags else ""
            rows.append((f"{f.layer[:34]:34s} {f.op[:12]:12s} {f.count:13.4g}  {f.cause}{tag}")[:width])
        if not self.findings:
            rows.append("(none: every multiplication has a binary operand, folds away or is neuron-internal)")
        total = sum(self.categories.values()) or 1.0
        rows.append("multiplications per sample: " + ", ".join(
            f"{k} {v:.4g} ({100 * v / total:.1f}%)" for k, v in self.categories.items()))
        verdict = "yes" if self.spike_driven() else f"no ({self.nonspike_mac_count():.4g} non-spike synaptic MACs)"
        if self.fired is False:
            verdict = "cannot tell: no spiking layer fired on these inputs (every spike operand was 0)"
        elif self.silent:
            verdict += f" ({len(self.silent)} of {self.spiking_layers} spiking layers never fired on these inputs)"
        rows.append(f"spike-driven outside the encoder and the head: {verdict}")
        return "\n".join(rows)


def audit_counter(counter: OpCounter, rates: dict[str, float] | None = None) -> Audit:
    """The audit of what an ``OpCounter`` saw (any convention: the audit always uses the strict rule);
    ``rates`` (spiking layer → firing rate, from a recorder on the same pass) lets it tell a silent model."""
    n = max(counter.samples, 1)
    cats = {c: 0.0 for c in CATEGORIES}
    findings = []
    for layer in counter.layers.values():
        for c, v in layer.audit.items():
            cats[c] = cats.get(c, 0.0) + v / n
        if layer.audit.get("mac", 0.0) > 0:
            findings.append(Finding(layer.name, layer.module_type, layer.op, layer.role, layer.audit["mac"] / n,
                                    "; ".join(layer.causes), sorted(layer.tags)))
    result = Audit(cats, findings, counter.samples)
    if rates is not None:
        result.silent = [name for name, r in rates.items() if r == 0]
        result.spiking_layers = len(rates)
    return result


def audit(model: nn.Module, inputs: Tensor | Iterable[Tensor], batch_dim: int = 1) -> Audit:
    """Run ``model`` on ``inputs`` (a batch ``[T, B, ...]`` or an iterable of batches) under ``torch.no_grad``
    and sort every multiplication it executes. Neurons run the torch reference loop meanwhile."""
    from .record import record

    batches = [inputs] if isinstance(inputs, Tensor) else inputs
    with torch.no_grad(), OpCounter(model, "spikingformer", batch_dim) as c, record(model) as rec:
        for x in batches:
            model(x)
    return audit_counter(c, rec.rates())

"""Analysis: recording spikes, firing rates, operation counts and energy, the spike-driven audit, plots.

* ``record(model, layers=None, full=False, membrane=False)``: hooks that record chosen modules' outputs;
  per-layer and per-step firing rates and sparsity, full tensors (and membrane potentials) on request.
* ``OpCounter(model, convention=...)`` / ``count_ops``: every conv / linear / matmul / attention product the
  model executes, counted at the aten level as ACs (a spike operand) or MACs, under the
  ``"spikingformer"`` (strict {0, 1}), ``"spikformer"`` (integer spike counts are spikes) or
  ``"neurobench"`` (effective nonzero products) convention.
* ``EnergyModel`` / ``energy``: ``E = E_AC·ACs + E_MAC·MACs`` (0.9 / 4.6 pJ, 45 nm, Horowitz 2014).
* ``audit``: every multiplication sorted into AC, non-spike MAC, foldable and neuron-internal; the
  non-spike MACs listed by layer, count and cause.
* ``analyze``: all of the above on some batches in one pass; ``format_report`` / ``side_by_side`` /
  ``write_plots`` present it. (The ``spikeforge report`` workflow — rebuild a checkpoint, evaluate, write
  ``report.json`` — is ``spikeforge.app.run_report``: analysis never knows how a model was trained.)
"""

from .audit import CATEGORIES, Audit, Finding, audit, audit_counter
from .counting import OpCounter, count_ops
from .energy import EnergyModel, energy, formula_energy_mj, layer_energy, sops, ssa_sops
from .layer_ops import LayerOps
from .operands import CONVENTIONS, Convention, Values, get_convention, inspect_values
from .perf import param_bytes, peak_memory_bytes, time_forward
from .record import LayerRecord, SpikeRecorder, membrane_trace, record
from .report import analyze, format_report, side_by_side, write_plots

__all__ = [
    "record", "SpikeRecorder", "LayerRecord", "membrane_trace",
    "OpCounter", "count_ops", "LayerOps", "Convention", "CONVENTIONS", "get_convention", "Values", "inspect_values",
    "EnergyModel", "energy", "layer_energy", "sops", "ssa_sops", "formula_energy_mj",
    "audit", "audit_counter", "Audit", "Finding", "CATEGORIES",
    "analyze", "format_report", "side_by_side", "write_plots",
    "peak_memory_bytes", "time_forward", "param_bytes",
]

"""Learning methods beyond BPTT, each a train-step strategy registered in ``METHODS`` (``--method``).

* ``dsr`` — differentiation on spike representation (``dsr.py``);
* ``tandem``, ``spike-count`` — spike-count backward through an ANN with shared weights (``tandem.py``,
  ``spike_count.py``);
* ``ttfs`` — exact spike times of current-based LIF layers, time to first spike or a few spikes per neuron
  (``ttfs.py``: the layer; ``ttfs_method.py``: the method);
* ``ann``, ``qcfs`` — the ANN twins that ``spikeforge convert`` turns into SNNs (``conversion.py``);
* ``online`` — SLTT: one step forward and backward at a time, state detached between steps, memory
  independent of ``T`` (``online.py``).

They share one neuron (``neurons.RateNeuron``: soft reset, spike at ``α·V_th``), one compatibility check
and one neuron swap (``base.py``), and one plan for folding thresholds into the next weights
(``graph.py``)::

    from spikeforge.learning import METHODS
    from spikeforge.models import create_model
    from spikeforge.training import fit
    model = create_model("spiking_mlp_tiny", hidden=256)
    fit(model, data, T=8, method=METHODS["dsr"](alpha=0.5))     # the model's neurons become DSR neurons
"""

from ..training import METHODS
from .base import MAX_POOLS, rate_compatible, replace_neurons
from .conversion import (
    ANN,
    NORMS,
    QCFS,
    QCFSActivation,
    ReLUTwin,
    TwinActivation,
    convert,
    layer_errors,
    sew_groups,
    threshold_statistics,
    twin_activations,
)
from .dsr import DSR, DSRRule, weighted_rate
from .graph import SCALE_TRANSPARENT, SYNAPTIC, FoldPlan, spike_consumers
from .neurons import RateNeuron, RateParams, RateState, ScaleByThreshold, fold_thresholds, rate_neurons, rate_step
from .online import Online, Stepwise, online_compatible
from .spike_count import SpikeCount, SpikingReadout, rate_penalty
from .tandem import CountRule, Tandem, count_activation, count_neuron, if_count, to_count_neurons
from .ttfs import CubaParams, ExactLIF, check_spike_times, exact_spike_times, lambertw
from .ttfs_method import TTFS, FirstSpikeReadout, SpikeTimesInput, exact_compatible, to_exact_time, ttfs_loss

__all__ = ["METHODS", "DSR", "DSRRule", "weighted_rate", "RateNeuron", "RateParams", "RateState", "rate_step",
           "ScaleByThreshold", "fold_thresholds", "rate_neurons", "FoldPlan", "spike_consumers", "SYNAPTIC",
           "SCALE_TRANSPARENT", "rate_compatible", "replace_neurons", "MAX_POOLS",
           "Tandem", "CountRule", "count_activation", "count_neuron", "if_count", "to_count_neurons",
           "SpikeCount", "SpikingReadout", "rate_penalty",
           "ANN", "QCFS", "QCFSActivation", "ReLUTwin", "TwinActivation", "NORMS", "convert", "layer_errors",
           "sew_groups", "threshold_statistics", "twin_activations",
           "TTFS", "ExactLIF", "CubaParams", "exact_spike_times", "lambertw", "check_spike_times", "SpikeTimesInput",
           "FirstSpikeReadout", "ttfs_loss", "to_exact_time", "exact_compatible",
           "Online", "Stepwise", "online_compatible"]

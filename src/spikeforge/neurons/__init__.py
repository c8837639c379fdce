"""Spiking neurons: pure step functions and thin modules around them (see ``base.py``).

Scan neurons (one loop over T, fused kernels): ``IF``, ``LIF``, ``PLIF``, ``ALIF``, ``CUBALIF``,
``Izhikevich``, ``MultiSpike``. Parallel neurons (no reset, one GEMM): ``PSN``, ``MaskedPSN``,
``SlidingPSN``. The non-spiking leaky-integrator readout ``LI`` runs on the same scan.
"""

from .alif import ALIF, ALIFParams, ALIFState, alif_step
from .base import GradientRule, SpikingNeuron, call_rule, set_memory
from .cuba import CUBALIF, CUBALIFParams, CUBALIFState, cubalif_step
from .dynamics import SpikeParams, StateQuantizer, euler_leak, fire, quantize, reset
from .if_ import IF, IFParams, IFState, if_step
from .izhikevich import Izhikevich, IzhikevichParams, IzhikevichState, izhikevich_step
from .li import LI, LIParams, LIState, li_step
from .lif import LIF, LIFParams, LIFState, lif_step
from .multispike import MultiSpike, MultiSpikeParams, MultiSpikeState, multispike_step
from .plif import PLIF, PLIFParams, PLIFState, plif_step
from .psn import PSN, MaskedPSN, PSNWindow, SlidingPSN
from .registry import NEURONS, create_neuron, list_neurons, register_neuron
from .scan import available_backends, scan

__all__ = [
    "SpikingNeuron", "GradientRule", "call_rule", "set_memory", "SpikeParams", "StateQuantizer",
    "IF", "LIF", "PLIF", "ALIF", "CUBALIF", "Izhikevich", "MultiSpike", "PSN", "MaskedPSN", "SlidingPSN",
    "IFParams", "LIFParams", "PLIFParams", "ALIFParams", "CUBALIFParams", "IzhikevichParams",
    "MultiSpikeParams", "IFState", "LIFState", "PLIFState", "ALIFState", "CUBALIFState", "IzhikevichState",
    "MultiSpikeState", "PSNWindow",
    "if_step", "lif_step", "plif_step", "alif_step", "cubalif_step", "izhikevich_step", "multispike_step",
    "euler_leak", "fire", "reset", "quantize",
    "LI", "LIParams", "LIState", "li_step",
    "scan", "available_backends",
    "NEURONS", "create_neuron", "list_neurons", "register_neuron",
]

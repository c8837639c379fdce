"""Layers for time-first spiking networks.

* ``TimeFold`` runs stateless modules (conv, linear, pooling, flatten, BN) once on ``[T·B, ...]``;
  ``ToSequence`` repeats a static input over ``T`` steps.
* ``SeqDropout`` / ``SeqDropout2d``: one dropout mask shared by all steps.
* Norms: ``TDBatchNorm`` (tdBN), ``BNTT``, ``NeuNorm``, ``L1BatchNorm``.
* Attention: ``spiking_attention``, ``SpikingSelfAttention`` (SSA), ``SpikingMLP``, ``SPS``.
* Residuals: ``SEWResidual`` (ADD / AND / IAND), ``SpikingResidual``, ``Residual``, ``SpikeDrivenResidual``.
* ``make_neuron`` / ``default_neuron``: one fresh neuron per layer from a ``neuron=`` spec.
* ``fold_bn`` / ``fold_bn_pairs``: a batch norm folded exactly into the conv or linear layer before it.
* ``bn_neuron(fold, neuron, x, pool=None)``: a fold's trailing batch norm computed inside the next neuron's
  kernel (and a max pool after it handing its input gradient's buffer to the neuron);
  ``SpikingSequential`` runs each such pair (and pool) of an ``nn.Sequential`` that way.
"""

from .attention import SPS, SpikingMLP, SpikingSelfAttention, spiking_attention
from .bn_fold import FOLDABLE, bn_affine, fold_bn, fold_bn_pairs
from .dropout import SeqDropout, SeqDropout2d
from .fold import TimeFold, ToSequence, time_fold
from .fused_bn import SpikingSequential, bn_neuron
from .neuron_spec import NEURON_TYPES, NeuronSpec, default_neuron, is_neuron, make_neuron, set_threshold
from .norm import BNTT, L1BatchNorm, NeuNorm, TDBatchNorm
from .residual import (
    SEW_FUNCTIONS,
    Residual,
    SEWResidual,
    SpikeDrivenResidual,
    SpikingResidual,
    sew_function,
    starts_with_neuron,
)

__all__ = [
    "TimeFold", "time_fold", "ToSequence", "SeqDropout", "SeqDropout2d",
    "TDBatchNorm", "BNTT", "NeuNorm", "L1BatchNorm",
    "spiking_attention", "SpikingSelfAttention", "SpikingMLP", "SPS",
    "SEW_FUNCTIONS", "sew_function", "SEWResidual", "SpikingResidual", "Residual", "SpikeDrivenResidual",
    "starts_with_neuron",
    "NeuronSpec", "NEURON_TYPES", "default_neuron", "make_neuron", "set_threshold", "is_neuron",
    "bn_affine", "fold_bn", "fold_bn_pairs", "FOLDABLE", "bn_neuron", "SpikingSequential",
]

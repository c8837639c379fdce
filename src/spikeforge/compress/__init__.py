"""Compression: quantization, pruning, rewiring and crossbar tiling, each a ``Compressor`` applied to a
model in place and chosen by ``--quantize`` / ``--prune`` / ``--rewire`` (``base.py``).

* ``crossbar`` — crossbar tiling (the one the integer core simulator uses) and crossbar-aware pruning
  (``crossbar.py``).
* ``lats`` — soft-threshold pruning with learning-rate-adapted threshold schedules (``lats.py``).
* ``gradr`` — Gradient Rewiring: sign-fixed hidden strengths, a Laplace prior (``gradr.py``).
"""

from .base import COMPRESSORS, FLAGS, CompressionError, Compressor, applied, parse_spec
from .crossbar import (
    CrossbarMask,
    CrossbarPrune,
    Tiling,
    crossbar_counts,
    crossbar_layers,
    dense_crossbars,
    plain_weight_reason,
    prune_crossbars,
    tile,
    unfold_weight,
)
from .gradr import GradRewire, GradRPrior, SignedReLU, gradr_center, gradr_connectivity
from .integer import EncoderSpikes, IntegerLIF, IntegerSynapse, to_integer
from .lats import LATS_SCHEDULES, LATSPrune, SoftThreshold, lats_schedule, lats_sparsity, soft_threshold
from .mint import (
    BIAS_BITS,
    MembraneQuantizer,
    MintBias,
    MintIF,
    MintLIF,
    MintQuantizer,
    MintWeight,
    accumulator_bits,
    int_add_pj,
    memory_bits,
    mint_layers,
    surrogate_in_units,
)

__all__ = ["COMPRESSORS", "FLAGS", "CompressionError", "Compressor", "applied", "parse_spec", "CrossbarMask",
           "CrossbarPrune", "Tiling", "crossbar_counts", "crossbar_layers", "dense_crossbars", "plain_weight_reason",
           "prune_crossbars", "tile", "unfold_weight"]
__all__ += ["GradRewire", "GradRPrior", "SignedReLU", "gradr_center", "gradr_connectivity"]
__all__ += ["LATS_SCHEDULES", "LATSPrune", "SoftThreshold", "lats_schedule", "lats_sparsity", "soft_threshold"]
__all__ += ["MintQuantizer", "MintWeight", "MintBias", "MintLIF", "MintIF", "MembraneQuantizer", "mint_layers",
            "surrogate_in_units", "memory_bits", "accumulator_bits", "int_add_pj", "BIAS_BITS", "to_integer",
            "IntegerSynapse", "IntegerLIF", "EncoderSpikes"]

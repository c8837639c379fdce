"""Compression: quantization, pruning, rewiring and crossbar tiling, each a ``Compressor`` applied to a
model in place and chosen by ``--quantize`` / ``--prune`` / ``--rewire`` (``base.py``).

* ``crossbar`` — crossbar tiling (the one the integer core simulator uses) and crossbar-aware pruning
  (``crossbar.py``).
"""

from .base import COMPRESSORS, FLAGS, CompressionError, Compressor, applied, parse_spec
from .crossbar import (
    CrossbarMask,
    CrossbarPrune,
    Tiling,
    crossbar_counts,
    crossbar_layers,
    dense_crossbars,
    prune_crossbars,
    tile,
    unfold_weight,
)

__all__ = ["COMPRESSORS", "FLAGS", "CompressionError", "Compressor", "applied", "parse_spec", "CrossbarMask",
           "CrossbarPrune", "Tiling", "crossbar_counts", "crossbar_layers", "dense_crossbars", "prune_crossbars",
           "tile", "unfold_weight"]

"""Deployment: models out of spikeforge and back in.

``to_nir(model, sample_input, dt)`` writes a trained model as a NIR graph (the Neuromorphic Intermediate
Representation other SNN libraries and chips read) and ``from_nir(graph, dt)`` runs a NIR graph as a
spikeforge module; ``export.nir_params`` holds the one mapping between spikeforge's Euler neurons and
NIR's ODEs. Exporters by name: ``EXPORTERS`` (``spikeforge list`` shows them).

``chip`` lays an integer model (``compress.to_integer``) out on the cores and crossbars of a simulated
neuromorphic chip (``ChipConfig``, ``map_model``) and ``chip_sim.simulate`` runs it event by event on integers,
bit-exact with the integer model, counting synaptic operations, packets, hops, updates and energy
(``spikeforge deploy``).

Example:
    >>> import torch, nir
    >>> from spikeforge.export import from_nir, to_nir
    >>> from spikeforge.models import create_model
    >>> net = create_model("spiking_mlp_tiny", in_channels=1, num_classes=10, img_size=8, T=4).eval()
    >>> graph = to_nir(net, torch.rand(1, 1, 8, 8), dt=1e-3)
    >>> back = from_nir(graph, dt=1e-3)
    >>> x = (torch.rand(4, 2, 1, 8, 8) < 0.5).float()
    >>> torch.equal(back(x), net(x))
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core import Registry
from .chip import LOIHI_2018, ChipConfig, ChipError, EnergyTable, Mapping, map_model
from .chip_sim import ChipRun, LayerStats, simulate
from .nir_export import to_nir
from .nir_import import NIRNet, Scale, from_nir
from .nir_params import NIRExportError, NIRImportError

__all__ = ["to_nir", "from_nir", "NIRNet", "Scale", "NIRExportError", "NIRImportError", "EXPORTERS", "ChipConfig",
           "EnergyTable", "LOIHI_2018", "ChipError", "Mapping", "map_model", "ChipRun", "LayerStats", "simulate"]

EXPORTERS: Registry[Callable[..., Any]] = Registry("exporter")
"""Exporters by name: ``nir`` (``to_nir``)."""
EXPORTERS.register("nir", to_nir,
                   summary="NIR graph (nir.NIRGraph / .nir file), read by snnTorch, Norse, Lava, Sinabs …")

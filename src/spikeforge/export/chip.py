"""An integer neuromorphic chip: its configuration, its per-event energy table, and the mapping of an integer
model (``compress.to_integer``) onto its cores and crossbars. ``chip_sim.simulate`` runs the mapped model.

**The chip.** Cores hold neurons (``neurons_per_core``); a core's synapses are stored in crossbars of
``R`` input lines (axons) × ``C`` output neurons; weights are signed ``weight_bits`` integers; each neuron
keeps a ``membrane_bits`` saturating membrane and sums its synaptic input in a 32-bit dendritic accumulator.
Cores sit ``cores_per_tile`` to a tile, tiles on a 2-D mesh ``mesh_width`` tiles wide; spikes travel as
packets, one per destination core, within a tile or hop by hop between tiles. Each default comes from a
chip:

* 256 neurons per core and a 256 × 256 crossbar: IBM TrueNorth (Merolla et al., Science 345, 2014);
* 8-bit weights and a 16-bit saturating membrane: SynSense DYNAP-CNN / Speck (sinabs-dynapcnn's
  discretisation, ``weight_precision_bits=8``, ``state_precision_bits=16``);
* 128 cores, 4 per tile on an 8-tile-wide mesh, and the energy table ``LOIHI_2018``: Intel Loihi
  (Davies et al., IEEE Micro 38(1), 2018).

**The mapping** (``map_model``). The integer model is traced with ``torch.fx``; it must be a feed-forward
chain: a floating-point encoder that runs on the host (everything up to the ``EncoderSpikes`` neurons),
then synaptic layers (``IntegerSynapse``), each followed by integer neurons (``IntegerLIF``) or, for the
last, read out as currents. What lies between a spiking layer and the next synaptic layer (max pooling,
flattening, reshapes) must be a **routing** of spikes: each source neuron reaches a fixed set of the next
layer's input lines, and a line that receives several spikes in one step sees one (max pooling of binary
spikes is exactly that OR). A layer's weight matrix is laid on crossbars with ``compress.tile`` (the
one tiling, in ``compress.crossbar``: all-zero rows and columns are dropped, the crossbars are the tiles
holding a nonzero weight). A convolution's crossbars hold its kernel once, ``[C_in·k·k, C_out]``, shared by every output
position (as crossbar accelerators map convolutions, and as crossbar-aware pruning counts them); its
neurons are its outputs at every position, and the simulation uses the full unrolled connections. A neuron
with no input weight, no bias and a threshold above its rest can never fire: it takes no
core. The kept neurons of a layer fill ``ceil(neurons / neurons_per_core)`` cores.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import Tensor, fx, nn

from ..compress.crossbar import Tiling, tile
from ..compress.integer import EncoderSpikes, IntegerLIF, IntegerSynapse
from ..core import UserError
from ..layers import ToSequence
from ..models.fx import trace

__all__ = ["EnergyTable", "LOIHI_2018", "ChipConfig", "ChipError", "LayerMap", "Mapping", "map_model",
           "parse_crossbar"]


class ChipError(UserError, ValueError):
    """A model the chip cannot run as configured (names the layer and what does not fit), or a bad setting."""


@dataclass(frozen=True)
class EnergyTable:
    """Energy per event, in picojoules.

    The defaults (``LOIHI_2018``) are Intel Loihi's measured figures, Davies et al., "Loihi: a neuromorphic
    manycore processor with on-chip learning", IEEE Micro 38(1), 2018, Table 1 (the within-tile spike and
    the east-west hop agree with SANA-FE's ``arch/loihi.yaml``, which quotes the same paper). Kept apart
    from the 45 nm MAC/AC table that ``spikeforge report`` uses.

    Attributes:
        synop: one synaptic operation (a spike read on one synapse and added to a neuron's input).
        neuron_active: one neuron update in a step where the neuron has input or a non-rest membrane.
        neuron_inactive: one neuron update otherwise.
        spike_in_tile: one spike packet delivered within its tile.
        hop_ew: one east–west hop of a packet between neighbouring tiles.
        hop_ns: one north–south hop.
        source: where the numbers come from.
    """

    synop: float = 23.6
    neuron_active: float = 81.0
    neuron_inactive: float = 52.0
    spike_in_tile: float = 1.7
    hop_ew: float = 3.0
    hop_ns: float = 4.0
    source: str = "Intel Loihi, Davies et al., IEEE Micro 38(1) 2018, Table 1"


LOIHI_2018 = EnergyTable()
"""Loihi's per-event energies (Davies et al. 2018): the chip simulator's default ``EnergyTable``."""


def _positive(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ChipError(f"{name} must be a positive integer, got {v!r}")
    return v


@dataclass(frozen=True)
class ChipConfig:
    """The simulated chip (defaults and their sources: the module docstring).

    Attributes:
        neurons_per_core: neurons one core holds (TrueNorth: 256).
        crossbar: ``(R, C)``: input lines × output neurons of one crossbar (TrueNorth: 256 × 256).
        weight_bits: signed weight width (DYNAP-CNN/Speck: 8): weights in ``[−(2^(b−1)−1), 2^(b−1)−1]``.
        membrane_bits: signed saturating membrane width (DYNAP-CNN/Speck: 16).
        cores: cores on the chip (Loihi: 128).
        cores_per_tile: cores sharing one router (Loihi: 4).
        mesh_width: tiles per mesh row (Loihi: 8 × 4 tiles).
        energy: per-event energies (``LOIHI_2018``).
    """

    neurons_per_core: int = 256
    crossbar: tuple[int, int] = (256, 256)
    weight_bits: int = 8
    membrane_bits: int = 16
    cores: int = 128
    cores_per_tile: int = 4
    mesh_width: int = 8
    energy: EnergyTable = field(default=LOIHI_2018)

    def __post_init__(self) -> None:
        for name in ("neurons_per_core", "cores", "cores_per_tile", "mesh_width"):
            flag = f" (--{name.replace('_', '-')})" if name in ("neurons_per_core", "cores") else ""
            _positive(name + flag, getattr(self, name))
        if len(self.crossbar) != 2:
            raise ChipError(f"crossbar must be (rows, columns), got {self.crossbar!r}")
        _positive("crossbar rows", self.crossbar[0])
        _positive("crossbar columns", self.crossbar[1])
        if not 2 <= _positive("weight_bits (--weight-bits)", self.weight_bits) <= 16:
            raise ChipError(f"weight_bits (--weight-bits) must be in 2..16, got {self.weight_bits}")
        if not 2 <= _positive("membrane_bits (--membrane-bits)", self.membrane_bits) <= 32:
            raise ChipError(f"membrane_bits (--membrane-bits) must be in 2..32, got {self.membrane_bits}")

    def tile_xy(self, core: int) -> tuple[int, int]:
        """Mesh position ``(x, y)`` of the tile holding ``core`` (the host port is tile 0's)."""
        t = core // self.cores_per_tile
        return t % self.mesh_width, t // self.mesh_width

    def describe(self) -> str:
        """One line: the configuration."""
        R, C = self.crossbar
        return (f"{self.cores} cores × {self.neurons_per_core} neurons, crossbar {R}×{C}, int{self.weight_bits} "
                f"weights, int{self.membrane_bits} saturating membrane, {self.cores_per_tile} cores per tile, "
                f"mesh {self.mesh_width} tiles wide; energy: {self.energy.source}")


def parse_crossbar(text: str) -> tuple[int, int]:
    """``"256x256"`` → ``(256, 256)`` (for ``--crossbar``)."""
    parts = str(text).lower().replace("×", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ChipError(f"--crossbar: expected ROWSxCOLUMNS with positive integers (e.g. 256x256), got {text!r}")
    return int(parts[0]), int(parts[1])


@dataclass
class LayerMap:
    """One synaptic layer on the chip.

    Attributes:
        name: the ``IntegerSynapse``'s module name.
        neuron: the neuron module's name, or ``None`` for the readout.
        in_shape: shape of one step's input lines (after routing).
        out_shape: shape of one step's neurons.
        route: ``[sources, input lines]`` bool: which input lines a source neuron's spike reaches.
        weight: ``[input lines, neurons]`` int32: the connection matrix.
        bias: ``[neurons]`` int32 (zeros when the layer has none).
        lif: the integer neurons (``None`` for the readout).
        tiling: the crossbar tiling of the layer's weight ``[C_in·k·k, C_out]`` (a convolution's kernel, held
            once and shared by every output position).
        kept: indices of the neurons placed on cores, in order.
        cores: cores the kept neurons fill.
        core0: the layer's first core.
        core_of: ``[neurons]``: each neuron's core (−1: not placed).
    """

    name: str
    neuron: str | None
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    route: Tensor
    weight: Tensor
    bias: Tensor
    lif: IntegerLIF | None
    tiling: Tiling
    kept: Tensor
    cores: int
    core0: int
    core_of: Tensor

    @property
    def synapses(self) -> int:
        """Nonzero weights (synapses stored on crossbars)."""
        return int((self.weight != 0).sum())

    def row(self) -> dict[str, Any]:
        """The mapping table's row."""
        return {"layer": self.name, "neuron": self.neuron or "readout", "inputs": int(self.weight.shape[0]),
                "inputs_used": int((self.weight != 0).any(1).sum()), "neurons": int(self.weight.shape[1]),
                "neurons_placed": len(self.kept), "synapses": self.synapses, "crossbars": self.tiling.crossbars,
                "cores": self.cores, "first_core": self.core0}


@dataclass
class Mapping:
    """An integer model laid out on a chip (``map_model``).

    Attributes:
        config: the chip.
        layers: the synaptic layers, in order.
        host: runs the encoder on the host: ``x [T, B, ...] → int8 spikes [T, B, ...]``.
        encoder: the ``EncoderSpikes`` module's name.
        source_shape: shape of one step of the encoder's spikes.
        cache: what ``chip_sim.simulate`` precomputes once per mapping.
    """

    config: ChipConfig
    layers: list[LayerMap]
    host: Callable[[Tensor], Tensor]
    encoder: str
    source_shape: tuple[int, ...]
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def cores(self) -> int:
        """Cores used in all."""
        return sum(m.cores for m in self.layers)

    @property
    def crossbars(self) -> int:
        """Crossbars used in all."""
        return sum(m.tiling.crossbars for m in self.layers)

    def table(self) -> list[dict[str, Any]]:
        """Per layer: inputs, neurons (all / placed), synapses, crossbars, cores."""
        return [m.row() for m in self.layers]


# -- the graph ------------------------------------------------------------------------------------------------

def _kind(gm: fx.GraphModule, n: fx.Node) -> str:
    if n.op == "call_module":
        m = gm.get_submodule(cast(str, n.target))
        if isinstance(m, EncoderSpikes):
            return "encoder"
        if isinstance(m, IntegerSynapse):
            return "synapse"
        if isinstance(m, IntegerLIF):
            return "neuron"
    return "other"


def _run(gm: fx.GraphModule, x: Tensor, until: fx.Node, seed: fx.Node | None = None, value: Any = None,
         ) -> dict[fx.Node, Any]:
    """Evaluate the graph on ``x`` up to ``until`` (included), replacing ``seed``'s value by ``value``."""
    env: dict[fx.Node, Any] = {}

    def get(a: Any) -> Any:
        return fx.node.map_arg(a, lambda n: env[n])

    for n in gm.graph.nodes:
        if n.op == "placeholder":
            out: Any = x
        elif n is seed:
            out = value
        elif n.op == "call_module":
            out = gm.get_submodule(cast(str, n.target))(*get(n.args), **get(n.kwargs))
        elif n.op == "call_function":
            out = cast(Callable[..., Any], n.target)(*get(n.args), **get(n.kwargs))
        elif n.op == "call_method":
            args = get(n.args)
            out = getattr(args[0], cast(str, n.target))(*args[1:], **get(n.kwargs))
        elif n.op == "get_attr":
            out = _attr(gm, cast(str, n.target))
        else:
            out = get(n.args[0])
        env[n] = out
        if n is until:
            break
    return env


def _attr(gm: fx.GraphModule, target: str) -> Any:
    obj: Any = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _check_chain(gm: fx.GraphModule, env: dict[fx.Node, Any]) -> None:
    """Every tensor-valued node reads at most one tensor, and every tensor feeds at most one such node (reading its
    shape does not count)."""
    readers: dict[fx.Node, list[fx.Node]] = {}
    for n in gm.graph.nodes:
        if n.op == "output" or not isinstance(env.get(n), Tensor):
            continue
        ins = [a for a in n.all_input_nodes if isinstance(env.get(a), Tensor)]
        if len(ins) > 1:
            raise ChipError(f"the model is not a feed-forward chain: {n.name} joins {', '.join(a.name for a in ins)} "
                            "(a residual or branching connection); the core simulator maps chains")
        for a in ins:
            readers.setdefault(a, []).append(n)
    for a, rs in readers.items():
        if len(rs) > 1:
            raise ChipError(f"the model is not a feed-forward chain: {a.name} feeds {', '.join(r.name for r in rs)} "
                            "(a branch); the core simulator maps chains")


def _anchors(gm: fx.GraphModule) -> list[fx.Node]:
    """The encoder, then synapse, neuron, synapse, …, synapse (checked)."""
    anchors = [n for n in gm.graph.nodes if _kind(gm, n) != "other"]
    kinds = [_kind(gm, n) for n in anchors]
    if kinds.count("encoder") != 1 or kinds[0] != "encoder":
        raise ChipError("the chip runs an integer model from spikeforge.compress.to_integer: one floating-point "
                        f"encoder first, then integer layers (found {kinds or 'no integer layer'})")
    body = kinds[1:]
    if not body or body[-1] != "synapse":
        raise ChipError("the integer model must end with a synaptic readout layer")
    for i, k in enumerate(body):
        want = "synapse" if i % 2 == 0 else "neuron"
        if k != want:
            raise ChipError(f"layer {anchors[i + 1].target}: expected a {want} after {anchors[i].target}, found a {k}; "
                            "the chip maps chains of synapse → neuron layers")
    return anchors


# -- routing and connections ----------------------------------------------------------------------------------

_CHUNK = 2048


def _one_hot(lo: int, k: int, n: int) -> Tensor:
    eye = torch.zeros(k, n, dtype=torch.int8)
    eye[torch.arange(k), torch.arange(lo, lo + k)] = 1
    return eye


def _route(gm: fx.GraphModule, dummy: Callable[[int], Tensor], src: fx.Node, syn: fx.Node,
           src_shape: tuple[int, ...]) -> tuple[Tensor, tuple[int, ...]]:
    """``[sources, input lines]``: where each source neuron's spike arrives at ``syn``'s input (checked to be
    an OR routing on random spike patterns)."""
    n_src = math.prod(src_shape)
    arg = cast(fx.Node, syn.args[0])

    def lines(s: Tensor) -> Tensor:
        return cast(Tensor, _run(gm, dummy(s.shape[0]), syn, src, s.view(1, s.shape[0], *src_shape))[arg])

    parts: list[Tensor] = []
    in_shape: tuple[int, ...] = ()
    for lo in range(0, n_src, _CHUNK):
        out = lines(_one_hot(lo, min(_CHUNK, n_src - lo), n_src))
        in_shape = tuple(out.shape[1:])
        parts.append(out.reshape(out.shape[0], -1) != 0)
    route = torch.cat(parts)
    g = torch.Generator().manual_seed(0)
    for p in (0.05, 0.3, 0.8):                    # the layers between must be an OR of the sources' routes
        s = (torch.rand(4, n_src, generator=g) < p).to(torch.int8)
        want = (s.float() @ route.float() > 0).to(torch.int8)
        got = lines(s).reshape(4, -1)
        if got.is_floating_point() or not torch.equal(got.to(torch.int8), want):
            raise ChipError(f"between {src.target} and {syn.target} the layers do not route spikes (each input "
                            "line must be the OR of a fixed set of source spikes, as max pooling and reshapes "
                            "are); the chip cannot run them")
    return route, in_shape


def _connections(syn: IntegerSynapse, in_shape: tuple[int, ...]) -> tuple[Tensor, tuple[int, ...]]:
    """``[input lines, outputs]`` int32: ``syn`` applied to each input line alone, bias removed."""
    n_in = math.prod(in_shape)
    rows: list[Tensor] = []
    out_shape: tuple[int, ...] = ()
    for lo in range(0, n_in, _CHUNK):
        k = min(_CHUNK, n_in - lo)
        out = syn(_one_hot(lo, k, n_in).view(k, *in_shape))
        out_shape = tuple(out.shape[1:])
        rows.append(out.reshape(k, -1))
    zero = syn(torch.zeros(1, *in_shape, dtype=torch.int8)).reshape(1, -1)
    return torch.cat(rows) - zero, out_shape


def _check_order(gm: fx.GraphModule, dummy: Callable[[int], Tensor], syn: fx.Node, dst: fx.Node,
                 out_shape: tuple[int, ...]) -> None:
    """What lies between ``syn`` and ``dst`` must hand one step's outputs on in order (folds, identities)."""
    n = math.prod(out_shape)
    idx = torch.arange(1, n + 1, dtype=torch.int32)
    arg = dst.args[0]
    got = _run(gm, dummy(1), dst, syn, idx.view(1, *out_shape))[cast(fx.Node, arg)]
    if not isinstance(got, Tensor) or got.shape[:2] != (1, 1) or not torch.equal(got.reshape(-1), idx):
        raise ChipError(f"after {syn.target} the layers change its output; the chip needs each synaptic layer to "
                        "feed its neurons (or the output) directly")


def _can_fire_alone(lif: IntegerLIF, out_shape: tuple[int, ...]) -> Tensor:
    rest = 0 if lif.v_reset is None else lif.v_reset
    theta = torch.broadcast_to(lif.theta, out_shape).reshape(-1)
    return cast(Tensor, rest >= theta)


def _check_fits(cfg: ChipConfig, name: str, w: Tensor, lif: IntegerLIF | None) -> None:
    wmax = 2 ** (cfg.weight_bits - 1) - 1
    big = int(w.abs().max()) if w.numel() else 0
    if big > wmax:
        b = cfg.weight_bits
        how = (f"quantise the readout to {b} bits too (--quantize mint:...,head_bits={b})" if lif is None
               else f"quantise to {b} bits (--quantize mint:weight_bits={b},...)")
        raise ChipError(f"layer {name}: weights reach {big}, beyond the core's int{cfg.weight_bits} range "
                        f"[-{wmax}, {wmax}]; {how}, or give the chip more weight bits (--weight-bits)")
    if lif is None:
        return
    vmax = 2 ** (cfg.membrane_bits - 1) - 1
    if lif.lo is None or lif.hi is None:
        raise ChipError(f"layer {name}: its neurons' membrane is not clamped; the chip's membrane saturates at "
                        f"int{cfg.membrane_bits}, so the integer model must clamp it (MINT does)")
    if lif.hi > vmax or lif.lo < -vmax - 1:
        raise ChipError(f"layer {name}: the membrane spans [{lif.lo}, {lif.hi}], beyond the core's int"
                        f"{cfg.membrane_bits} [{-vmax - 1}, {vmax}] (--membrane-bits)")
    th = int(lif.theta.abs().max())
    if th > vmax:
        raise ChipError(f"layer {name}: the threshold {th} does not fit the core's int{cfg.membrane_bits} register "
                        f"(max {vmax})")


def map_model(model: nn.Module, sample_input: Tensor, config: ChipConfig | None = None) -> Mapping:
    """Lay an integer model (``compress.to_integer``) out on the chip's cores and crossbars.

    Args:
        model: the integer model: a floating-point encoder, then ``IntegerSynapse`` → ``IntegerLIF`` layers
            joined by spike routing (max pooling, reshapes), an ``IntegerSynapse`` readout last.
        sample_input: an input the model takes (``[B, ...]`` or ``[T, B, ...]``); only its shape matters.
        config: the chip (default ``ChipConfig()``).

    Returns:
        The ``Mapping``: per layer its connection matrix, routing, tiling and cores.

    Raises:
        ChipError: the model is not such a chain; a weight, membrane or threshold does not fit the core's
            registers; or the layers need more cores than the chip has (naming the first layer that does not
            fit and by how much).
    """
    cfg = config or ChipConfig()
    model = model.eval()
    gm = trace(model)
    anchors = _anchors(gm)
    enc = anchors[0]
    stem = next((m for m in model.modules() if isinstance(m, ToSequence)), None)
    sample = tuple(sample_input.shape[-stem.sample_dims:] if stem is not None else sample_input.shape[2:])

    def dummy(k: int) -> Tensor:
        return torch.zeros(1, k, *sample)

    def host(x: Tensor) -> Tensor:
        with torch.no_grad():
            return cast(Tensor, _run(gm, x, enc)[enc])

    with torch.no_grad():
        _check_chain(gm, _run(gm, dummy(1), next(n for n in gm.graph.nodes if n.op == "output")))
        src_shape = tuple(host(sample_input).shape[2:])
        shape = src_shape
        layers: list[LayerMap] = []
        core = 0
        out_node = next(n for n in gm.graph.nodes if n.op == "output")
        for i in range(1, len(anchors), 2):
            syn_node = anchors[i]
            nxt = anchors[i + 1] if i + 1 < len(anchors) else out_node
            syn = cast(IntegerSynapse, gm.get_submodule(cast(str, syn_node.target)))
            route, in_shape = _route(gm, dummy, anchors[i - 1], syn_node, shape)
            weight, out_shape = _connections(syn, in_shape)
            _check_order(gm, dummy, syn_node, nxt, out_shape)
            lif = None if nxt is out_node else cast(IntegerLIF, gm.get_submodule(cast(str, nxt.target)))
            name = cast(str, syn_node.target)
            _check_fits(cfg, name, weight, lif)
            layers.append(_layer(cfg, name, nxt, syn, lif, route, weight, in_shape, out_shape, core))
            core += layers[-1].cores
            shape = out_shape
    _check_cores(cfg, layers)
    return Mapping(cfg, layers, host, cast(str, enc.target), src_shape)


def _layer(cfg: ChipConfig, name: str, nxt: fx.Node, syn: IntegerSynapse, lif: IntegerLIF | None, route: Tensor,
           weight: Tensor, in_shape: tuple[int, ...], out_shape: tuple[int, ...], core: int) -> LayerMap:
    n_out = weight.shape[1]
    bias = torch.zeros(n_out, dtype=torch.int32)
    if syn.bias is not None:
        bias = torch.broadcast_to(syn.bias.view(-1, *([1] * (len(out_shape) - 1))), out_shape).reshape(-1)
    kernel = syn.weight.reshape(syn.weight.shape[0], -1).t().to(torch.int32)     # [C_in·k·k, C_out]
    tiling = tile(kernel, *cfg.crossbar)
    used = (weight != 0).any(0)
    used |= bias != 0
    if lif is None:
        used[:] = True                           # the readout's currents are the model's output
    else:
        used |= _can_fire_alone(lif, out_shape)
    kept = torch.nonzero(used).flatten()
    cores = -(-len(kept) // cfg.neurons_per_core)
    core_of = torch.full((n_out,), -1, dtype=torch.long)
    core_of[kept] = core + torch.arange(len(kept)) // cfg.neurons_per_core
    return LayerMap(name, None if lif is None else cast(str, nxt.target), in_shape, out_shape, route,
                    weight.to(torch.int32), bias.to(torch.int32), lif, tiling, kept, cores, core, core_of)


def _check_cores(cfg: ChipConfig, layers: list[LayerMap]) -> None:
    total = sum(m.cores for m in layers)
    if total <= cfg.cores:
        return
    m = next(m for m in layers if m.core0 + m.cores > cfg.cores)
    left = cfg.cores - m.core0
    raise ChipError(f"layer {m.name} does not fit: its {len(m.kept)} neurons need {m.cores} cores of "
                    f"{cfg.neurons_per_core} neurons and only {left} of the chip's {cfg.cores} are left "
                    f"({m.cores - left} too many); the model needs {total} cores in all ({total - cfg.cores} more "
                    "than the chip has): raise --cores, or prune neurons (--prune crossbar:...)")

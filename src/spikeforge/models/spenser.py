"""SPENSER's networks: a convolutional SNN described by a JSON-able genotype (Branquinho, Lourenço and Costa,
"SPENSER: Towards a NeuroEvolutionary Approach for Convolutional Spiking Neural Networks", arXiv 2305.10987).

``create_model("spenser", genotype=G, in_channels=1, num_classes=10, img_size=8, T=4)`` builds the network
that ``G`` describes; ``spikeforge.search.SpenserSpace`` derives such genotypes from a grammar and evolves
them. A genotype is a ``dict`` (or a JSON text, or the path of a JSON file)::

    {"features": [                                   # in order; the input is [T, B, C, H, W]
        {"layer": "conv", "channels": 16, "kernel": 3,
         "neuron": {"type": "lif", "tau": 2.0, "v_threshold": 1.0, "v_reset": 0.0}},
        {"layer": "avgpool", "kernel": 2},
        {"layer": "dropout", "p": 0.1}],
     "classifier": [                                 # after flattening [T, B, C·H·W]
        {"layer": "linear", "units": 64, "neuron": {"type": "if", "v_threshold": 1.0, "v_reset": null}},
        {"layer": "dropout", "p": 0.2}],
     "learning": {"optimizer": "adam", "lr": 0.001}}  # read by the search's training, not by the model

Layers, each ``{"layer": KIND, ...}``:

* ``conv``: ``Conv2d(channels, kernel, padding=kernel // 2, bias=False)`` + ``BatchNorm2d`` (on ``T·B``,
  tdBN statistics) + a spiking neuron. ``channels`` an integer ``>= 1``; ``kernel`` an odd integer ``>= 1``
  (default 3: "same" size); ``neuron`` as below (default ``{"type": "lif"}``). Features only.
* ``avgpool``: ``AvgPool2d(kernel, stride=kernel, ceil_mode=True)``, ``kernel`` an integer ``>= 1``
  (default 2); a map of side ``s`` becomes ``ceil(s / kernel)``, so any number of pools builds (a pool of a
  ``1×1`` map is the identity). Features only.
* ``dropout``: ``SeqDropout(p)``, one mask per sequence shared by all steps; ``0 <= p < 1``. Both modules.
* ``linear``: ``Linear(units)`` + a spiking neuron; ``units`` an integer ``>= 1``. Classifier only.

A neuron is ``{"type": "lif" | "if", "tau": float >= 1 (lif only, default 2.0), "v_threshold": float > 0
(default 1.0), "v_reset": float or null (default 0.0; null: soft reset, subtract the threshold)}``; every
neuron uses the zoo's ``ATan(alpha=2)`` surrogate with a detached reset (``default_neuron``). The head is a
``Linear(num_features, num_classes)`` readout without a neuron. ``learning`` is optional here:
``{"optimizer": "adam" | "adamw" | "sgd", "lr": float > 0, "momentum": float in [0, 1) (sgd only, default
0.9), "weight_decay": float >= 0 (default 0), "batch_size": int >= 1 (optional)}``.

A genotype that breaks any of this raises ``GenotypeError`` (a ``ValueError``) naming the field, e.g.
``features[2].neuron.tau``; an unknown field is an error too (a misspelt key is never silently ignored).
"""

from __future__ import annotations

import copy
import json
import math
from collections import OrderedDict
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from ..core import UserError
from ..layers import SeqDropout, SpikingSequential, TimeFold, ToSequence
from ..layers.neuron_spec import NeuronSpec, make_neuron
from ..neurons import IF, LIF
from ..surrogate import ATan
from .registry import SpikingClassifier, register_model

__all__ = ["SpenserNet", "GenotypeError", "check_genotype", "load_genotype", "DEFAULT_GENOTYPE", "OPTIMIZERS"]

OPTIMIZERS = ("adam", "adamw", "sgd")
"""The optimisers a genotype's ``learning`` module may name."""

DEFAULT_GENOTYPE: dict[str, Any] = {
    "features": [
        {"layer": "conv", "channels": 16, "kernel": 3, "neuron": {"type": "lif", "tau": 2.0}},
        {"layer": "avgpool", "kernel": 2},
        {"layer": "conv", "channels": 32, "kernel": 3, "neuron": {"type": "lif", "tau": 2.0}},
        {"layer": "avgpool", "kernel": 2},
    ],
    "classifier": [{"layer": "linear", "units": 64, "neuron": {"type": "lif", "tau": 2.0}}],
    "learning": {"optimizer": "adam", "lr": 1e-3},
}
"""The network ``create_model("spenser")`` builds without a genotype: conv16-pool-conv32-pool-fc64, LIF."""

_LAYERS = {"features": ("conv", "avgpool", "dropout"), "classifier": ("linear", "dropout")}
_FIELDS = {"conv": ("channels", "kernel", "neuron"), "avgpool": ("kernel",), "dropout": ("p",),
           "linear": ("units", "neuron")}


class GenotypeError(UserError, ValueError):
    """A SPENSER genotype that does not describe a network; the message names the field (``features[1].p``)."""


def _fail(where: str, what: str, got: Any) -> GenotypeError:
    return GenotypeError(f"spenser genotype: {where} {what}, got {got!r}")


def _int(d: dict[str, Any], key: str, where: str, low: int, default: int | None = None, odd: bool = False) -> int:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < low or (odd and v % 2 == 0):
        kind = "an odd integer" if odd else "an integer"
        raise _fail(f"{where}.{key}", f"must be {kind} >= {low}", v)
    return v


def _float(d: dict[str, Any], key: str, where: str, low: float, high: float | None = None, *,
           default: float | None = None, open_low: bool = False, open_high: bool = True) -> float:
    v = d.get(key, default)
    ok = False
    if not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v):
        ok = (v > low if open_low else v >= low) and (high is None or (v < high if open_high else v <= high))
    if not ok or v is None:
        rng = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}" if high is not None else ""
        what = f"must be a number in {rng}" if rng else f"must be a number {'>' if open_low else '>='} {low}"
        raise _fail(f"{where}.{key}", what, v)
    return float(v)


def _known(d: Any, where: str, allowed: tuple[str, ...]) -> None:
    if not isinstance(d, dict):
        raise _fail(where, "must be an object (a dict)", d)
    extra = [k for k in d if k not in allowed]
    if extra:
        raise GenotypeError(f"spenser genotype: {where} has an unknown field {extra[0]!r} (expected "
                            f"{', '.join(allowed)})")


def _neuron(d: Any, where: str) -> dict[str, Any]:
    _known(d, where, ("type", "tau", "v_threshold", "v_reset"))
    kind = d.get("type", "lif")
    if kind not in ("lif", "if"):
        raise _fail(f"{where}.type", "must be 'lif' or 'if'", kind)
    out: dict[str, Any] = {"type": kind}
    if kind == "lif":
        out["tau"] = _float(d, "tau", where, 1.0, default=2.0)     # Euler step dt = 1 needs tau >= dt
    elif "tau" in d:
        raise GenotypeError(f"spenser genotype: {where}.tau is given but an 'if' neuron has no leak (use "
                            "type 'lif' or drop tau)")
    out["v_threshold"] = _float(d, "v_threshold", where, 0.0, default=1.0, open_low=True)
    v_reset = d.get("v_reset", 0.0)
    if v_reset is not None and (isinstance(v_reset, bool) or not isinstance(v_reset, int | float)
                                or not math.isfinite(v_reset)):
        raise _fail(f"{where}.v_reset", "must be a number (hard reset) or null (soft reset)", v_reset)
    out["v_reset"] = None if v_reset is None else float(v_reset)
    return out


def _layer(d: Any, module: str, i: int) -> dict[str, Any]:
    where = f"{module}[{i}]"
    if not isinstance(d, dict):
        raise _fail(where, "must be an object with a 'layer' field", d)
    kind = d.get("layer")
    if kind not in _LAYERS[module]:
        raise _fail(f"{where}.layer", f"must be one of {', '.join(_LAYERS[module])}", kind)
    _known(d, where, ("layer", *_FIELDS[kind]))
    if kind == "conv":
        return {"layer": kind, "channels": _int(d, "channels", where, 1),
                "kernel": _int(d, "kernel", where, 1, default=3, odd=True),
                "neuron": _neuron(d.get("neuron", {}), f"{where}.neuron")}
    if kind == "avgpool":
        return {"layer": kind, "kernel": _int(d, "kernel", where, 1, default=2)}
    if kind == "dropout":
        return {"layer": kind, "p": _float(d, "p", where, 0.0, 1.0)}
    return {"layer": kind, "units": _int(d, "units", where, 1), "neuron": _neuron(d.get("neuron", {}),
                                                                                  f"{where}.neuron")}


def _learning(d: Any) -> dict[str, Any]:
    _known(d, "learning", ("optimizer", "lr", "momentum", "weight_decay", "batch_size"))
    opt = d.get("optimizer")
    if opt not in OPTIMIZERS:
        raise _fail("learning.optimizer", f"must be one of {', '.join(OPTIMIZERS)}", opt)
    out: dict[str, Any] = {"optimizer": opt, "lr": _float(d, "lr", "learning", 0.0, open_low=True)}
    if "momentum" in d:
        if opt != "sgd":
            raise GenotypeError(f"spenser genotype: learning.momentum is for 'sgd' only, not {opt!r}")
        out["momentum"] = _float(d, "momentum", "learning", 0.0, 1.0)
    if "weight_decay" in d:
        out["weight_decay"] = _float(d, "weight_decay", "learning", 0.0)
    if "batch_size" in d:
        out["batch_size"] = _int(d, "batch_size", "learning", 1)
    return out


def load_genotype(genotype: dict[str, Any] | str | Path | None) -> dict[str, Any]:
    """A genotype as a ``dict``: given as one, as JSON text, or as the path of a JSON file (``None``: a copy
    of ``DEFAULT_GENOTYPE``). Not yet checked (``check_genotype`` does that)."""
    if genotype is None:
        return copy.deepcopy(DEFAULT_GENOTYPE)
    if isinstance(genotype, dict):
        return genotype
    text = str(genotype)
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise GenotypeError(f"spenser genotype: {text!r} is neither a JSON object nor a JSON file")
        text = path.read_text()
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as e:
        raise GenotypeError(f"spenser genotype: not valid JSON ({e})") from None
    if not isinstance(loaded, dict):
        raise GenotypeError(f"spenser genotype: must be a JSON object, got {type(loaded).__name__}")
    return loaded


def check_genotype(genotype: dict[str, Any]) -> dict[str, Any]:
    """The genotype, checked and normalised (defaults filled in, numbers as ``int`` / ``float``), as a new
    JSON-able dict; raises ``GenotypeError`` naming the first wrong field."""
    _known(genotype, "(top level)", ("features", "classifier", "learning"))
    out: dict[str, Any] = {}
    for module in ("features", "classifier"):
        layers = genotype.get(module, [])
        if not isinstance(layers, list):
            raise _fail(module, "must be a list of layers", layers)
        out[module] = [_layer(d, module, i) for i, d in enumerate(layers)]
    if "learning" in genotype:
        out["learning"] = _learning(genotype["learning"])
    return out


def _spiking_neuron(spec: dict[str, Any], override: NeuronSpec) -> nn.Module:
    if override is not None:
        return make_neuron(override)
    kw = {"v_threshold": spec["v_threshold"], "v_reset": spec["v_reset"], "surrogate": ATan(alpha=2.0),
          "detach_reset": True}
    return LIF(tau=spec["tau"], **kw) if spec["type"] == "lif" else IF(**kw)


class SpenserNet(SpikingClassifier):
    """The network a SPENSER genotype describes (see the module docstring for the schema).

    ``x [B, C, H, W]`` (repeated over ``T`` steps: direct encoding) or ``[T, B, C, H, W]`` → logits
    ``[T, B, num_classes]``; ``forward_features`` → ``[T, B, D]``, ``D`` the last classifier layer's units
    (or the flattened feature map when the classifier module is empty).

    Args:
        genotype: the network (dict, JSON text or JSON file); ``None``: ``DEFAULT_GENOTYPE``.
        in_channels, num_classes, img_size, T: input channels, classes (0: no head), input side, steps.
        neuron: if given, this neuron spec (a module, a registered name, a factory) replaces every neuron of
            the genotype; ``None`` builds each layer's own neuron.

    Attributes:
        genotype: the checked, normalised genotype (JSON-able): ``json.dumps`` it to rebuild the net.
        feature_sizes: the side of the feature map after each ``features`` layer.
    """

    def __init__(self, genotype: dict[str, Any] | str | Path | None = None, in_channels: int = 1,
                 num_classes: int = 10, img_size: int = 8, T: int = 4, neuron: NeuronSpec = None) -> None:
        super().__init__()
        g = check_genotype(load_genotype(genotype))
        self.genotype = g
        self.T, self.in_channels, self.img_size = T, in_channels, img_size
        self.stem = ToSequence(T, sample_dims=3)
        feats: OrderedDict[str, nn.Module] = OrderedDict()
        c, s = in_channels, img_size
        self.feature_sizes: list[int] = []
        for i, d in enumerate(g["features"]):
            if d["layer"] == "conv":
                k = d["kernel"]
                feats[f"conv{i}"] = TimeFold(nn.Conv2d(c, d["channels"], k, padding=k // 2, bias=False),
                                             nn.BatchNorm2d(d["channels"]))
                feats[f"sn{i}"] = _spiking_neuron(d["neuron"], neuron)
                c = d["channels"]
            elif d["layer"] == "avgpool":
                feats[f"pool{i}"] = TimeFold(nn.AvgPool2d(d["kernel"], ceil_mode=True))
                s = -(-s // d["kernel"])                  # ceil_mode: ceil(s / k), never below 1
            else:
                feats[f"drop{i}"] = SeqDropout(d["p"])
            self.feature_sizes.append(s)
        self.features = SpikingSequential(feats)
        self.flatten = TimeFold(nn.Flatten())
        width = c * s * s
        cls: OrderedDict[str, nn.Module] = OrderedDict()
        for i, d in enumerate(g["classifier"]):
            if d["layer"] == "linear":
                cls[f"fc{i}"] = TimeFold(nn.Linear(width, d["units"]))
                cls[f"sn{i}"] = _spiking_neuron(d["neuron"], neuron)
                width = d["units"]
            else:
                cls[f"drop{i}"] = SeqDropout(d["p"])
        self.classifier = nn.Sequential(cls)
        self._set_head(width, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """``[B, C, H, W]`` or ``[T, B, C, H, W]`` → ``[T, B, num_features]``."""
        return self.classifier(self.flatten(self.features(self.stem(x))))


@register_model
def spenser(**kwargs: Any) -> SpenserNet:
    """The network a SPENSER genotype describes (``genotype=``; default conv16-pool-conv32-pool-fc64)."""
    return SpenserNet(**kwargs)

"""ANN→SNN conversion: train the ANN twin of a spiking model at ``T = 1``, then turn it into an SNN of IF
neurons with reset by subtraction (``spikeforge convert``).

**The twins.** ``--method ann`` replaces every spiking neuron of a compatible model by a ReLU
(``ReLUTwin``); ``--method qcfs`` by the quantization-clip-floor-shift activation of Bu et al.
(``QCFSActivation``), with a trainable clip ``λ`` per layer::

    h(z) = λ · clamp(⌊z·L/λ + φ⌋ / L, 0, 1)        (L levels, shift φ = 1/2; ⌊·⌋ passes the gradient straight)

Both train at ``T = 1`` on direct input (``TrainStep.config``), so the ANN is the zoo model with the time
axis of length one.

**The conversion** (``convert``). Batch norms are folded into the layer before them (``fold_bn_pairs``);
every twin activation becomes a ``RateNeuron`` (IF, soft reset) with threshold ``θ``: the layer's maximum
activation, a percentile of its positive activations (both over at most ten training batches,
``threshold_statistics``), or the trained ``λ`` (QCFS). The neuron fires at ``α·θ`` with ``α = 1 − φ``,
which equals an IF neuron started at ``V[0] = φ·θ``. With input ``z`` held for ``T`` steps the membrane
ends at ``V[T] = φθ + T·z − θ·N`` (``N`` spikes), so for ``0 ≤ z ≤ θ`` the rate ``r = N/T`` gives::

    r·θ = θ · clamp(⌊T·z/θ + φ⌋, 0, T) / T        |r·θ − clamp(z, 0, θ)| ≤ max(φ, 1 − φ)·θ / T

— ``θ/T`` for the classical conversion (``φ = 0``), ``θ/(2T)`` for QCFS's ``φ = 1/2``, and at ``T = L`` the
first layer reproduces the QCFS activation exactly. Deeper layers see spike trains, not constants; their
error shrinks as ``T`` grows (``layer_errors`` measures it against the ANN with each activation clipped to
``[0, θ]``). ``θ`` is folded into the next synaptic weights (``fold_thresholds``); neurons whose spikes
are summed by a SEW ADD block share one threshold, the largest of the group (QCFS ties their ``λ`` during
training already, so the group's ``λ`` is one trained value).

Papers: Diehl et al., IJCNN 2015 (max normalisation); Rueckauer et al., Frontiers in Neuroscience 2017
(percentile normalisation, reset by subtraction); Bu et al., ICLR 2022 (QCFS; official code
``putshua/SNN_conversion_QCFS``). Departures from the official QCFS code: ``λ`` starts at 2, not 8 (the
code's ``MyFloor(up=8.)`` trains under SGD at learning rate 0.1, where ``λ`` moves fast; under AdamW it
moves about one learning rate per step and stayed near 8, too coarse a grid: chosen on the validation split
of digits); ``λ`` is 0-dim; the default ``L`` is 4 (the script's 16 is its ImageNet setting); ``φ`` is a
setting (the code fixes 0.5); the SNN's threshold sits in the next layer's weights instead of scaling the
neuron's input and output; activations summed by SEW ADD share ``λ`` (the official ResNets have no SEW
blocks).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from ..core import floor_ste
from ..layers import ToSequence, fold_bn_pairs
from ..training import BPTT, METHODS, mark_prepared, prepared_by
from .base import rate_compatible, replace_neurons
from .graph import spike_consumers
from .neurons import RateNeuron, fold_thresholds, rate_neurons

__all__ = ["TwinActivation", "ReLUTwin", "QCFSActivation", "ANN", "QCFS", "NORMS", "twin_activations",
           "threshold_statistics", "convert", "layer_errors", "sew_groups"]

NORMS = ("max", "percentile", "clip")
"""How ``threshold_statistics`` sets a layer's threshold: its maximum activation, a percentile of its
positive activations, or the trained QCFS clip ``λ``."""


class TwinActivation(nn.Module):
    """Base of the ANN activations that stand in for spiking neurons (a leaf of ``torch.fx`` traces, so the
    fold plan of ``graph.spike_consumers`` sees them as it sees neurons). Elementwise on any shape."""

    fx_leaf = True


class ReLUTwin(TwinActivation):
    """``max(z, 0)``: the activation of ``--method ann``."""

    def forward(self, z: Tensor) -> Tensor:
        return torch.relu(z)


class QCFSActivation(TwinActivation):
    """Quantization-clip-floor-shift ``h(z) = λ·clamp(⌊z·L/λ + φ⌋/L, 0, 1)`` with a trainable clip ``λ``.

    Computed as the official ``MyFloor`` (``z/λ``, floor with a straight-through gradient, clamp, ``·λ``), so
    autograd gives its gradients: where ``0 ≤ ⌊z·L/λ + φ⌋ ≤ L`` (the clamp passes at its bounds),
    ``∂h/∂z = 1`` and ``∂h/∂λ = ⌊z·L/λ + φ⌋/L − z/λ``; above, ``∂h/∂z = 0`` and ``∂h/∂λ = 1``; below, both 0.

    Args:
        levels: ``L``, the number of quantisation steps.
        clip: the initial ``λ`` (> 0; the official code starts at 8, see the module docstring).
        shift: ``φ`` in ``[0, 1)``; 0.5 rounds instead of flooring (the SNN then starts at ``θ/2``).
    """

    def __init__(self, levels: int = 4, clip: float = 2.0, shift: float = 0.5) -> None:
        super().__init__()
        self.levels, self.shift = int(levels), float(shift)
        self.clip = nn.Parameter(torch.tensor(float(clip)))
        self._lead: tuple[QCFSActivation, ...] = ()

    def tie_to(self, lead: QCFSActivation) -> None:
        """Use ``lead``'s ``λ`` (its own parameter is removed): activations summed by SEW ADD share one clip."""
        if "clip" in self._parameters:
            del self._parameters["clip"]
        self._lead = (lead,)          # a reference, not a submodule (the lead lives in the model)

    def threshold(self) -> Tensor:
        """``λ`` (the lead's, when tied)."""
        return self._lead[0].threshold() if self._lead else self._parameters["clip"]  # type: ignore[return-value]

    def forward(self, z: Tensor) -> Tensor:
        lam = self.threshold()
        x = floor_ste(z / lam * self.levels + self.shift) / self.levels
        return torch.clamp(x, 0, 1) * lam

    def extra_repr(self) -> str:
        tied = ", tied" if self._lead else ""
        return f"levels={self.levels}, shift={self.shift}{tied}"


def twin_activations(model: nn.Module) -> dict[str, TwinActivation]:
    """The twin activations of ``model`` by qualified name."""
    return {n: m for n, m in model.named_modules() if isinstance(m, TwinActivation)}


def sew_groups(model: nn.Module, units: dict[str, nn.Module] | None = None) -> list[list[str]]:
    """The groups of ``units`` (default: the twin activations) whose outputs are summed before a synapse
    (SEW ADD), each of two names or more, from ``graph.spike_consumers``."""
    units = dict(twin_activations(model)) if units is None else units
    return [g for g in spike_consumers(model, units).groups if len(g) > 1]


class ANN(BPTT):
    """``--method ann``: every spiking neuron becomes a ReLU; the twin trains as an ANN at ``T = 1`` on direct
    input (BPTT over one step is backpropagation). ``spikeforge convert`` turns the result into an SNN.

    Refused at start: models whose layers do not map rates to rates (``rate_compatible``), max pooling
    included."""

    name = "ann"
    config = {"T": 1, "encoding": "direct"}
    replaces_neurons = True

    def check(self, model: nn.Module) -> str | None:
        # what no rate code can express (attention, PSN, SEW AND/IAND) first, then max pooling
        return rate_compatible(model, max_pool=True) or rate_compatible(model, max_pool=False)

    def activation(self) -> TwinActivation:
        """A fresh activation for one neuron's place."""
        return ReLUTwin()

    def prepare(self, model: nn.Module) -> nn.Module:
        if prepared_by(model) == self.name:
            return model

        def make(name: str, old: nn.Module) -> nn.Module:
            p = next(old.parameters(), None)
            act = self.activation()
            return act if p is None else act.to(p.device)

        replace_neurons(model, make)
        self.tie(model)
        return mark_prepared(model, self.name)

    def tie(self, model: nn.Module) -> None:
        """Tie what must be shared inside SEW ADD groups (nothing for ReLU)."""


class QCFS(ANN):
    """``--method qcfs``: every spiking neuron becomes a ``QCFSActivation`` (trainable clip ``λ`` per layer,
    shared by the activations a SEW ADD block sums); trains at ``T = 1`` like ``ann``.

    Args:
        levels: ``L``, the quantisation steps (the SNN is exact on the first layer at ``T = L``).
        clip: the initial ``λ``.
        shift: ``φ`` (0.5: the converted IF neurons start at ``θ/2``).
    """

    name = "qcfs"

    def __init__(self, levels: int = 4, clip: float = 2.0, shift: float = 0.5) -> None:
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
            raise ValueError(f"levels must be an integer >= 1, got {levels!r}")
        if not 0 < clip < float("inf"):
            raise ValueError(f"clip must be a finite number > 0, got {clip}")
        if not 0 <= shift < 1:
            raise ValueError(f"shift must be in [0, 1), got {shift}")
        self.levels, self.clip, self.shift = levels, float(clip), float(shift)

    def options(self) -> dict[str, Any]:
        return {"levels": self.levels, "clip": self.clip, "shift": self.shift}

    def activation(self) -> TwinActivation:
        return QCFSActivation(self.levels, self.clip, self.shift)

    def tie(self, model: nn.Module) -> None:
        acts = {n: a for n, a in twin_activations(model).items() if isinstance(a, QCFSActivation)}
        for group in sew_groups(model, dict(acts)):
            for other in group[1:]:
                acts[other].tie_to(acts[group[0]])


METHODS.register("ann", ANN, summary="the ReLU ANN twin at T=1, for `spikeforge convert` (max or percentile "
                                     "thresholds; Diehl et al. 2015, Rueckauer et al. 2017)")
METHODS.register("qcfs", QCFS, summary="the QCFS ANN twin at T=1 (quantization-clip-floor-shift, trainable clip), "
                                       "for `spikeforge convert` at low T (Bu et al. 2022)")


def threshold_statistics(model: nn.Module, batches: Iterable[Tensor], norm: str = "max",
                         percentile: float = 99.99) -> dict[str, float]:
    """Each twin activation's conversion threshold ``θ`` (by qualified name).

    Args:
        model: a twin (``ann`` or ``qcfs``), run in evaluation mode without gradient (its mode is put back).
        batches: model inputs ``[T, B, ...]`` (training data; not read for ``norm="clip"``).
        norm: ``"max"`` (the largest activation), ``"percentile"`` (the ``percentile``-th percentile of the
            positive activations, Rueckauer et al.) or ``"clip"`` (the trained ``λ``; QCFS only).
        percentile: in ``(0, 100]``; 100 is the maximum.

    A layer that never activates gets ``θ = 1`` (it never fires, whatever its threshold). Raises
    ``ValueError`` for an unknown norm, a percentile outside ``(0, 100]``, a model with no twin activation,
    or ``"clip"`` on ReLU activations.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    acts = twin_activations(model)
    if not acts:
        raise ValueError(f"{type(model).__name__} has no ANN activation (train it with --method ann or qcfs)")
    if norm == "clip":
        out: dict[str, float] = {}
        for name, act in acts.items():
            if not isinstance(act, QCFSActivation):
                raise ValueError(f"norm 'clip' reads the trained QCFS clip, but {name} is a "
                                 f"{type(act).__name__}; use 'max' or 'percentile'")
            lam = float(act.threshold().detach())
            if not lam > 0:
                raise ValueError(f"{name}: the trained clip is {lam}, not > 0; use 'max' or 'percentile'")
            out[name] = lam
        return out
    seen: dict[str, list[Tensor]] = {n: [] for n in acts}
    peak = dict.fromkeys(acts, 0.0)

    def hook(name: str) -> Any:
        def record(mod: nn.Module, inp: Any, y: Tensor) -> None:
            y = y.detach().float()
            peak[name] = max(peak[name], float(y.max()) if y.numel() else 0.0)
            if norm == "percentile":
                seen[name].append(y[y > 0].cpu())
        return record

    handles = [a.register_forward_hook(hook(n)) for n, a in acts.items()]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for x in batches:
                model(x)
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    out = {}
    for name in acts:
        value = peak[name]
        if norm == "percentile" and seen[name]:
            pos = torch.cat(seen[name])
            if pos.numel():
                k = max(1, min(pos.numel(), int(-(-percentile * pos.numel() // 100))))
                value = float(pos.kthvalue(k).values)
        out[name] = value if value > 0 else 1.0
    return out


def convert(model: nn.Module, thresholds: dict[str, float] | None = None, *, alpha: float = 1.0,
            T: int | None = None) -> nn.Module:
    """Turn a twin into its SNN, in place (and return it): fold the batch norms, replace each twin
    activation by a ``RateNeuron`` (IF, soft reset, fire at ``α·θ``) and fold ``θ`` into the next weights.

    Args:
        model: a twin (``ann`` or ``qcfs``) with its trained weights.
        thresholds: ``θ`` per activation name (``threshold_statistics``); ``None`` puts 1 everywhere (a
            skeleton whose thresholds a checkpoint's ``load_state_dict`` fills in: they are buffers).
            Inside a SEW ADD group each neuron gets the group's largest ``θ``.
        alpha: ``1 − φ`` (1: start at 0 and floor; 0.5: start at ``θ/2`` and round, QCFS).
        T: when given, the steps the model's ``ToSequence`` repeats a static ``[B, ...]`` input for.
    """
    acts = twin_activations(model)
    if not acts:
        raise ValueError(f"{type(model).__name__} has no ANN activation to convert (train it with --method ann "
                         "or qcfs)")
    th = {n: 1.0 for n in acts} if thresholds is None else dict(thresholds)
    missing = sorted(set(acts) - set(th))
    if missing:
        raise ValueError(f"no threshold for {', '.join(missing)}")
    for group in sew_groups(model, dict(acts)):
        top = max(th[n] for n in group)
        th.update(dict.fromkeys(group, top))
    fold_bn_pairs(model)
    dev = next(model.parameters()).device
    for name in acts:
        parent, _, key = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        theta = torch.tensor(float(th[name]))             # a 0-dim tensor: a buffer, saved with the weights
        owner._modules[key] = RateNeuron(v_threshold=theta, alpha=alpha).to(dev)  # type: ignore[arg-type]
    fold_thresholds(model)
    if T is not None:
        for m in model.modules():
            if isinstance(m, ToSequence):
                m.T = int(T)
        if hasattr(model, "T"):
            setattr(model, "T", int(T))  # noqa: B010 (the model's own record of its steps, not a submodule)
    return model


def layer_errors(snn: nn.Module, ann: nn.Module, x: Tensor, T: int) -> dict[str, float]:
    """Per converted layer, the mean of ``|r·θ − clamp(z, 0, θ)| / θ`` on a static batch ``x [B, ...]``.

    ``r·θ`` is the layer's spike value averaged over ``T`` steps in ``snn`` (direct input); ``clamp(z, 0, θ)``
    the same layer's activation in ``ann`` with every twin activation replaced by a clip to ``[0, θ]`` (the
    SNN's threshold): what the SNN tends to as ``T`` grows. The first layer's error is at most
    ``max(α, 1 − α)/T`` (see the module docstring); deeper layers' shrink with ``T``.
    """
    neurons = rate_neurons(snn)
    acts = twin_activations(ann)
    theta = {n: float(m.threshold()) for n, m in neurons.items()}
    got: dict[str, Tensor] = {}
    want: dict[str, Tensor] = {}

    def snn_hook(name: str) -> Any:
        def record(mod: nn.Module, inp: Any, s: Tensor) -> None:
            got[name] = s.float().mean(0) * (1.0 if neurons[name].emit else theta[name])
        return record

    def ann_hook(name: str) -> Any:
        def clip(mod: nn.Module, inp: Any, y: Tensor) -> Tensor:
            want[name] = inp[0].clamp(0, theta[name])[0]
            return want[name].unsqueeze(0)
        return clip

    handles = [m.register_forward_hook(snn_hook(n)) for n, m in neurons.items() if n in acts]
    handles += [m.register_forward_hook(ann_hook(n)) for n, m in acts.items() if n in neurons]
    modes = (snn.training, ann.training)
    snn.eval()
    ann.eval()
    try:
        with torch.no_grad():
            snn(x.unsqueeze(0).expand(T, *x.shape))
            ann(x.unsqueeze(0))
    finally:
        snn.train(modes[0])
        ann.train(modes[1])
        for h in handles:
            h.remove()
    return {n: float((got[n] - want[n]).abs().mean() / theta[n]) for n in neurons if n in got and n in want}

"""Auto-Spikformer's weight-entangled supernet: every sub-network is a leading slice of the largest one.

The supernet *is* the largest Spikformer of the search space (``SpikformerSupernet`` subclasses
``spikeforge.models.spikformer.Spikformer``, so its weights are stored under the standalone model's names).
A sub-network of genotype ``g`` is the standalone zoo model ``create_model("spikformer_tiny", embed_dim=dim,
depth=depth, num_heads=heads, mlp_ratio=mlp_ratio, neuron=LIF(τ, V_th))`` whose every tensor is the leading
slice of the supernet's tensor of the same name (weight entanglement, AutoFormer / Auto-Spikformer)::

    W_sub = W[:d_out, :d_in, ...]          (convs, linears, BN affine and running statistics)
    blocks 0 … depth−1 of the supernet      (depth: the first blocks)
    SPS widths D/8, D/4, D/2, D, D          (the leading channels of each unit)
    MLP hidden int(D · mlp_ratio)           (the leading hidden units)

The supernet's ``forward`` runs the *active* genotype (``set_arch``) by calling the standalone model's own
code on views of its tensors (``torch.func.functional_call`` on a parameter-free "meta" copy of the
sub-network), so gradients and BatchNorm running-statistic updates land in the slices, and the sliced
forward is the standalone model's forward by construction. ``extract_subnet`` copies the slices into a real
standalone model. ``SupernetStep`` is the train-step strategy that samples a genotype per step.

Heads do not slice weights: Spikformer's Q/K/V width equals the embedding dim, so a sub-network's heads split
its ``dim`` channels into ``heads`` groups of ``dim / heads`` (the standalone model's own rule).

Che et al., "Auto-Spikformer: Spikformer architecture search", Front. Neurosci. 18:1372257 (2024), arXiv
2306.00807; Chen et al., "AutoFormer: searching transformers for visual recognition", ICCV 2021.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..models import create_model
from ..models.spikformer import Spikformer
from ..neurons import LIF
from ..surrogate import ATan
from ..training import BPTT, StepContext, StepOutput
from .base import SearchError

__all__ = ["GENES", "SUBNET_MODEL", "SpikformerChoices", "SpikformerSupernet", "SupernetStep", "extract_subnet",
           "subnet_neuron", "slice_like"]

GENES = ("depth", "dim", "heads", "mlp_ratio", "tau", "v_threshold")
"""The keys of an Auto-Spikformer genotype, in order."""
SUBNET_MODEL = "spikformer_tiny"
"""The registered model a sub-network is (every size keyword is overridden)."""
_INT_GENES = ("depth", "dim", "heads")


def subnet_neuron(tau: float, v_threshold: float) -> LIF:
    """The neuron of a sub-network: ``LIF(tau, v_threshold, ATan(alpha=2), detach_reset=True)``, exactly what
    ``spikeforge train --neuron lif --tau τ --v-threshold V`` builds (the Spikformer papers' LIF at τ, V_th).

    The attention neuron of every SSA keeps Spikformer's own threshold (``attn_v_threshold``, 0.5)."""
    return LIF(tau=float(tau), v_threshold=float(v_threshold), surrogate=ATan(alpha=2.0), detach_reset=True)


@dataclass(frozen=True)
class SpikformerChoices:
    """The discrete choices of each gene (sorted, no repeats).

    Args:
        depth: numbers of blocks.
        dim: embedding dims ``D`` (each divisible by 8, for SPS, and by every head count).
        heads: SSA head counts (head dim ``D / heads``).
        mlp_ratio: MLP hidden width ``int(D · mlp_ratio)``.
        tau: LIF membrane time constants (in steps, ``≥ 1``).
        v_threshold: LIF thresholds (all neurons but the SSA attention neuron).
    """

    depth: tuple[int, ...] = (1, 2)
    dim: tuple[int, ...] = (32, 48, 64)
    heads: tuple[int, ...] = (1, 2, 4)
    mlp_ratio: tuple[float, ...] = (2.0, 4.0)
    tau: tuple[float, ...] = (1.5, 2.0, 3.0)
    v_threshold: tuple[float, ...] = (0.5, 1.0)

    def __post_init__(self) -> None:
        for gene in GENES:
            values = getattr(self, gene)
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
                raise SearchError(f"autospikformer: {gene} needs a non-empty list of choices, got {values!r}")
            cast = int if gene in _INT_GENES else float
            try:
                norm = tuple(sorted({cast(v) for v in values}))
            except (TypeError, ValueError):
                raise SearchError(f"autospikformer: {gene} choices must be numbers, got {values!r}") from None
            if gene in _INT_GENES and any(float(v) != int(v) for v in values):
                raise SearchError(f"autospikformer: {gene} choices must be integers, got {values!r}")
            object.__setattr__(self, gene, norm)
        bad = [(n, why) for gene, lo, why in (("depth", 1, ">= 1"), ("dim", 8, ">= 8"), ("heads", 1, ">= 1"),
                                               ("tau", 1.0, ">= 1 (the Euler step dt/τ ≤ 1)"))
               for n in getattr(self, gene) if n < lo]
        bad += [(r, "> 0") for r in self.mlp_ratio + self.v_threshold if not r > 0]
        if bad:
            raise SearchError(f"autospikformer: choice {bad[0][0]} must be {bad[0][1]}")
        for d in self.dim:
            if d % 8:
                raise SearchError(f"autospikformer: dim {d} is not divisible by 8 (SPS widths D/8 … D)")
            for h in self.heads:
                if d % h:
                    raise SearchError(f"autospikformer: dim {d} is not divisible by heads {h}; every dim choice "
                                      "must divide by every heads choice")
            for r in self.mlp_ratio:
                if int(d * r) < 1:
                    raise SearchError(f"autospikformer: mlp_ratio {r} gives no hidden unit at dim {d}")

    def to_dict(self) -> dict[str, list[Any]]:
        """As a JSON-able dict of lists."""
        return {k: list(v) for k, v in asdict(self).items()}

    def size(self) -> int:
        """The number of distinct genotypes."""
        n = 1
        for gene in GENES:
            n *= len(getattr(self, gene))
        return n

    def largest(self) -> dict[str, Any]:
        """The largest architecture, with the middle τ and V_th choices (the upper middle of an even count:
        τ 2.0 and V_th 1.0 by default)."""
        return {**{g: getattr(self, g)[-1] for g in GENES[:4]}, **self._middle_neuron()}

    def smallest(self) -> dict[str, Any]:
        """The smallest architecture, with the middle neuron choices."""
        return {**{g: getattr(self, g)[0] for g in GENES[:4]}, **self._middle_neuron()}

    def _middle_neuron(self) -> dict[str, float]:
        return {g: getattr(self, g)[len(getattr(self, g)) // 2] for g in ("tau", "v_threshold")}

    def sample(self, rng: random.Random, neurons: bool = True) -> dict[str, Any]:
        """A uniformly random genotype (each gene independently); ``neurons=False`` keeps the middle τ, V_th."""
        g = {gene: rng.choice(getattr(self, gene)) for gene in GENES}
        return g if neurons else {**g, **self._middle_neuron()}

    def check(self, genotype: Mapping[str, Any]) -> dict[str, Any]:
        """``genotype`` with every gene present and one of its choices (normalised to int / float), else
        ``SearchError`` naming the gene."""
        if not isinstance(genotype, Mapping):
            raise SearchError(f"autospikformer: a genotype is a dict of {GENES}, got {type(genotype).__name__}")
        extra = sorted(set(genotype) - set(GENES))
        if extra:
            raise SearchError(f"autospikformer: unknown gene(s) {extra}; a genotype has {list(GENES)}")
        out: dict[str, Any] = {}
        for gene in GENES:
            if gene not in genotype:
                raise SearchError(f"autospikformer: the genotype has no {gene!r} (it needs {list(GENES)})")
            v, choices = genotype[gene], getattr(self, gene)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v not in choices:
                raise SearchError(f"autospikformer: {gene}={v!r} is not one of the choices {list(choices)}")
            out[gene] = int(v) if gene in _INT_GENES else float(v)
        return out


def slice_like(source: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The leading slice of each ``source`` tensor to its ``target`` namesake's shape (views, not copies).

    Raises ``KeyError`` naming a target tensor the source lacks, ``ValueError`` one that does not fit."""
    out = {}
    for name, t in target.items():
        if name not in source:
            raise KeyError(f"the supernet has no tensor {name!r} for the sub-network")
        src = source[name]
        if src.dim() != t.dim() or any(n > m for n, m in zip(t.shape, src.shape)):
            raise ValueError(f"{name}: the sub-network's shape {tuple(t.shape)} is not a leading slice of the "
                             f"supernet's {tuple(src.shape)}")
        out[name] = src[tuple(slice(0, n) for n in t.shape)]
    return out


def _tensors(module: nn.Module) -> dict[str, Tensor]:
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}


class SpikformerSupernet(Spikformer):
    """The largest Spikformer of ``choices``, running the active sub-network (``set_arch``) on leading slices
    of its own tensors (see the module docstring).

    Args:
        choices: the search space's choices; the supernet's size is the largest of each.
        img_size: as ``Spikformer`` (every sub-network shares them).
        in_channels: as ``Spikformer``.
        num_classes: as ``Spikformer``.
        T: as ``Spikformer``.
        pool_before: as ``Spikformer``.
        attn_scale: as ``Spikformer``.
        attn_v_threshold: as ``Spikformer``.

    Shapes: ``[B, C, H, W]`` or ``[T, B, C, H, W]`` -> ``[T, B, num_classes]``.
    """

    def __init__(self, choices: SpikformerChoices | None = None, img_size: int = 8, in_channels: int = 1,
                 num_classes: int = 10, T: int = 2, pool_before: Sequence[int] = (3, 4), attn_scale: float = 0.125,
                 attn_v_threshold: float = 0.5) -> None:
        choices = choices or SpikformerChoices()
        self.base_kwargs: dict[str, Any] = dict(img_size=img_size, in_channels=in_channels, num_classes=num_classes,
                                                T=int(T), pool_before=tuple(pool_before), attn_scale=attn_scale,
                                                attn_v_threshold=attn_v_threshold)
        big = choices.largest()
        super().__init__(**self.base_kwargs, embed_dim=big["dim"], depth=big["depth"], num_heads=big["heads"],
                         mlp_ratio=big["mlp_ratio"], neuron=subnet_neuron(big["tau"], big["v_threshold"]))
        self.choices = choices
        self.arch: dict[str, Any] = big
        self._skeletons: dict[tuple[Any, ...], nn.Module] = {}

    def set_arch(self, genotype: Mapping[str, Any]) -> None:
        """Make ``genotype`` the sub-network ``forward`` runs; a gene it lacks takes ``choices.largest()``'s
        value."""
        self.arch = self.choices.check({**self.choices.largest(), **genotype})

    def subnet_kwargs(self, genotype: Mapping[str, Any]) -> dict[str, Any]:
        """The keyword arguments of ``create_model(SUBNET_MODEL, ...)`` that build ``genotype``'s sub-network."""
        g = self.choices.check({**self.choices.largest(), **genotype})
        return {**self.base_kwargs, "embed_dim": g["dim"], "depth": g["depth"], "num_heads": g["heads"],
                "mlp_ratio": g["mlp_ratio"], "neuron": subnet_neuron(g["tau"], g["v_threshold"])}

    def skeleton(self, genotype: Mapping[str, Any]) -> nn.Module:
        """The standalone sub-network of ``genotype`` on the meta device (no storage): its code and shapes."""
        g = self.choices.check({**self.choices.largest(), **genotype})
        key = tuple(g[k] for k in GENES)
        if key not in self._skeletons:
            with torch.device("meta"):
                self._skeletons[key] = create_model(SUBNET_MODEL, **self.subnet_kwargs(g))
        return self._skeletons[key]

    def sliced(self, genotype: Mapping[str, Any]) -> dict[str, Tensor]:
        """The sub-network's parameters and buffers as views of the supernet's (gradients flow back)."""
        return slice_like(_tensors(self), _tensors(self.skeleton(genotype)))

    def forward(self, x: Tensor) -> Tensor:
        """The active sub-network's logits ``[T, B, num_classes]``."""
        self.check_input(x)
        skel = self.skeleton(self.arch)
        skel.train(self.training)
        return functional_call(skel, self.sliced(self.arch), (x,))  # type: ignore[no-any-return]

    def extra_repr(self) -> str:
        return f"choices={self.choices.to_dict()}, arch={self.arch}"


def extract_subnet(supernet: SpikformerSupernet, genotype: Mapping[str, Any]) -> nn.Module:
    """``genotype``'s sub-network as a standalone ``create_model(SUBNET_MODEL, ...)`` holding copies of the
    supernet's leading slices (on the supernet's device, in its train/eval mode).

    Its outputs equal the supernet's with ``set_arch(genotype)``, bit for bit (``tests/search``)."""
    dev = next(supernet.parameters()).device
    model = create_model(SUBNET_MODEL, **supernet.subnet_kwargs(genotype)).to(dev)
    model.load_state_dict({k: v.detach().clone() for k, v in slice_like(_tensors(supernet), _tensors(model)).items()})
    return model.train(supernet.training)


class SupernetStep(BPTT):
    """Supernet training (weight entanglement): each step trains one uniformly sampled sub-network by BPTT.

    The genotype of step ``s`` is a pure function of ``(seed, s)`` (``arch_at``), so a resumed run samples
    what an uninterrupted one would and the step keeps no state. With ``sample_neurons`` the LIF τ and V_th
    are sampled too, so inherited weights fit every neuron choice evolution may pick.

    Args:
        choices: the search space's choices.
        seed: the sampling seed.
        sample_neurons: sample τ and V_th per step (else the middle choices).
    """

    name = "autospikformer-supernet"

    def __init__(self, choices: SpikformerChoices, seed: int = 0, sample_neurons: bool = True) -> None:
        self.choices, self.seed, self.sample_neurons = choices, int(seed), bool(sample_neurons)

    def arch_at(self, step: int) -> dict[str, Any]:
        """The genotype trained at global step ``step``."""
        return self.choices.sample(random.Random(f"autospikformer/{self.seed}/{step}"), self.sample_neurons)

    def check(self, model: nn.Module) -> str | None:
        """Only a ``SpikformerSupernet`` can be trained this way."""
        if not isinstance(model, SpikformerSupernet):
            return f"it trains a SpikformerSupernet, not a {type(model).__name__}"
        return None

    def options(self) -> dict[str, Any]:
        """The sampling seed and whether τ / V_th are sampled."""
        return {"seed": self.seed, "sample_neurons": self.sample_neurons}

    def __call__(self, model: nn.Module, batch: tuple[Tensor, Tensor], ctx: StepContext) -> StepOutput:
        ctx.module.set_arch(self.arch_at(ctx.step))  # type: ignore[operator]
        return super().__call__(model, batch, ctx)

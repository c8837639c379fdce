"""Temporal contrastive learning (``--loss tcl`` and ``--loss stcl``): cross-entropy on the mean output plus
a supervised contrastive loss over every (sample, time step) pair.

Qiu et al., *Temporal Contrastive Learning for Spiking Neural Networks*, arXiv 2305.13909 (2023). The
features ``h[t]`` the backbone produces at each step are projected by a two-layer head ``g`` and
normalised, ``z[t] = g(h[t]) / ‖g(h[t])‖``; the representation of each step is a sample of its own, and
the supervised contrastive loss (SupCon, Khosla et al., NeurIPS 2020, arXiv 2004.11362, ``L_out``) pulls
together those of one class — including the same sample at the other steps — and pushes the rest apart::

    L = mean_v CE(mean_t O_v[t], y) + λ · L_SupCon(z),         λ = weight = 0.5, τ = temperature = 0.1

TCL contrasts the ``T·B`` representations of the batch; STCL (the Siamese form) the ``V·T·B`` ones of
``V ≥ 2`` augmented views of it, which the step makes through ``batch_transform`` and hands over in
``aux["views"]``; the cross-entropy then averages over the views. STCL brings its own batch transform
(``loss.batch_transform``: two independent ``RandomShift`` draws), which the engine uses when it is given
none, so ``--loss stcl`` needs nothing else.

How the loss reaches what it needs, through the seams that exist (no train step changes for it; the
engine calls ``losses.prepare_loss`` as it calls a method's ``prepare``, and takes ``loss.batch_transform``
when it is given none):

* **Its own trainable part.** ``prepare(model)`` attaches the projection head to the model as the
  submodule ``contrastive_head``, before the engine collects the parameters: the optimiser updates it,
  DDP all-reduces it, checkpoints save it with the model's weights and ``--resume`` restores it exactly.
  ``forward`` never calls it, so evaluation, analysis and NIR export (a ``torch.fx`` trace of ``forward``)
  see the model they saw before; ``without_contrastive_head(state)`` drops its weights from a state dict.
* **The features.** Every zoo model is ``forward(x) = head(forward_features(x))``; ``prepare`` also puts a
  forward hook on ``model.head`` that, while autograd records, attaches the head's input ``[T, B, D]`` to
  the output tensor it produced. The loss reads it from the outputs it is given, so any step that calls
  ``ctx.loss(model(x), y, aux)`` works, under DDP too, and a stale capture cannot be mixed up with the
  current batch. Without gradients (``evaluate``) nothing is attached and the loss is the cross-entropy.

``check(model)`` names what a model lacks (``forward_features``, a ``head`` module, its feature size); the
engine refuses such a model before the first step (``losses.prepare_loss``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .augment import shift_each
from .losses import LOSSES

__all__ = ["supcon", "ContrastiveHead", "TemporalContrastive", "TwoViews", "RandomShift",
           "without_contrastive_head", "HEAD_NAME"]

HEAD_NAME = "contrastive_head"
"""The attribute (and state-dict prefix) under which ``TemporalContrastive.prepare`` attaches the head."""

_FEATURES = "_spikeforge_features"      # the attribute the hook sets on the head's output tensor


def _wide(t: Tensor) -> Tensor:
    """``t`` in float32 at least (half precision under AMP is widened; float64 stays float64)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def supcon(z: Tensor, labels: Tensor, temperature: float = 0.1) -> Tensor:
    """The supervised contrastive loss ``L_out`` of Khosla et al. (2020) over the rows of ``z``.

    With anchors ``a ∈ I = {0 … N−1}``, ``A(a) = I \\ {a}`` and positives ``P(a) = {p ∈ A(a): y_p = y_a}``::

        ℓ(a) = −1/|P(a)| · Σ_{p ∈ P(a)} log( exp(z_a·z_p/τ) / Σ_{k ∈ A(a)} exp(z_a·z_k/τ) )
        L    = mean of ℓ(a) over the anchors with |P(a)| ≥ 1            (0 when there are none)

    The mean over anchors (as SupCon's reference code takes) keeps ``L`` independent of the batch size and
    of ``T``; an anchor without a positive has no term (SupCon's code would divide by zero).

    Args:
        z: ``[N, D]`` representations, normally L2-normalised (then ``z_a·z_p`` is a cosine).
        labels: ``[N]`` integer classes.
        temperature: ``τ > 0``.

    Returns:
        A scalar.
    """
    N = z.shape[0]
    if labels.shape != (N,):
        raise ValueError(f"supcon: labels must be [N] = [{N}], got shape {tuple(labels.shape)}")
    eye = torch.eye(N, dtype=torch.bool, device=z.device)
    pos = (labels[:, None] == labels[None, :]) & ~eye
    n_pos = pos.sum(1)
    has = n_pos > 0
    if not bool(has.any()):
        return z.sum() * 0.0                                  # keeps the graph (and the dtype)
    logits = (z @ z.t() / temperature).masked_fill(eye, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    mean_pos = log_prob.masked_fill(~pos, 0.0).sum(1) / n_pos.clamp(min=1)
    return -mean_pos[has].mean()


class ContrastiveHead(nn.Module):
    """The projection ``z = normalize(W₂ relu(W₁ h + b₁) + b₂)`` of TCL, used only in training.

    ``forward(h [..., D]) -> z [..., dim]``, L2-normalised along the last axis, in float32 at least.
    ``tap`` is the forward hook ``prepare`` puts on the model's ``head``: while autograd records, it attaches
    the head's input (the features) to the head's output.
    """

    def __init__(self, in_features: int, hidden: int, dim: int = 128) -> None:
        super().__init__()
        self.in_features, self.hidden, self.dim = int(in_features), int(hidden), int(dim)
        self.net = nn.Sequential(nn.Linear(self.in_features, self.hidden), nn.ReLU(),
                                 nn.Linear(self.hidden, self.dim))

    def forward(self, h: Tensor) -> Tensor:
        return F.normalize(_wide(self.net(h)), dim=-1)

    def tap(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if torch.is_grad_enabled() and isinstance(output, Tensor) and args and isinstance(args[0], Tensor):
            setattr(output, _FEATURES, (self, args[0]))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, hidden={self.hidden}, dim={self.dim}"


def _features(outputs: Tensor) -> tuple[ContrastiveHead, Tensor] | None:
    found = getattr(outputs, _FEATURES, None)
    return found if isinstance(found, tuple) else None


def _feature_size(model: nn.Module) -> int | None:
    n = getattr(model, "num_features", None)
    if isinstance(n, int) and not isinstance(n, bool) and n > 0:
        return n
    head = getattr(model, "head", None)
    if isinstance(head, nn.Module):
        for m in head.modules():
            if isinstance(m, nn.Linear):
                return int(m.in_features)
    return None


class TemporalContrastive:
    """TCL (``siamese=False``, ``--loss tcl``) or STCL (``siamese=True``, ``--loss stcl``) as a loss.

    ``loss(outputs [T, B, K], targets [B], aux)``::

        CE(mean_t O[t], y) + weight · supcon(z, y)        z: the T·B projected features (V·T·B for STCL)

    with the cross-entropy averaged over the views for STCL (``aux["views"]``, at least two). Without
    features on the outputs and without gradients (evaluation), it is the cross-entropy alone.

    Args:
        temperature: ``τ`` of the contrastive term (0.1).
        weight: ``λ``, its weight next to the cross-entropy (0.5).
        siamese: STCL: contrast every view in ``aux["views"]``.
        hidden: the projection head's hidden width; ``None`` takes the feature size ``D`` (SupCon's head).
        dim: the projection's output size (128, as SupCon).
        augment: STCL's augmentation, ``x_seq -> x_seq``; ``batch_transform`` is two independent draws of it
            (``TwoViews``), the engine's default batch transform for this loss. ``None``: ``RandomShift()``.
    """

    def __init__(self, temperature: float = 0.1, weight: float = 0.5, siamese: bool = False,
                 hidden: int | None = None, dim: int = 128, augment: Callable[[Tensor], Tensor] | None = None) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not weight >= 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        if (hidden is not None and hidden < 1) or dim < 1:
            raise ValueError(f"hidden and dim must be >= 1, got hidden={hidden}, dim={dim}")
        self.temperature, self.weight, self.siamese = float(temperature), float(weight), bool(siamese)
        self.hidden, self.dim = hidden, int(dim)
        self.name = "stcl" if siamese else "tcl"
        self.batch_transform: TwoViews | None = TwoViews(augment or RandomShift()) if siamese else None
        """The views STCL contrasts, for the engine to use when it is given no ``batch_transform``."""

    def __repr__(self) -> str:
        views = f", augment={self.batch_transform.augment!r}" if self.batch_transform is not None else ""
        return (f"TemporalContrastive(temperature={self.temperature}, weight={self.weight}, siamese={self.siamese}, "
                f"hidden={self.hidden}, dim={self.dim}{views})")

    def check(self, model: nn.Module) -> str | None:
        """Why this loss cannot train ``model`` (it needs ``forward_features``, a ``head`` and the feature
        size), or ``None``."""
        if not callable(getattr(model, "forward_features", None)):
            return ("it has no forward_features(x) -> [T, B, D]; the contrastive term needs the features of "
                    "every time step (every zoo model has it)")
        if not isinstance(getattr(model, "head", None), nn.Module):
            return "it has no head module; the features are read at its input (forward(x) = head(forward_features(x)))"
        if _feature_size(model) is None:
            return "its feature size is unknown (set num_features, or give it a Linear head)"
        return None

    def prepare(self, model: nn.Module) -> nn.Module:
        """Attach the projection head (``model.contrastive_head``) and the hook that reads the features, in
        place; a model prepared already keeps its head (a different size raises ``ValueError``)."""
        reason = self.check(model)
        if reason is not None:
            raise ValueError(f"loss {self.name!r} cannot train {type(model).__name__}: {reason}")
        D = _feature_size(model) or 0
        hidden = self.hidden or D
        have = getattr(model, HEAD_NAME, None)
        if isinstance(have, ContrastiveHead):
            if (have.in_features, have.hidden, have.dim) != (D, hidden, self.dim):
                raise ValueError(f"{type(model).__name__} already has a contrastive head of "
                                 f"{have.in_features}→{have.hidden}→{have.dim}, not {D}→{hidden}→{self.dim}")
            return model
        head = ContrastiveHead(D, hidden, self.dim)
        p = next(model.parameters(), None)
        if p is not None:
            head = head.to(device=p.device, dtype=p.dtype if p.is_floating_point() else None)
        tapped = model.head
        assert isinstance(tapped, nn.Module)                  # check() made sure
        model.add_module(HEAD_NAME, head)
        tapped.register_forward_hook(head.tap)
        return model

    def __call__(self, outputs: Tensor, targets: Tensor, aux: dict[str, Any] | None = None) -> Tensor:
        views = list((aux or {}).get("views") or []) if self.siamese else [outputs]
        training = torch.is_grad_enabled() and outputs.requires_grad
        if self.siamese and len(views) < 2:
            if training:
                raise ValueError("loss 'stcl' needs at least two augmented views of each batch (aux['views']); "
                                 "train with batch_transform=loss.batch_transform (fit does by default) or "
                                 "TwoViews(augment), or use loss 'tcl'")
            views = [outputs]
        ce = torch.stack([F.cross_entropy(_wide(o).mean(0), targets) for o in views]).mean()
        found = [f for f in map(_features, views) if f is not None]
        if len(found) < len(views):
            if training:
                raise ValueError(f"loss {self.name!r}: the outputs carry no features; the model was not prepared "
                                 "for it (fit/Trainer call loss.prepare(model)), or its forward does not return "
                                 "head(forward_features(x))")
            return ce
        z = torch.stack([head(h) for head, h in found])                   # [V, T, B, dim]
        V, T, B, D = z.shape
        return ce + self.weight * supcon(z.reshape(V * T * B, D), targets.repeat(V * T), self.temperature)


def without_contrastive_head(state: Mapping[str, Any]) -> dict[str, Any]:
    """``state`` (a model's state dict) without the contrastive head's weights: what loads into the model
    as it was built, for evaluation or export of a run trained with ``tcl``/``stcl``."""
    return {k: v for k, v in state.items() if not k.startswith(HEAD_NAME + ".")}


class RandomShift:
    """Shift each sample by up to ``pixels`` along height and width (zero fill), the same shift at every
    time step: ``[T, B, C, H, W]`` or ``[B, C, H, W]`` in, the same shape out. ``pixels=None`` shifts by up
    to ``max(1, H // 8)`` (4 for 32×32, CIFAR's pad-4 random crop; 1 for 8×8 digits). Draws from torch's
    global generator (saved in checkpoints, so ``--resume`` repeats the draws)."""

    def __init__(self, pixels: int | None = None) -> None:
        if pixels is not None and pixels < 0:
            raise ValueError(f"pixels must be >= 0, got {pixels}")
        self.pixels = pixels

    def __repr__(self) -> str:
        return f"RandomShift(pixels={self.pixels})"

    def __call__(self, x: Tensor) -> Tensor:
        if x.dim() not in (4, 5):
            raise ValueError(f"RandomShift expects [B, C, H, W] or [T, B, C, H, W], got shape {tuple(x.shape)}")
        seq = x if x.dim() == 5 else x.unsqueeze(0)
        out = shift_each(seq, self.pixels)
        return out if x.dim() == 5 else out[0]


class TwoViews:
    """A ``batch_transform`` for STCL: ``views`` independent draws of ``augment`` on the batch,
    ``(x_seq, y) -> [augment(x_seq), …]`` (the first view is the one accuracy is read from)."""

    def __init__(self, augment: Callable[[Tensor], Tensor], views: int = 2) -> None:
        if views < 2:
            raise ValueError(f"STCL contrasts at least two views, got views={views}")
        self.augment, self.views = augment, int(views)

    def __call__(self, x_seq: Tensor, y: Tensor) -> list[Tensor]:
        return [self.augment(x_seq) for _ in range(self.views)]

    def __repr__(self) -> str:
        return f"TwoViews({self.augment!r}, views={self.views})"


LOSSES.register("tcl", TemporalContrastive(),
                summary="CE on the mean output + 0.5 × supervised contrastive loss across time steps (TCL, τ = 0.1)")
LOSSES.register("stcl", TemporalContrastive(siamese=True),
                summary="TCL over two randomly shifted views of each batch (STCL)")

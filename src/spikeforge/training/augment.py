"""Batch augmentation for training (``--augment``): random left-right flips and shifts of each sample, the same
at every time step.

``Augment(flip=True, shift=2)`` is a ``batch_transform`` (``Trainer(batch_transform=...)``, applied to the
time-first training batch only, never to evaluation): each sample is mirrored along its width with probability
1/2 and shifted by a whole number of pixels in ``[-shift, shift]`` along height and width, zero-filled (the
random crop of a ``shift``-padded image). A static input, one step expanded over time (direct encoding), stays
one step expanded, so the first layers still run once for all steps (``layers.TimeFold``). The draws come from
torch's global generator, which checkpoints save: ``--resume`` repeats them.

``Augment.parse("flip,shift:2")`` reads the CLI's form: a comma list of ``flip``, ``shift`` (up to
``max(1, H // 8)`` pixels) and ``shift:N``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["Augment", "shift_each"]


def shift_each(x: Tensor, pixels: int | None) -> Tensor:
    """``x [T, B, C, H, W]`` with each sample shifted by its own draw of ``(dy, dx)`` in ``[-pixels, pixels]``
    (the same at every step; zero fill); ``pixels=None``: ``max(1, H // 8)``."""
    T, B, C, H, W = x.shape
    s = max(1, H // 8) if pixels is None else int(pixels)
    if s == 0 or x.numel() == 0:
        return x
    d = torch.randint(-s, s + 1, (B, 2))
    rows = torch.arange(H) + s + d[:, :1]                          # [B, H] rows of the padded image
    cols = torch.arange(W) + s + d[:, 1:]                          # [B, W]
    padded = F.pad(x, (s, s, s, s)).permute(1, 3, 4, 0, 2)         # [B, H + 2s, W + 2s, T, C]
    out = padded[torch.arange(B)[:, None, None], rows[:, :, None], cols[:, None, :]]     # [B, H, W, T, C]
    return out.permute(3, 0, 4, 1, 2).contiguous()


class Augment:
    """The ``batch_transform`` of ``--augment`` (module docstring): ``(x_seq, y) -> x_seq``."""

    def __init__(self, flip: bool = False, shift: int | None = 0) -> None:
        if shift is not None and (not isinstance(shift, int) or isinstance(shift, bool) or shift < 0):
            raise ValueError(f"shift must be a whole number of pixels >= 0 (or None: H // 8), got {shift!r}")
        self.flip, self.shift = bool(flip), shift

    @classmethod
    def parse(cls, spec: str) -> Augment:
        """``"flip"``, ``"shift"``, ``"shift:N"`` or a comma list of them; a bad part raises ``ValueError``."""
        flip, seen = False, set()
        shift: int | None = 0
        for part in (p.strip() for p in str(spec).split(",")):
            name, _, arg = part.partition(":")
            if name in seen:
                raise ValueError(f"{part!r} is given twice")
            seen.add(name)
            if name == "flip" and not arg:
                flip = True
            elif name == "shift":
                if arg and not arg.isdigit():
                    raise ValueError(f"{part!r}: expected shift:N with N a whole number of pixels")
                shift = int(arg) if arg else None
                if shift == 0:
                    raise ValueError(f"{part!r} shifts nothing: expected shift:N with N >= 1 (or leave it out)")
            else:
                raise ValueError(f"{part!r}: expected flip, shift or shift:N (e.g. flip,shift:2)")
        return cls(flip, shift)

    def __repr__(self) -> str:
        return f"Augment(flip={self.flip}, shift={self.shift})"

    def __call__(self, x_seq: Tensor, y: Tensor | None = None) -> Tensor:
        if x_seq.dim() != 5:
            raise ValueError(f"--augment flips and shifts images: it expects [T, B, C, H, W], got shape "
                             f"{tuple(x_seq.shape)}")
        T = x_seq.shape[0]
        static = T > 1 and x_seq.stride(0) == 0
        x = x_seq[:1] if static else x_seq
        if self.flip:
            mirror = (torch.rand(x.shape[1]) < 0.5).view(1, -1, 1, 1, 1)
            x = torch.where(mirror, x.flip(-1), x)
        x = shift_each(x, self.shift)
        return x.expand(T, *x.shape[1:]) if static else x

"""Spiking self-attention (SSA), the spiking MLP and spiking patch splitting (SPS).

Tokens are channel-major, ``[T, B, D, N]`` (``D`` channels, ``N`` tokens), so the 1×1 projections are
``nn.Conv1d`` layers run through ``TimeFold`` and the norms are ``nn.BatchNorm1d`` over channels, as in
the official Spikformer / Spikingformer code.

Each block has two forms, chosen by ``spike_driven``:

* Spikformer (Zhou et al., ICLR 2023, arXiv 2209.15425): ``conv → BN → SN`` units, the block output
  ends with a neuron and the residual stream is a sum of spikes.
* Spikingformer (Zhou et al., arXiv 2304.11954): ``SN → conv → BN`` units, so every conv sees spikes
  and the stream is real-valued (use with ``SpikeDrivenResidual``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .fold import TimeFold
from .fused_bn import bn_neuron
from .neuron_spec import NeuronSpec, make_neuron

__all__ = ["spiking_attention", "SpikingSelfAttention", "SpikingMLP", "SPS"]


def spiking_attention(q: Tensor, k: Tensor, v: Tensor, num_heads: int, scale: float = 0.125) -> Tensor:
    """``SSA'(Q, K, V) = Q·Kᵀ·V · s`` per head, with no softmax (before the attention neuron).

    With token-major ``Q, K, V ∈ {0,1}^{N×d}`` per head, ``Q Kᵀ V = Q (Kᵀ V)``; the right-hand order costs
    ``O(N d²)`` instead of ``O(N² d)`` and, since every partial sum is an integer count, gives the same
    floats as the left-hand order.

    Args:
        q: spikes ``[T, B, D, N]`` (channel-major), ``D = num_heads · d``.
        k: spikes ``[T, B, D, N]`` (channel-major), ``D = num_heads · d``.
        v: spikes ``[T, B, D, N]`` (channel-major), ``D = num_heads · d``.
        num_heads: number of heads.
        scale: ``s`` (0.125 in both papers' ImageNet/CIFAR code).

    Returns:
        ``[T, B, D, N]``: per head, ``(Q (Kᵀ V))ᵀ · s``, heads concatenated along channels.
    """
    qh, kh, vh = (x.unflatten(2, (num_heads, -1)) for x in (q, k, v))     # [T, B, h, d, N]
    kv = kh @ vh.transpose(-1, -2)                                         # Kᵀ V: [.., d, d]
    out = kv.transpose(-1, -2) @ qh                                        # (Q Kᵀ V)ᵀ = (Kᵀ V)ᵀ Qᵀ
    return (out * scale).flatten(2, 3)


def _proj(c_in: int, c_out: int, bias: bool) -> TimeFold:
    return TimeFold(nn.Conv1d(c_in, c_out, kernel_size=1, bias=bias), nn.BatchNorm1d(c_out))


class SpikingSelfAttention(nn.Module):
    """SSA: ``Q = SN_q(BN(Conv1×1(X_s)))`` (likewise K, V), ``Y = BN(Conv1×1(SN_attn(Q Kᵀ V · s)))``.

    Spikformer (``spike_driven=False``): ``X_s = X`` and the output is ``SN(Y)``.
    Spikingformer (``spike_driven=True``): ``X_s = SN(X)`` and the output is ``Y`` (real-valued).

    Args:
        dim: channels ``D``.
        num_heads: heads; ``D`` must be divisible by it.
        neuron: neuron spec for every neuron of the block (default the papers' LIF).
        scale: ``s``.
        attn_v_threshold: threshold of ``SN_attn`` (0.5 in both papers).
        spike_driven: the Spikingformer form.
        T: the model's steps (for PSN neurons given by name).

    Shapes: ``x [T, B, D, N] -> [T, B, D, N]``.
    """

    def __init__(self, dim: int, num_heads: int = 8, neuron: NeuronSpec = None, scale: float = 0.125,
                 attn_v_threshold: float = 0.5, spike_driven: bool = False, T: int | None = None) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"SpikingSelfAttention: dim={dim} is not divisible by num_heads={num_heads}")
        self.dim, self.num_heads, self.scale, self.spike_driven = dim, num_heads, float(scale), spike_driven
        self.in_sn = make_neuron(neuron, T=T) if spike_driven else nn.Identity()
        self.q, self.k, self.v = (_proj(dim, dim, bias=False) for _ in range(3))
        self.q_sn, self.k_sn, self.v_sn = (make_neuron(neuron, T=T) for _ in range(3))
        self.attn_sn = make_neuron(neuron, T=T, v_threshold=attn_v_threshold)
        self.proj = _proj(dim, dim, bias=True)
        self.out_sn = nn.Identity() if spike_driven else make_neuron(neuron, T=T)

    def forward(self, x: Tensor) -> Tensor:
        xs = self.in_sn(x)
        q, k, v = bn_neuron(self.q, self.q_sn, xs), bn_neuron(self.k, self.k_sn, xs), bn_neuron(self.v, self.v_sn, xs)
        attn = self.attn_sn(spiking_attention(q, k, v, self.num_heads, self.scale))
        return self.proj(attn) if self.spike_driven else bn_neuron(self.proj, self.out_sn, attn)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_heads={self.num_heads}, scale={self.scale}, spike_driven={self.spike_driven}"


class SpikingMLP(nn.Module):
    """The token MLP: ``SN(BN(Conv1×1(SN(BN(Conv1×1(X))))))`` (Spikformer) or
    ``BN(Conv1×1(SN(BN(Conv1×1(SN(X))))))`` (Spikingformer, ``spike_driven=True``).

    Args:
        dim: channels ``D``; hidden: ``D·mlp_ratio`` in the papers.
        neuron: as ``SpikingSelfAttention``.
        spike_driven: as ``SpikingSelfAttention``.
        T: as ``SpikingSelfAttention``.

    Shapes: ``x [T, B, D, N] -> [T, B, D, N]``.
    """

    def __init__(self, dim: int, hidden: int, neuron: NeuronSpec = None, spike_driven: bool = False,
                 T: int | None = None) -> None:
        super().__init__()
        self.spike_driven = spike_driven
        self.fc1, self.fc2 = _proj(dim, hidden, bias=True), _proj(hidden, dim, bias=True)
        self.sn1, self.sn2 = make_neuron(neuron, T=T), make_neuron(neuron, T=T)

    def forward(self, x: Tensor) -> Tensor:
        if self.spike_driven:
            return self.fc2(bn_neuron(self.fc1, self.sn2, self.sn1(x)))
        return bn_neuron(self.fc2, self.sn2, bn_neuron(self.fc1, self.sn1, x))


class SPS(nn.Module):
    """Spiking patch splitting: five 3×3 conv-BN units ``C → D/8 → D/4 → D/2 → D → D`` with max pooling,
    turning ``[T, B, C, H, W]`` into tokens ``[T, B, D, N]``.

    Spikformer (``spike_driven=False``): units 0–3 are ``SN(BN(Conv(·)))``; unit 4 is the relative
    position embedding ``RPE = SN(BN(Conv(x)))`` and the output is ``x + RPE`` (a sum of spikes).
    Spikingformer's spiking tokenizer (``spike_driven=True``): unit 0 is ``BN(Conv(x))`` on the input,
    units 1–4 are ``BN(Conv(SN(·)))`` and the output is the last BN (real-valued).

    Args:
        in_channels: ``C``.
        embed_dim: ``D`` (divisible by 8).
        neuron: neuron spec.
        pool_before: units ``i ∈ 1..4`` preceded by ``MaxPool2d(3, 2, 1)``: ``(3, 4)`` for CIFAR
            (``H/4``), ``(1, 2, 3, 4)`` for ImageNet and DVS (``H/16``).
        spike_driven: the Spikingformer form.
        T: the model's steps (for PSN neurons given by name).

    Shapes: ``x [T, B, C, H, W] -> [T, B, D, (H/2^p)·(W/2^p)]``, ``p = len(pool_before)``.
    """

    def __init__(self, in_channels: int, embed_dim: int, neuron: NeuronSpec = None,
                 pool_before: Sequence[int] = (3, 4), spike_driven: bool = False, T: int | None = None) -> None:
        super().__init__()
        if embed_dim % 8:
            raise ValueError(f"SPS: embed_dim={embed_dim} must be divisible by 8")
        if not set(pool_before) <= {1, 2, 3, 4}:
            raise ValueError(f"SPS: pool_before must be a subset of (1, 2, 3, 4), got {tuple(pool_before)}")
        self.spike_driven, self.pool_before = spike_driven, tuple(sorted(pool_before))
        chans = [in_channels, embed_dim // 8, embed_dim // 4, embed_dim // 2, embed_dim, embed_dim]
        self.units = nn.ModuleList(
            TimeFold(nn.Conv2d(chans[i], chans[i + 1], 3, padding=1, bias=False), nn.BatchNorm2d(chans[i + 1]))
            for i in range(5))
        self.neurons = nn.ModuleList(make_neuron(neuron, T=T) for _ in range(5 if not spike_driven else 4))
        self.pools = nn.ModuleDict({str(i): TimeFold(nn.MaxPool2d(3, 2, 1)) for i in self.pool_before})

    def _pool(self, i: int, x: Tensor) -> Tensor:
        return self.pools[str(i)](x) if str(i) in self.pools else x

    def forward(self, x: Tensor) -> Tensor:
        if self.spike_driven:
            x = self.units[0](x)
            for i in range(1, 5):
                x = self.units[i](self._pool(i, self.neurons[i - 1](x)))
        else:
            for i in range(4):
                x = self._pool(i + 1, bn_neuron(self.units[i], self.neurons[i], x))
            x = x + bn_neuron(self.units[4], self.neurons[4], x)
        return x.flatten(3)

    def extra_repr(self) -> str:
        return f"pool_before={self.pool_before}, spike_driven={self.spike_driven}"

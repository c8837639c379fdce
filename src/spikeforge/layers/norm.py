"""Normalisation for spiking networks: tdBN, BNTT, NeuNorm and L1-norm BN.

* ``TDBatchNorm`` and ``L1BatchNorm`` are stateless over time: put them in a ``TimeFold`` next to the
  conv, so their statistics run over time and batch together (``[T·B, C, ...]``).
* ``BNTT`` and ``NeuNorm`` see the time axis themselves (``[T, B, C, ...]``).

All four are leaves for ``spikeforge.models.fx`` (``fx_leaf = True``), like ``torch.nn`` norms.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["TDBatchNorm", "BNTT", "NeuNorm", "L1BatchNorm"]


def _ema_factor(bn: nn.Module) -> float:
    """The running-statistics factor of ``nn.BatchNorm`` (cumulative average when ``momentum=None``)."""
    bn.num_batches_tracked.add_(1)  # type: ignore[operator]
    return 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else float(bn.momentum)  # type: ignore[arg-type]


class TDBatchNorm(_BatchNorm):
    """Threshold-dependent batch norm (Zheng et al., AAAI 2021, "Going deeper with directly-trained larger
    spiking neural networks", arXiv 2011.05280).

    ``y = λ · α·V_th·(x − μ)/sqrt(σ² + ε) + β``, with ``μ, σ²`` per channel over ``[T·B, *spatial]`` (hence
    use inside a ``TimeFold``), ``λ, β`` learnable (``weight``, ``bias``, initialised 1 and 0) and ``α·V_th``
    a fixed factor: ``α = 1`` in general, ``1/sqrt(2)`` for the BN before a residual sum. SpikingJelly
    instead initialises ``weight = α·V_th``; the forward values agree, the gradient scale of ``λ`` differs.

    Args:
        num_features: channels ``C``.
        alpha: the structural factor ``α``.
        v_threshold: the threshold ``V_th`` of the neurons this BN feeds.
        eps: as ``nn.BatchNorm2d``.
        momentum: as ``nn.BatchNorm2d``.
        affine: as ``nn.BatchNorm2d``.
        track_running_stats: as ``nn.BatchNorm2d``.

    Shapes: ``[N, C, *]`` (any rank ≥ 2) ``-> [N, C, *]``.
    """

    fx_leaf = True

    def __init__(self, num_features: int, alpha: float = 1.0, v_threshold: float = 1.0, eps: float = 1e-5,
                 momentum: float | None = 0.1, affine: bool = True, track_running_stats: bool = True) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        self.alpha, self.v_threshold = float(alpha), float(v_threshold)

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"TDBatchNorm expects [N, C, ...], got shape {tuple(input.shape)}")

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        factor = 0.0
        if self.training and self.track_running_stats:
            factor = _ema_factor(self)
        use_batch = self.training or self.running_mean is None
        scale = self.alpha * self.v_threshold
        weight = self.weight * scale if self.affine else None
        y = F.batch_norm(x, self.running_mean if not self.training or self.track_running_stats else None,
                         self.running_var if not self.training or self.track_running_stats else None,
                         weight, self.bias, use_batch, factor, self.eps)
        return y if self.affine else y * scale

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, alpha={self.alpha}, v_threshold={self.v_threshold}"


class BNTT(nn.Module):
    """Batch norm through time (Kim & Panda, Front. Neurosci. 2021, arXiv 2010.01729): separate statistics
    and scale for every step.

    ``y[t] = γ_t ⊙ (x[t] − μ_t)/sqrt(σ_t² + ε) (+ β_t)``, with ``μ_t, σ_t²`` per channel over the batch and
    spatial positions of step ``t`` only. The paper has no shift (``bias=False``). Computed as one batch
    norm over ``T·C`` channels (equal to ``T`` separate ``BatchNorm``s; a test pins it).

    Args:
        num_features: channels ``C``.
        T: number of steps (fixed: every step owns its parameters).
        eps: as ``nn.BatchNorm2d``.
        momentum: as ``nn.BatchNorm2d``.
        bias: learn a shift ``β_t`` too.

    Shapes: ``x_seq [T, B, C, *] -> [T, B, C, *]``.
    """

    fx_leaf = True
    running_mean: Tensor
    running_var: Tensor

    def __init__(self, num_features: int, T: int, eps: float = 1e-5, momentum: float = 0.1,
                 bias: bool = False) -> None:
        super().__init__()
        self.num_features, self.T, self.eps, self.momentum = int(num_features), int(T), float(eps), float(momentum)
        self.weight = nn.Parameter(torch.ones(self.T, self.num_features))
        self.bias = nn.Parameter(torch.zeros(self.T, self.num_features)) if bias else None
        self.register_buffer("running_mean", torch.zeros(self.T, self.num_features))
        self.register_buffer("running_var", torch.ones(self.T, self.num_features))

    def forward(self, x_seq: Tensor) -> Tensor:
        if x_seq.dim() < 3 or x_seq.shape[0] != self.T or x_seq.shape[2] != self.num_features:
            raise ValueError(f"BNTT(num_features={self.num_features}, T={self.T}) expects [T, B, C, ...] with "
                             f"T={self.T}, C={self.num_features}; got shape {tuple(x_seq.shape)}")
        T, B = x_seq.shape[0], x_seq.shape[1]
        folded = x_seq.transpose(0, 1).reshape(B, T * self.num_features, -1)   # channels (t, c)
        y = F.batch_norm(folded, self.running_mean.view(-1), self.running_var.view(-1), self.weight.view(-1),
                         None if self.bias is None else self.bias.view(-1), self.training, self.momentum, self.eps)
        return y.reshape(x_seq.transpose(0, 1).shape).transpose(0, 1)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, T={self.T}, eps={self.eps}, momentum={self.momentum}, "
                f"bias={self.bias is not None}")


class NeuNorm(nn.Module):
    """Neuron normalisation (Wu et al., AAAI 2019, "Direct training for spiking neural networks: faster,
    larger, better", arXiv 1809.05793), in SpikingJelly's formulation.

    An auxiliary neuron per position ``(h, w)`` integrates the channel sum of the presynaptic spikes and
    inhibits the next layer's input:

        ``a[t] = k·a[t−1] + (1 − k)/F² · Σ_f o[t, f]``,    ``y[t] = o[t] − W ⊙ a[t]``

    with ``F`` the number of channels, ``a[−1] = 0`` and ``W [F, H, W]`` learnable (or ``[1, H, W]`` when
    shared across channels). Place it after a spiking layer: ``Conv → BN → LIF → NeuNorm → Conv``.
    The paper's coefficient is written ``v/F²`` with ``k + vF = 1``; SpikingJelly (and this layer, checked
    against it) uses ``(1 − k)/F²``.

    Args:
        in_channels: ``F``.
        height: the input's height.
        width: the input's width.
        k: decay of the auxiliary neuron (``k_τ2``).
        shared_across_channels: one ``W`` for all channels.

    Shapes: ``o_seq [T, B, F, H, W] -> [T, B, F, H, W]``.
    """

    fx_leaf = True

    def __init__(self, in_channels: int, height: int, width: int, k: float = 0.9,
                 shared_across_channels: bool = False) -> None:
        super().__init__()
        self.k = float(k)
        self.input_scale = (1.0 - self.k) / in_channels ** 2
        self.weight = nn.Parameter(torch.empty(1 if shared_across_channels else in_channels, height, width))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, o_seq: Tensor) -> Tensor:
        if o_seq.dim() != 5:
            raise ValueError(f"NeuNorm expects [T, B, C, H, W], got shape {tuple(o_seq.shape)}")
        drive = o_seq.sum(dim=2, keepdim=True) * self.input_scale     # [T, B, 1, H, W]
        a = torch.zeros_like(drive[0])
        aux = []
        for d in drive:                                               # a cheap [B, 1, H, W] recursion
            a = self.k * a + d
            aux.append(a)
        return o_seq - self.weight * torch.stack(aux)

    def extra_repr(self) -> str:
        return f"weight={tuple(self.weight.shape)}, k={self.k}"


class L1BatchNorm(nn.Module):
    """L1-norm batch norm (Wu et al., IEEE TNNLS 2019, arXiv 1802.09769): the mean absolute deviation in
    place of the standard deviation, no squares or square roots.

    ``y = γ ⊙ (x − μ)/(c·mean|x − μ| + ε) + β`` with ``c = sqrt(π/2)`` (so ``c·E|x − μ| = σ`` for Gaussian
    ``x``), statistics per channel over ``[N, *spatial]`` and running averages for eval. Use inside a
    ``TimeFold`` (statistics over time and batch) or pass as a model's ``norm_layer``.

    Args:
        num_features: channels ``C``.
        eps: as ``nn.BatchNorm2d``.
        momentum: as ``nn.BatchNorm2d``.
        affine: learn ``γ, β``.

    Shapes: ``[N, C, *] -> [N, C, *]``.
    """

    fx_leaf = True
    c = math.sqrt(math.pi / 2.0)
    running_mean: Tensor
    running_mad: Tensor

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), float(momentum)
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_features)) if affine else None
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_mad", torch.full((num_features,), 1.0 / self.c))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2 or x.shape[1] != self.num_features:
            raise ValueError(f"L1BatchNorm({self.num_features}) expects [N, {self.num_features}, ...], "
                             f"got shape {tuple(x.shape)}")
        dims = [0, *range(2, x.dim())]
        bshape = [1, self.num_features] + [1] * (x.dim() - 2)
        if self.training:
            mu = x.mean(dims)
            centred = x - mu.view(bshape)
            mad = centred.abs().mean(dims)
            with torch.no_grad():
                self.running_mean.lerp_(mu, self.momentum)
                self.running_mad.lerp_(mad, self.momentum)
        else:
            centred = x - self.running_mean.view(bshape)
            mad = self.running_mad
        y = centred / (self.c * mad + self.eps).view(bshape)
        if self.weight is not None and self.bias is not None:
            y = y * self.weight.view(bshape) + self.bias.view(bshape)
        return y

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.weight is not None}"

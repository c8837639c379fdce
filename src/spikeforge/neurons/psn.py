"""Parallel spiking neurons (Fang et al., NeurIPS 2023, arXiv 2304.12760): no reset, no loop over time.

Without a reset, the charge of a linear neuron is a linear map of the whole input sequence, so all T
steps are one matrix product ``H = W·X + B`` (``X`` flattened to ``[T, N]``) and ``S = Θ(H)``; the
threshold is folded into ``B`` (initialised to −1, i.e. ``V_th = 1``).

* ``PSN``: a full learnable ``W ∈ R^{T×T}`` (uses future inputs; multi-step only).
* ``MaskedPSN``: ``W ⊙ M_k`` with ``M_k[i, j] = 1 iff i − k < j <= i`` (causal, the last ``k`` inputs),
  softened during training by ``λ``: ``λ·M_k + (1 − λ)·J``. At ``λ = 1`` it can also run step by step.
* ``SlidingPSN``: one shared kernel ``w ∈ R^k``, ``H[t] = Σ_i w_i·X[t − k + 1 + i] + b`` — a causal
  depthwise conv over time; works for any T. ``algorithm="gemm"`` (a Toeplitz T×T matrix) or ``"conv"``.

State for step-by-step use is explicit: ``PSNWindow(t, window)`` holds the step index and the last
``k`` inputs ``[k, B, ...]``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..surrogate import ATan, Surrogate, get_surrogate

__all__ = ["PSN", "MaskedPSN", "SlidingPSN", "PSNWindow", "band_mask", "toeplitz_weight"]


class PSNWindow(NamedTuple):
    """Step-mode state: ``t`` (steps done so far) and the last k inputs ``window [k, B, ...]``."""

    t: int
    window: Tensor


def band_mask(T: int, k: int, device: torch.device | None = None) -> Tensor:
    """``M[i, j] = 1`` iff ``i − k < j <= i``: row ``i`` sees inputs ``i−k+1 .. i``."""
    i = torch.arange(T, device=device).unsqueeze(1)
    j = torch.arange(T, device=device).unsqueeze(0)
    return ((j <= i) & (j > i - k)).float()


def toeplitz_weight(w: Tensor, T: int) -> Tensor:
    """The ``T×T`` matrix of a causal kernel ``w [k]``: ``M[i, j] = w[k − 1 − (i − j)]`` for ``0 <= i−j < k``."""
    k = w.shape[0]
    lag = torch.arange(T, device=w.device).unsqueeze(1) - torch.arange(T, device=w.device).unsqueeze(0)
    inside = (lag >= 0) & (lag < k)
    idx = (k - 1 - lag).clamp(0, k - 1)
    return torch.where(inside, w[idx], torch.zeros((), dtype=w.dtype, device=w.device))


def _check_seq(name: str, x_seq: Tensor, T: int | None = None) -> None:
    if x_seq.dim() < 2:
        raise ValueError(f"{name} expects [T, B, ...] with at least 2 dims, got {tuple(x_seq.shape)}")
    if T is not None and x_seq.shape[0] != T:
        raise ValueError(f"{name} was built for T={T} steps, got an input with T={x_seq.shape[0]} "
                         f"(shape {tuple(x_seq.shape)})")


class PSN(nn.Module):
    """Parallel spiking neuron: ``S = Θ(W·X + B)`` over all ``T`` steps at once.

    Args:
        T: number of time steps (fixed; ``W`` is ``T×T``).
        surrogate: spike surrogate (default ``ATan(alpha=2)``, as the paper).

    Shapes: ``x_seq [T, B, ...] -> spikes [T, B, ...]``.
    """

    def __init__(self, T: int, surrogate: Surrogate | str = ATan()) -> None:
        super().__init__()
        self.T = int(T)
        self.surrogate = get_surrogate(surrogate)
        self.weight = nn.Parameter(torch.empty(self.T, self.T))
        self.bias = nn.Parameter(torch.full((self.T, 1), -1.0))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def effective_weight(self) -> Tensor:
        return self.weight

    def forward(self, x_seq: Tensor) -> Tensor:
        _check_seq(type(self).__name__, x_seq, self.T)
        h = torch.addmm(self.bias, self.effective_weight(), x_seq.flatten(1))
        return self.surrogate(h).view(x_seq.shape)

    def extra_repr(self) -> str:
        return f"T={self.T}, surrogate={self.surrogate}"


class MaskedPSN(PSN):
    """Masked PSN of order ``k``: ``H = (W ⊙ (λ·M_k + (1 − λ)·J))·X + B``.

    Args:
        k: how many of the latest inputs each step sees.
        T: number of time steps.
        lambda_init: initial ``λ`` (set ``module.lambda_`` during training; the paper ramps it to 1
            over the first 1/8 of training).
        surrogate: as ``PSN``.
    """

    mask: Tensor
    _lambda: Tensor

    def __init__(self, k: int, T: int, lambda_init: float = 0.0, surrogate: Surrogate | str = ATan()) -> None:
        super().__init__(T, surrogate)
        if not 1 <= int(k) <= int(T):
            raise ValueError(f"MaskedPSN needs 1 <= k <= T, got k={k}, T={T}")
        self.k = int(k)
        self.register_buffer("mask", band_mask(self.T, self.k))
        self.register_buffer("_lambda", torch.tensor(float(lambda_init)))

    @property
    def lambda_(self) -> float:
        return float(self._lambda)

    @lambda_.setter
    def lambda_(self, value: float) -> None:
        self._lambda.fill_(float(value))

    def effective_weight(self) -> Tensor:
        if self.lambda_ >= 1.0:
            return self.weight * self.mask
        lam = self._lambda
        return self.weight * (lam * self.mask + (1.0 - lam))

    def init_state(self, x: Tensor) -> PSNWindow:
        return PSNWindow(0, x.new_zeros((self.k, *x.shape)))

    def step(self, x: Tensor, state: PSNWindow | None = None) -> tuple[Tensor, PSNWindow]:
        """One step ``x [B, ...]`` with the window of the last ``k`` inputs; needs ``λ = 1`` and ``t < T``."""
        if self.lambda_ < 1.0:
            raise RuntimeError(f"MaskedPSN can only run step by step once lambda_ = 1 (it is {self.lambda_}): "
                               "before that every step depends on future inputs")
        state = self.init_state(x) if state is None else state
        t = state.t
        if t >= self.T:
            raise RuntimeError(f"MaskedPSN(T={self.T}) has already run {t} steps")
        window = torch.cat([state.window[1:], x.unsqueeze(0)])
        # row t of the masked weight, aligned with the window: columns t-k+1 .. t (zeros before step 0)
        cols = torch.arange(t - self.k + 1, t + 1, device=x.device)
        row = torch.where(cols >= 0, self.weight[t, cols.clamp(min=0)], torch.zeros((), device=x.device))
        h = torch.tensordot(row.to(x.dtype), window, dims=1) + self.bias[t, 0]
        return self.surrogate(h), PSNWindow(t + 1, window)

    def extra_repr(self) -> str:
        return f"k={self.k}, lambda_={self.lambda_}, " + super().extra_repr()


class SlidingPSN(nn.Module):
    """Sliding PSN of order ``k``: ``H[t] = Σ_{i<k} w_i·X[t − k + 1 + i] + b`` (zero before step 0).

    Args:
        k: kernel length.
        exp_init: initialise ``w = (…, 1/4, 1/2, 1)`` (the newest input weighted 1); otherwise Kaiming.
        surrogate: as ``PSN``.
        algorithm: how the charge is computed: ``"gemm"`` (a Toeplitz matrix, faster for small T) or
            ``"conv"`` (conv1d over time). The same numbers either way; not a scan ``backend`` (the PSN family
            runs no scan).
    """

    def __init__(self, k: int, exp_init: bool = True, surrogate: Surrogate | str = ATan(),
                 algorithm: str = "gemm") -> None:
        super().__init__()
        if int(k) < 1:
            raise ValueError(f"SlidingPSN needs k >= 1, got {k}")
        if algorithm not in ("gemm", "conv"):
            raise ValueError(f"SlidingPSN algorithm must be 'gemm' or 'conv', got {algorithm!r}")
        self.k, self.algorithm = int(k), algorithm
        self.surrogate = get_surrogate(surrogate)
        if exp_init:
            w = 0.5 ** torch.arange(self.k - 1, -1, -1, dtype=torch.float32)
        else:
            w = torch.empty(1, self.k)
            nn.init.kaiming_uniform_(w, a=math.sqrt(5))
            w = w[0]
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(torch.tensor(-1.0))

    def charge(self, x_seq: Tensor, algorithm: str | None = None) -> Tensor:
        """``H [T, B, ...]`` before the spike, by the GEMM or the convolution form (default: ``self.algorithm``)."""
        _check_seq(type(self).__name__, x_seq)
        T = x_seq.shape[0]
        flat = x_seq.flatten(1)
        if (algorithm or self.algorithm) == "gemm":
            h = torch.addmm(self.bias.expand(T, 1), toeplitz_weight(self.weight, T).to(flat.dtype), flat)
        else:
            seq = F.pad(flat.t().unsqueeze(1), (self.k - 1, 0))          # [N, 1, k-1+T]
            h = F.conv1d(seq, self.weight.view(1, 1, self.k).to(flat.dtype)).squeeze(1).t() + self.bias
        return h.reshape(x_seq.shape)

    def forward(self, x_seq: Tensor) -> Tensor:
        return self.surrogate(self.charge(x_seq))

    def init_state(self, x: Tensor) -> PSNWindow:
        return PSNWindow(0, x.new_zeros((self.k, *x.shape)))

    def step(self, x: Tensor, state: PSNWindow | None = None) -> tuple[Tensor, PSNWindow]:
        """One step ``x [B, ...]``; the state is the window of the last ``k`` inputs."""
        state = self.init_state(x) if state is None else state
        window = torch.cat([state.window[1:], x.unsqueeze(0)])
        h = torch.tensordot(self.weight.to(x.dtype), window, dims=1) + self.bias
        return self.surrogate(h), PSNWindow(state.t + 1, window)

    def extra_repr(self) -> str:
        return f"k={self.k}, algorithm={self.algorithm!r}, surrogate={self.surrogate}"

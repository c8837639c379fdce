"""Exact spike times of a current-based LIF layer, event-driven (Göltz et al. 2021, "Fast and energy-efficient
neuromorphic deep learning with first-spike times", Nat. Mach. Intell.; official code
``JulianGoeltz/fastAndDeep``, ``src/utils_spiketime.py``), and the multi-spike relaxation of Bacho & Chu,
"Exploring trade-offs in spiking neural networks" (Neural Computation 35(10), 2023).

**The neuron.** No time steps: inputs are spike *times* and so are outputs. With membrane capacitance
``C_m = g_L·τ_m`` (the official code asserts ``g_L = τ_s/τ_m``, i.e. ``C_m = τ_s``)::

    C_m du/dt = g_L (E_L − u) + I(t),     τ_s dI/dt = −I,     I jumps by w_i at each input spike t_i,

``u(0) = E_L``. A spike is emitted when ``u`` reaches ``ϑ`` (``u ≥ ϑ``, the project's convention; a tangent
touch counts) and ``u`` is reset to ``E_L``; the synaptic current is not reset. Because the reset happens
exactly at ``u = ϑ``, it equals subtracting ``ϑ − E_L``, so with ``ϑ′ = (ϑ − E_L)·g_L``::

    F(t) := g_L (u(t) − E_L) − ϑ′ = Σ_{t_i ≤ t} w_i κ(t − t_i) − ϑ′ Σ_{t_k < t} e^{−(t − t_k)/τ_m} − ϑ′,

    κ(s) = e^{−s/τ_m} − e^{−s/τ_s}   (τ_m = 2τ_s),       κ(s) = (s/τ_s) e^{−s/τ_s}   (τ_m = τ_s),

and the spikes ``t_k`` are the successive upward zero crossings of ``F``.

**Closed forms.** Sort the inputs; while ``t ∈ [t_(j), t_(j+1))`` the causal set is the first ``j`` sorted
inputs, and its prefix sums ``a₁ = Σ w_i e^{t_i/τ_s}``, ``a₂ = Σ w_i e^{t_i/τ_m}``, ``b = Σ w_i (t_i/τ_s) e^{t_i/τ_s}``
give, with ``R = Σ_{k′<k} e^{t_k′/τ_m}`` the earlier spikes (the reset)::

    τ_m = 2τ_s:  t = 2τ_s · ln( 2a₁ / (a₂′ + √(a₂′² − 4a₁ϑ′)) ),          a₂′ = a₂ − ϑ′R
    τ_m = τ_s:   t = τ_s · ( b′/a₁ − W₀(−(ϑ′/a₁) e^{b′/a₁}) ),          b′ = b + ϑ′R

(``W₀`` the principal branch of Lambert's W, ``lambertw``). These are the official formulas (``factor_a1``,
``factor_a2``, ``factor_c = ϑ′``, ``factor_b``), plus the reset terms. The ``+`` root is always the upward
crossing; no real root (``a₂′² < 4a₁ϑ′``, or ``W``'s argument below ``−1/e``), ``a₁ ≤ 0`` or a root outside
``[t_(j), t_(j+1))`` (or not after the previous spike) means no spike from that causal set, and the earliest
valid candidate over ``j`` is the spike. Prefix sums over the time-sorted inputs keep the memory at
``O(B·N_in·N_out)`` (the official code builds an ``N_in × N_in`` mask); all exponents are taken relative to
each sample's first input time, so they stay bounded by the spread of the inputs.

**Gradient** (implicit function theorem, for every spike): ``∂t_k/∂θ = −(∂F/∂θ)/(∂F/∂t)`` at ``F(t_k) = 0``
for ``θ`` the weights, the bias and the input times. For ``k > 1`` ``F`` contains the reset terms of the
earlier spikes, so ``∂t_k/∂θ`` **includes** the dependence through the resets at ``t_1 … t_{k−1}``
(``∂F/∂t_k′ = −ϑ′ e^{−(t − t_k′)/τ_m}/τ_m``). A custom ``autograd.Function`` applies, per spike,
``∂t_k/∂w_i = −κ(t_k − t_i)/F′``, ``∂t_k/∂t_i = w_i κ′(t_k − t_i)/F′`` (causal inputs only) and
``∂t_k/∂t_j = (ϑ′/τ_m) e^{−(t_k − t_j)/τ_m}/F′`` (``j < k``), in reverse spike order so each adjoint has
what the later spikes owe it through their resets; it saves only the inputs and ``[B, N_out, K]`` tensors
and recomputes the kernels in backward. **Grazing crossings**: where ``F′(t_k)·τ_s/ϑ′ < ε`` the derivative diverges;
that spike's gradient is set to zero (to the weights, the inputs and through its reset) and counted
(``ExactLIF.clipped``). The official code instead zeroes the weight gradient of an output spike when
``max_i |∂L/∂w_i|`` exceeds ``max_dw_norm`` (0.2) and leaves the propagated error as it is.
A neuron that never fires returns ``+inf`` and passes no gradient (no NaN).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["CubaParams", "lambertw", "exact_spike_times", "ExactLIF", "check_spike_times"]


@dataclass(frozen=True)
class CubaParams:
    """Constants of the current-based LIF neuron (module docstring), in any one time unit.

    Args:
        tau_syn: ``τ_s``, the synaptic time constant.
        tau_ratio: ``τ_m/τ_s``: 2 (closed form with a square root) or 1 (Lambert W).
        threshold: ``ϑ``.
        leak: ``E_L``, the resting and reset potential (``ϑ > E_L``).
        g_leak: ``g_L``; ``None`` takes ``τ_s/τ_m`` as the official code requires (``C_m = τ_s``).
    """

    tau_syn: float = 1.0
    tau_ratio: int = 2
    threshold: float = 1.0
    leak: float = 0.0
    g_leak: float | None = None

    def __post_init__(self) -> None:
        if self.tau_ratio not in (1, 2):
            raise ValueError(f"tau_ratio (τ_m/τ_s) must be 1 or 2 (the closed forms), got {self.tau_ratio}")
        if not self.tau_syn > 0:
            raise ValueError(f"tau_syn must be > 0, got {self.tau_syn}")
        if not self.threshold > self.leak:
            raise ValueError(f"threshold must be above leak (E_L), got threshold={self.threshold}, leak={self.leak}")
        if self.g_leak is not None and not self.g_leak > 0:
            raise ValueError(f"g_leak must be > 0, got {self.g_leak}")

    @property
    def tau_mem(self) -> float:
        """``τ_m = tau_ratio·τ_s``."""
        return self.tau_ratio * self.tau_syn

    @property
    def theta(self) -> float:
        """``ϑ′ = (ϑ − E_L)·g_L``, the threshold of ``F``."""
        g = self.tau_syn / self.tau_mem if self.g_leak is None else self.g_leak
        return (self.threshold - self.leak) * g

    def kernel(self, s: Tensor) -> tuple[Tensor, Tensor]:
        """``(κ(s), κ′(s))`` for ``s ≥ 0`` (the PSP of a unit weight, times ``g_L``)."""
        ts, tm = self.tau_syn, self.tau_mem
        if self.tau_ratio == 2:
            em, es = torch.exp(-s / tm), torch.exp(-s / ts)
            return em - es, es / ts - em / tm
        e = torch.exp(-s / ts)
        return (s / ts) * e, (1 - s / ts) * e / ts


def lambertw(z: Tensor, iters: int = 6) -> Tensor:
    """Lambert's W, principal branch ``W₀`` (``W e^W = z``, ``W ≥ −1``), for real ``z ≥ −1/e``; NaN below.

    Initial guess: the branch-point series ``−1 + p − p²/3 + 11p³/72 − 43p⁴/540`` (``p = √(2(ez + 1))``) for
    ``z < −0.25``, Winitzki's ``ln(1+z)(1 − ln(1 + ln(1+z))/(2 + ln(1+z)))`` above; then Halley's iteration on
    ``f(w) = w − z e^{−w}`` (no overflow for large ``w``). Float64-accurate (checked against scipy), differentiable
    through the iterations only approximately — the spike times do not differentiate through it.

    Args:
        z: any shape.
        iters: Halley iterations.

    Returns:
        ``W₀(z)``, the shape of ``z``.
    """
    lo = -math.exp(-1.0)
    bad = ~(z >= lo * (1 + 4 * torch.finfo(z.dtype).eps))        # a rounding below −1/e is the branch point
    zc = torch.where(bad, torch.zeros_like(z), torch.clamp(z, min=lo))
    p = torch.sqrt(torch.clamp(2 * (math.e * zc + 1), min=0))
    near = -1 + p - p * p / 3 + 11 / 72 * p ** 3 - 43 / 540 * p ** 4
    l1 = torch.log1p(torch.clamp(zc, min=-0.25))
    far = l1 * (1 - torch.log1p(l1) / (2 + l1))
    w = torch.where(zc < -0.25, near, far)
    for _ in range(iters):
        ze = zc * torch.exp(-w)
        f, f1 = w - ze, 1 + ze                      # f′ = 1 + z e^{−w}, f″ = −z e^{−w}
        den = 2 * f1 * f1 + f * ze
        step = torch.where(den != 0, 2 * f * f1 / torch.where(den != 0, den, torch.ones_like(den)),
                           torch.zeros_like(den))
        w = torch.maximum(w - step, torch.full_like(w, -1.0))
    return torch.where(bad, torch.full_like(w, math.nan), w)


def check_spike_times(times: Tensor, what: str = "spike times") -> None:
    """Raise ``ValueError`` naming the first value and its index when ``times`` holds a NaN or a negative
    time (``+inf`` means "no spike" and is fine)."""
    bad = torch.isnan(times) | (times < 0)
    if bool(bad.any()):
        idx = tuple(int(i) for i in torch.nonzero(bad)[0])
        raise ValueError(f"{what} must be >= 0 or +inf (no spike); got {float(times[idx])} at index {list(idx)} "
                         f"of a tensor of shape {tuple(times.shape)}")


def _flatten_inputs(times: Tensor, weight: Tensor, bias: Tensor | None,
                    bias_time: float) -> tuple[Tensor, Tensor]:
    """``[B, N_in(, K_in)]`` times and ``[N_out, N_in]`` weights → ``[B, M]`` times and ``[M, N_out]`` weights
    (each input's spikes share its weight; the bias is one more input, spiking at ``bias_time``)."""
    if times.dim() == 3:
        k_in = times.shape[2]
        times = times.reshape(times.shape[0], -1)
        weight = weight.repeat_interleave(k_in, dim=1)
    w = weight.t()
    if bias is not None:
        times = torch.cat([times, times.new_full((times.shape[0], 1), bias_time)], 1)
        w = torch.cat([w, bias.view(1, -1)], 0)
    return times, w


@torch.no_grad()
def _solve(t: Tensor, w: Tensor, p: CubaParams, max_spikes: int) -> Tensor:
    """The exact spike times ``[B, N_out, K]`` (``+inf``: none) of inputs ``t [B, M]`` through ``w [M, N_out]``."""
    B, M = t.shape
    t_sorted, order = torch.sort(t, dim=1, stable=True)
    fin = torch.isfinite(t_sorted)
    ref = torch.where(fin[:, :1], t_sorted[:, :1], torch.zeros_like(t_sorted[:, :1]))      # [B, 1]
    d = torch.where(fin, t_sorted - ref, torch.zeros_like(t_sorted))
    ws = torch.where(fin[..., None], w[order], torch.zeros((), dtype=w.dtype, device=w.device))  # [B, M, N]
    ts, tm, th = p.tau_syn, p.tau_mem, p.theta
    es = torch.exp(d / ts)[..., None]
    a1 = torch.cumsum(ws * es, 1)
    a2 = torch.cumsum(ws * torch.exp(d / tm)[..., None], 1) if p.tau_ratio == 2 else None
    b = torch.cumsum(ws * (d[..., None] / ts) * es, 1) if p.tau_ratio == 1 else None
    lo = t_sorted[..., None]
    hi = torch.cat([t_sorted[:, 1:], t_sorted.new_full((B, 1), math.inf)], 1)[..., None]
    window = fin[..., None] & (a1 > 0)
    one = torch.ones((), dtype=t.dtype, device=t.device)
    reset = t.new_zeros(B, 1, w.shape[1])
    prev = t.new_full((B, 1, w.shape[1]), -math.inf)
    out = []
    for _ in range(max_spikes):
        if p.tau_ratio == 2:
            assert a2 is not None
            a2r = a2 - th * reset
            disc = a2r * a2r - 4 * a1 * th
            ok = window & (a2r > 0) & (disc >= 0)
            arg = 2 * a1 / (a2r + torch.sqrt(torch.clamp(disc, min=0)))
            cand = ref[..., None] + tm * torch.log(torch.where(ok, arg, one))
        else:
            assert b is not None
            safe_a1 = torch.where(window, a1, one)
            ratio = (b + th * reset) / safe_a1
            log_mz = math.log(th) - torch.log(safe_a1) + ratio          # ln(−z), z the argument of W
            ok = window & (log_mz <= -1.0)
            wz = lambertw(-torch.exp(torch.clamp(log_mz, max=-1.0)))
            cand = ref[..., None] + ts * (ratio - wz)
        ok = ok & (cand >= lo) & (cand < hi) & (cand > prev)
        tk = torch.where(ok, cand, torch.full_like(cand, math.inf)).amin(1)               # [B, N]
        out.append(tk)
        fired = torch.isfinite(tk)
        if not bool(fired.any()):
            out += [torch.full_like(tk, math.inf)] * (max_spikes - len(out))
            break
        reset = reset + torch.where(fired, torch.exp((tk - ref) / tm), torch.zeros_like(tk))[:, None]
        prev = tk[:, None]
    return torch.stack(out, -1)


def _at_spike(t_in: Tensor, tk: Tensor, p: CubaParams) -> tuple[Tensor, Tensor, Tensor]:
    """For spikes ``tk [B, N]`` (finite): the causal mask ``t_i ≤ t_k`` of the finite inputs ``t_in [B, M]`` and
    ``κ(t_k − t_i)``, ``κ′(t_k − t_i)`` there (0 elsewhere), each ``[B, M, N]``."""
    causal = torch.isfinite(t_in)[..., None] & (t_in[..., None] <= tk[:, None])
    s = torch.where(causal, tk[:, None] - torch.where(causal, t_in[..., None], 0.0), 0.0)
    kap, dkap = p.kernel(s)
    return causal, torch.where(causal, kap, 0.0), torch.where(causal, dkap, 0.0)


def _slopes(t_in: Tensor, w: Tensor, t_out: Tensor, p: CubaParams) -> Tensor:
    """``F′(t_k)`` ``[B, N, K]`` at every spike (0 where none): the inputs' ``Σ w_i κ′(t_k − t_i)`` plus the decaying
    resets of the earlier spikes, ``(ϑ′/τ_m) Σ_{k′<k} e^{−(t_k − t_k′)/τ_m}``."""
    fired = torch.isfinite(t_out)
    tk = torch.where(fired, t_out, 0.0)
    out = []
    for k in range(t_out.shape[-1]):
        _, _, dkap = _at_spike(t_in, tk[..., k], p)
        df = (w * dkap).sum(1)
        for j in range(k):
            df = df + (p.theta / p.tau_mem) * torch.exp(-(tk[..., k] - tk[..., j]) / p.tau_mem)
        out.append(torch.where(fired[..., k], df, 0.0))
    return torch.stack(out, -1)


class _ExactTimes(torch.autograd.Function):
    """``(t [B, M], w [M, N]) → (t_out [B, N, K], clipped)``; backward by the implicit function theorem, in reverse
    spike order so that each spike's adjoint has received what the later spikes owe it through their resets."""

    @staticmethod
    def forward(ctx: Any, t: Tensor, w: Tensor, p: CubaParams, max_spikes: int,  # type: ignore[override]
                eps: float) -> tuple[Tensor, Tensor]:
        t_out = _solve(t, w, p, max_spikes)
        df = _slopes(t, w, t_out, p)
        fired = torch.isfinite(t_out)
        keep = fired & (df * p.tau_syn / p.theta >= eps)
        clipped = (fired & ~keep).sum()
        ctx.save_for_backward(t, w, t_out, df, keep)
        ctx.p = p
        ctx.mark_non_differentiable(clipped)
        return t_out, clipped

    @staticmethod
    def backward(ctx: Any, grad: Tensor, _: Any) -> tuple[Tensor | None, Tensor | None, None, None, None]:  # type: ignore[override]
        t, w, t_out, df, keep = ctx.saved_tensors
        p: CubaParams = ctx.p
        tk = torch.where(keep, t_out, 0.0)
        lam = torch.where(keep, grad, 0.0)                                  # adjoints ∂L/∂t_k, completed below
        gt, gw = torch.zeros_like(t), torch.zeros_like(w)
        for k in reversed(range(t_out.shape[-1])):
            q = torch.where(keep[..., k], lam[..., k] / torch.where(keep[..., k], df[..., k], 1.0), 0.0)   # [B, N]
            if not bool(q.any()):
                continue
            _, kap, dkap = _at_spike(t, tk[..., k], p)
            gw = gw - (q[:, None] * kap).sum(0)                            # ∂t_k/∂w_i = −κ(t_k − t_i)/F′
            gt = gt + (q[:, None] * w * dkap).sum(2)                       # ∂t_k/∂t_i = w_i κ′(t_k − t_i)/F′
            for j in range(k):                                             # ∂t_k/∂t_j = (ϑ′/τ_m)e^{−(t_k − t_j)/τ_m}/F′
                both = keep[..., k] & keep[..., j]
                e = torch.exp(-torch.where(both, tk[..., k] - tk[..., j], 0.0) / p.tau_mem)
                lam[..., j] = lam[..., j] + torch.where(both, q * (p.theta / p.tau_mem) * e, 0.0)
        return (gt if ctx.needs_input_grad[0] else None), (gw if ctx.needs_input_grad[1] else None), None, None, None


def exact_spike_times(times: Tensor, weight: Tensor, bias: Tensor | None = None, params: CubaParams = CubaParams(),
                      max_spikes: int = 1, eps: float = 1e-3, bias_time: float = 0.0) -> tuple[Tensor, Tensor]:
    """The exact spike times of a layer of current-based LIF neurons (module docstring), differentiable by the
    implicit function theorem.

    Args:
        times: input spike times ``[B, N_in]``, or ``[B, N_in, K_in]`` (several spikes per input, any order);
            ``+inf`` for no spike. NaN or a negative time raises ``ValueError``.
        weight: ``[N_out, N_in]`` (``nn.Linear``'s layout).
        bias: ``[N_out]``, the weight of one more input spiking at ``bias_time`` (the official ``Biases`` layer), or
            ``None``.
        params: the neuron's constants.
        max_spikes: ``K``, the most spikes per neuron (1: time to first spike; ``K > 1``: spike, reset, spike
            again, each time exact).
        eps: grazing threshold: a spike with ``F′(t)·τ_s/ϑ′ < eps`` passes no gradient and is counted.
        bias_time: when the bias input spikes.

    Returns:
        ``(t_out, clipped)``: ``t_out [B, N_out, K]``, each neuron's spikes in increasing order, ``+inf`` after
        its last; ``clipped``, a 0-d integer tensor (0 when no gradient is being recorded).
    """
    if times.dim() not in (2, 3) or weight.dim() != 2 or times.shape[1] != weight.shape[1]:
        raise ValueError(f"exact_spike_times: expected times [B, N_in] or [B, N_in, K_in] and weight [N_out, N_in], "
                         f"got times {tuple(times.shape)} and weight {tuple(weight.shape)}")
    if isinstance(max_spikes, bool) or not isinstance(max_spikes, int) or max_spikes < 1:
        raise ValueError(f"max_spikes must be an integer >= 1, got {max_spikes!r}")
    check_spike_times(times.detach(), "input spike times")
    t, w = _flatten_inputs(times, weight, bias, bias_time)
    w = w.to(t.dtype)
    if not (torch.is_grad_enabled() and (t.requires_grad or w.requires_grad)):
        return _solve(t, w, params, max_spikes), torch.zeros((), dtype=torch.long, device=t.device)
    out: tuple[Tensor, Tensor] = _ExactTimes.apply(t, w, params, max_spikes, eps)
    return out


class ExactLIF(nn.Module):
    """A layer of current-based LIF neurons with exact, event-driven spike times (not a scan neuron: no
    time steps, no state between calls): ``times [B, N_in(, K_in)] → [B, N_out, K]`` (``exact_spike_times``).

    Args:
        in_features: ``N_in``.
        out_features: ``N_out``.
        bias: add a bias input spiking at ``t = 0`` (the official ``Biases`` layer with ``times: [0]``).
        max_spikes: ``K`` (1: TTFS, Göltz et al. 2021; ``> 1``: the relaxed version of Bacho & Chu 2023).
        params: the neuron's constants (``CubaParams``).
        eps: the grazing threshold of the gradient (``exact_spike_times``).

    The weights start ``N(0, 1/N_in)`` and the bias at 0 (``ttfs.to_exact_time`` sets its own start).

    Attributes:
        clipped: spikes whose gradient was clipped in the last call (a diagnostic the ``ttfs`` method logs;
            it does not change the next call).
    """

    nir_refusal = ("an event-driven layer of exact spike times (--method ttfs), not a stepped neuron; NIR "
                   "export of it is not supported")

    def __init__(self, in_features: int, out_features: int, bias: bool = True, max_spikes: int = 1,
                 params: CubaParams = CubaParams(), eps: float = 1e-3) -> None:
        super().__init__()
        if isinstance(max_spikes, bool) or not isinstance(max_spikes, int) or max_spikes < 1:
            raise ValueError(f"max_spikes must be an integer >= 1, got {max_spikes!r}")
        self.in_features, self.out_features, self.max_spikes = in_features, out_features, max_spikes
        self.params, self.eps = params, float(eps)
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        nn.init.normal_(self.weight, 0.0, 1.0 / math.sqrt(in_features))
        self.clipped = 0

    def forward(self, times: Tensor) -> Tensor:
        t, clipped = exact_spike_times(times.to(self.weight.dtype), self.weight, self.bias, self.params,
                                       self.max_spikes, self.eps)
        self.clipped = int(clipped)
        return t

    def extra_repr(self) -> str:
        p = self.params
        return (f"{self.in_features}, {self.out_features}, bias={self.bias is not None}, max_spikes={self.max_spikes}, "
                f"tau_syn={p.tau_syn}, tau_ratio={p.tau_ratio}, threshold={p.threshold}, leak={p.leak}")

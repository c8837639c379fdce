"""A neuron spikeforge does not ship, written in ~40 lines, running on the generated fused CPU kernel.

The adaptive exponential integrate-and-fire neuron (Brette & Gerstner 2005, J. Neurophysiol. 94) in
units where the rest is 0 and the rheobase ``v_T`` is 1:

    τ dV/dt   = −(V − V_rest) + Δ_T·exp((V − V_T)/Δ_T) − W + X
    τ_w dW/dt = a·(V − V_rest) − W,         spike when V >= V_peak:  V ← V_reset,  W ← W + b

All a user writes is the parameter record, the state and a pure step function in plain torch; the
kernel generator traces it (``exp`` and two state variables included), derives its backward and
compiles both. Run it:

    python examples/custom_neuron.py
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from spikeforge.neurons import SpikeParams, SpikingNeuron, euler_leak, fire, quantize, reset


class AdExState(NamedTuple):
    v: Tensor
    w: Tensor


@dataclass(frozen=True)
class AdExParams(SpikeParams):
    tau: float = 2.0
    tau_w: float = 20.0
    a: float = 0.1
    b: float = 0.2
    v_t: float = 1.0
    delta_t: float = 0.25
    dt: float = 1.0


def adex_step(x: Tensor, state: AdExState, p: AdExParams) -> tuple[Tensor, AdExState]:
    """One forward-Euler AdEx step (``v_threshold`` is the spike peak ``V_peak``)."""
    v, w = state
    rest = 0.0 if p.v_reset is None else p.v_reset
    # the exponential is capped so that a run-away upswing cannot overflow before the reset
    upswing = p.delta_t * torch.exp(torch.clamp((v - p.v_t) / p.delta_t, max=10.0))
    h = v + euler_leak(p.tau, p.dt) * (-(v - rest) + upswing - w + x)
    w_h = w + euler_leak(p.tau_w, p.dt) * (p.a * (v - rest) - w)
    s = fire(h, p.v_threshold, p.surrogate)
    v_new = quantize(reset(h, s, p.v_threshold, p.v_reset, p.detach_reset), p.quantizer)
    return s, AdExState(v_new, w_h + p.b * s)


class AdEx(SpikingNeuron):
    """Adaptive exponential integrate-and-fire over ``[T, B, ...]``; state ``(v, w)``."""

    step_fn = staticmethod(adex_step)
    state_type = AdExState

    def __init__(self, tau: float = 2.0, *, tau_w: float = 20.0, a: float = 0.1, b: float = 0.2,
                 v_t: float = 1.0, delta_t: float = 0.25, dt: float = 1.0, **kwargs: Any) -> None:
        kwargs.setdefault("v_threshold", 2.0)
        super().__init__(**kwargs)
        self.tau, self.tau_w, self.a, self.b = float(tau), float(tau_w), float(a), float(b)
        self.v_t, self.delta_t, self.dt = float(v_t), float(delta_t), float(dt)

    def params(self) -> AdExParams:
        return AdExParams(tau=self.tau, tau_w=self.tau_w, a=self.a, b=self.b, v_t=self.v_t,
                          delta_t=self.delta_t, dt=self.dt, **self.spike_params())


def main() -> None:
    torch.manual_seed(0)
    x = (torch.rand(32, 8, 100) * 1.5).requires_grad_()
    fused, reference = AdEx(backend="cpu"), AdEx(backend="torch")
    s_fast, s_ref = fused(x), reference(x)
    g = torch.randn_like(s_ref)
    g_fast, = torch.autograd.grad((s_fast * g).sum(), x)
    g_ref, = torch.autograd.grad((s_ref * g).sum(), x)
    print(f"AdEx on the fused CPU kernel: {int(s_fast.sum())} spikes, identical to the torch loop: "
          f"{torch.equal(s_fast, s_ref)}; input-gradient max difference {float((g_fast - g_ref).abs().max()):.2e}")


if __name__ == "__main__":
    main()

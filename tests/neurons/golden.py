"""Independent float64 reference loops, written from the equations in the docstrings with numpy only.

They share no code with spikeforge: if a step function drifts from its documented equation, the
golden comparison in the harness fails.
"""

from __future__ import annotations

import numpy as np


def _reset(h, s, th, v_reset):
    return h - th * s if v_reset is None else np.where(s > 0, v_reset, h)


def if_(x, v_threshold=1.0, v_reset=0.0):
    v = np.full(x.shape[1:], 0.0 if v_reset is None else v_reset)
    out = np.zeros_like(x)
    for t in range(x.shape[0]):
        h = v + x[t]
        out[t] = h >= v_threshold
        v = _reset(h, out[t], v_threshold, v_reset)
    return out, (v,)


def lif(x, tau=2.0, v_threshold=1.0, v_reset=0.0, decay_input=True, dt=1.0):
    rest = 0.0 if v_reset is None else v_reset
    v = np.full(x.shape[1:], rest)
    out = np.zeros_like(x)
    for t in range(x.shape[0]):
        # tau dV/dt = -(V - rest) + X, one Euler step of length dt
        h = v + dt / tau * (x[t] - (v - rest)) if decay_input else v - dt / tau * (v - rest) + x[t]
        out[t] = h >= v_threshold
        v = _reset(h, out[t], v_threshold, v_reset)
    return out, (v,)


def plif(x, init_tau=2.0, **kw):
    return lif(x, tau=init_tau, **kw)   # at initialisation sigmoid(w) = 1/init_tau


def alif(x, tau=2.0, tau_adapt=20.0, beta=0.5, v_threshold=1.0, v_reset=0.0):
    rest = 0.0 if v_reset is None else v_reset
    v = np.full(x.shape[1:], rest)
    a = np.zeros(x.shape[1:])
    out = np.zeros_like(x)
    for t in range(x.shape[0]):
        h = v + (x[t] - (v - rest)) / tau
        th = v_threshold + beta * a
        out[t] = h >= th
        v = _reset(h, out[t], th, v_reset)
        a = a * (1 - 1 / tau_adapt) + out[t]
    return out, (v, a)


def cubalif(x, tau=2.0, tau_syn=5.0, v_threshold=1.0, v_reset=0.0):
    rest = 0.0 if v_reset is None else v_reset
    v = np.full(x.shape[1:], rest)
    i = np.zeros(x.shape[1:])
    out = np.zeros_like(x)
    for t in range(x.shape[0]):
        i = i + (x[t] - i) / tau_syn
        h = v + (i - (v - rest)) / tau
        out[t] = h >= v_threshold
        v = _reset(h, out[t], v_threshold, v_reset)
    return out, (v, i)


def izhikevich(x, a=0.02, b=0.2, c=-65.0, d=8.0, v_threshold=30.0, dt=1.0):
    v = np.full(x.shape[1:], c)
    u = b * v
    out = np.zeros_like(x)
    for t in range(x.shape[0]):
        h = v + dt * (0.04 * v**2 + 5 * v + 140 - u + x[t])
        u = u + dt * a * (b * v - u)
        out[t] = h >= v_threshold
        v = np.where(out[t] > 0, c, h)
        u = u + d * out[t]
    return out, (v, u)


def multispike(x, tau=2.0, v_threshold=1.0, v_reset=None, max_spikes=4):
    rest = 0.0 if v_reset is None else v_reset
    v = np.full(x.shape[1:], rest)
    out = np.zeros_like(x)
    for t in range(x.shape[0]):
        h = v + (x[t] - (v - rest)) / tau
        n = np.clip(np.floor(h / v_threshold), 0, max_spikes)
        out[t] = n
        v = h - v_threshold * n if v_reset is None else np.where(n > 0, v_reset, h)
    return out, (v,)

"""The correctness harness every scan backend must pass.

``CASES`` lists neuron configurations (every family, both reset modes, parameters as floats, learnable
scalars, per-channel and per-neuron tensors). A backend registered in ``spikeforge.neurons.scan`` is
picked up by ``tests/neurons/test_harness.py`` automatically and checked against

* the torch reference loop: spikes identical; input, initial-state and parameter gradients within
  1e-5 relative (float32);
* the independent float64 golden loops of ``golden.py``;
* the invariants: the threshold boundary fires, T = 1, a non-contiguous input, one module called
  twice before a single backward, a sequence split in two equals the whole;
* float64 ``gradcheck`` of the whole neuron with a smooth surrogate (``spiking=False``).

Each backend runs on its own device (``Target``): the Triton rows take CPU tensors under
``TRITON_INTERPRET=1`` (set by ``tests/conftest.py`` where there is no GPU) and CUDA tensors on a GPU host
(``triton-cuda``, marked ``gpu``: ``pytest -m gpu`` there). The reference always runs on the CPU; results
are compared on the CPU.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
from examples.custom_neuron import AdEx
from torch import Tensor

from spikeforge import neurons as N
from spikeforge.surrogate import Surrogate
from tests.neurons import golden

SHAPE = (3, 4, 5)          # [B, C, N]: per-channel tensors are [4, 1], per-neuron [4, 5]
ON_CUDA = torch.cuda.is_available()
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


@dataclass(frozen=True)
class Target:
    """A backend and the device its tensors live on."""

    backend: str
    device: str = "cpu"

    @property
    def id(self) -> str:
        return self.backend if self.device == "cpu" else f"{self.backend}-{self.device}"

    def put(self, module: N.SpikingNeuron) -> N.SpikingNeuron:
        """A copy of ``module`` on this target's backend and device."""
        return with_backend(module, self.backend).to(self.device)


def targets(backends: list[str]) -> list[Any]:
    """``pytest.param`` per target: Triton twice — on CPU tensors through the interpreter (only where
    ``TRITON_INTERPRET=1``) and on CUDA tensors (marked ``gpu``, skipped without a CUDA device)."""
    out = []
    for b in backends:
        if b != "triton":
            out.append(pytest.param(Target(b), id=b))
            continue
        out.append(pytest.param(Target(b), id=b, marks=pytest.mark.skipif(
            not INTERPRET, reason="Triton on CPU tensors needs TRITON_INTERPRET=1 (a GPU host runs triton-cuda)")))
        out.append(pytest.param(Target(b, "cuda"), id=f"{b}-cuda",
                                marks=[pytest.mark.gpu, pytest.mark.skipif(not ON_CUDA, reason="needs a CUDA device")]))
    return out


@dataclass
class Case:
    id: str
    cls: Callable[..., N.SpikingNeuron]
    kwargs: dict[str, Any] = field(default_factory=dict)
    golden: Callable[..., Any] | None = None
    golden_kwargs: dict[str, Any] = field(default_factory=dict)
    scale: float = 1.0       # input ~ offset + scale * N(0, 1)
    offset: float = 0.3
    golden_tol: float = 1e-10   # final-state tolerance against the float64 golden loop

    def make(self, **over: Any) -> N.SpikingNeuron:
        kw = {k: (v.clone() if isinstance(v, Tensor) else v) for k, v in {**self.kwargs, **over}.items()}
        return self.cls(**kw)

    def input(self, T: int, dtype: torch.dtype = torch.float32, seed: int = 0, shape=SHAPE) -> Tensor:
        g = torch.Generator().manual_seed(seed)
        return (self.offset + self.scale * torch.randn((T, *shape), generator=g, dtype=torch.float64)).to(dtype)


CASES: list[Case] = [
    Case("if-hard", N.IF, {}, golden.if_, {}),
    Case("if-soft", N.IF, {"v_reset": None}, golden.if_, {"v_reset": None}),
    Case("lif-hard", N.LIF, {"tau": 2.0}, golden.lif, {"tau": 2.0}),
    Case("lif-soft-nodecay", N.LIF, {"tau": 3.0, "v_reset": None, "decay_input": False}, golden.lif,
         {"tau": 3.0, "v_reset": None, "decay_input": False}),
    Case("lif-dt-vreset", N.LIF, {"tau": 4.0, "dt": 0.5, "v_reset": -0.2, "v_threshold": 0.8}, golden.lif,
         {"tau": 4.0, "dt": 0.5, "v_reset": -0.2, "v_threshold": 0.8}, offset=1.0),
    Case("lif-learn-threshold", N.LIF, {"learn_threshold": True, "v_threshold": 0.9}, golden.lif,
         {"v_threshold": 0.9}),
    Case("lif-channel-threshold", N.LIF, {"learn_threshold": True, "v_threshold": torch.linspace(0.6, 1.2, 4)
                                          .view(4, 1)}),
    Case("lif-neuron-threshold", N.LIF, {"v_reset": None, "learn_threshold": True,
                                         "v_threshold": torch.linspace(0.5, 1.5, 20).view(4, 5)}),
    # w = -log(init_tau - 1) is stored in float32, so sigmoid(w) is 1/3 only to ~1e-8
    Case("plif", N.PLIF, {"init_tau": 3.0}, golden.plif, {"init_tau": 3.0}, golden_tol=1e-6),
    Case("plif-channel-soft", N.PLIF, {"init_tau": torch.linspace(1.5, 4.0, 4).view(4, 1), "v_reset": None}),
    Case("alif-hard", N.ALIF, {}, golden.alif, {}),
    Case("alif-soft", N.ALIF, {"v_reset": None, "beta": 0.3, "tau_adapt": 10.0}, golden.alif,
         {"v_reset": None, "beta": 0.3, "tau_adapt": 10.0}),
    Case("cubalif-hard", N.CUBALIF, {}, golden.cubalif, {}, scale=2.0, offset=1.0),
    Case("cubalif-soft", N.CUBALIF, {"v_reset": None, "tau_syn": 3.0}, golden.cubalif,
         {"v_reset": None, "tau_syn": 3.0}, scale=2.0, offset=1.0),
    Case("izhikevich", N.Izhikevich, {}, golden.izhikevich, {}, scale=8.0, offset=6.0),
    Case("multispike-soft", N.MultiSpike, {"max_spikes": 3}, golden.multispike, {"max_spikes": 3},
         scale=2.5, offset=1.0),
    Case("multispike-hard", N.MultiSpike, {"v_reset": 0.0}, golden.multispike, {"v_reset": 0.0},
         scale=2.5, offset=1.0),
    # the documented custom neuron (examples/custom_neuron.py): exp and two state variables
    Case("adex-custom", AdEx, {}, scale=1.0, offset=0.8),
]
CASE_IDS = [c.id for c in CASES]
BY_ID = {c.id: c for c in CASES}


# -- running a case ---------------------------------------------------------------------------------------
@dataclass
class Result:
    spikes: Tensor
    state: tuple[Tensor, ...]
    grads: dict[str, Tensor]


def run(module: N.SpikingNeuron, x: Tensor, state0: tuple[Tensor, ...] | None = None,
        grad_seed: int = 1, device: str = "cpu") -> Result:
    """Forward from ``state0`` (or rest), then backward of a fixed random projection of spikes and state,
    with the module and every tensor on ``device``; the result is on the CPU."""
    module = module.to(device)
    x = x.detach().clone().to(device).requires_grad_()
    st = None if state0 is None else tuple(s.detach().clone().to(device).requires_grad_() for s in state0)
    spikes, final = module.run(x, st)
    g = torch.Generator().manual_seed(grad_seed)

    def noise(t: Tensor) -> Tensor:
        return torch.randn(t.shape, generator=g, dtype=t.dtype).to(device)

    loss = (spikes * noise(spikes)).sum()
    for s in final:   # the final state feeds the loss too, so its gradient path is exercised
        loss = loss + 0.1 * (s * noise(s)).sum()
    params = dict(module.named_parameters())
    wrt = [x, *(st or ()), *params.values()]
    grads = torch.autograd.grad(loss, wrt, allow_unused=True)
    names = ["x", *(f"state{i}" for i in range(len(st or ()))), *params]
    out = {n: (gr if gr is not None else torch.zeros_like(w)).cpu() for n, gr, w in zip(names, grads, wrt)}
    return Result(spikes.detach().cpu(), tuple(s.detach().cpu() for s in final), out)


def rest_state(module: N.SpikingNeuron, x: Tensor, seed: int = 2) -> tuple[Tensor, ...]:
    """A non-trivial initial state: the resting state plus noise (so state gradients are exercised)."""
    g = torch.Generator().manual_seed(seed)
    return tuple(s + 0.3 * torch.randn(x.shape[1:], generator=g, dtype=s.dtype).to(s.device)
                 for s in module.init_state(x[0]))


def assert_same(a: Result, b: Result, rtol: float = 1e-5, what: str = "") -> None:
    """Spikes identical, final state close, every gradient within ``rtol`` of the reference's scale."""
    mism = (a.spikes != b.spikes).sum().item()
    assert mism == 0, f"{what}: {mism} spikes differ from the reference"
    for i, (s, r) in enumerate(zip(a.state, b.state)):
        torch.testing.assert_close(s, r, rtol=rtol, atol=rtol * (1 + r.abs().max().item()),
                                   msg=lambda m, i=i: f"{what}: final state {i}: {m}")
    assert a.grads.keys() == b.grads.keys()
    for k in a.grads:
        ref = b.grads[k]
        scale = ref.abs().max().item() + 1e-12
        err = (a.grads[k] - ref).abs().max().item()
        assert err <= rtol * scale + 1e-7, f"{what}: gradient of {k} differs by {err:.3g} (scale {scale:.3g})"


def with_backend(module: N.SpikingNeuron, backend: str) -> N.SpikingNeuron:
    m = copy.deepcopy(module)
    m.backend = backend
    return m


def golden_spikes(case: Case, x: Tensor) -> np.ndarray:
    assert case.golden is not None
    spikes, _ = case.golden(x.double().numpy(), **case.golden_kwargs)
    return spikes


def smooth(sg: Surrogate) -> Surrogate:
    return type(sg)(**sg.params(), spiking=False)

"""``memory="lean"`` on every backend: the same spikes, state and gradients as ``"default"``, less kept for
backward (measured with autograd's saved-tensor hooks, as ``docs/methods/bptt.md`` does), and one switch for
a whole model (``set_memory``, ``--memory lean``)."""

from __future__ import annotations

import pytest
import torch

from spikeforge import neurons as N
from spikeforge.models import create_model
from spikeforge.neurons.scan import available_backends
from tests.neurons.harness import CASE_IDS, CASES, Case, Target, assert_same, rest_state, run, targets

TARGETS = targets(available_backends())


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("target", TARGETS)
def test_lean_equals_default(target: Target, case: Case) -> None:
    x = case.input(T=10)                  # segments of 4, 4 and 2 steps
    default = target.put(case.make())
    lean = target.put(case.make(memory="lean"))
    st = rest_state(default, x)
    want = run(default, x, st, device=target.device)
    got = run(lean, x, st, device=target.device)
    assert_same(got, want, what=f"{target.id} lean vs default")


def _kept_per_neuron_step(neuron: torch.nn.Module, T: int, n: int = 2048) -> float:
    """Bytes saved for backward per neuron-step beyond the input (the page's measure)."""
    x = (torch.rand(T, 4, n) * 1.5).requires_grad_()
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        if t.data_ptr() != x.data_ptr():
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        neuron(x).sum().backward()
    return total / (T * 4 * n)


@pytest.mark.parametrize("backend", [b for b in available_backends() if b != "triton"])
def test_lean_keeps_the_state_every_sqrt_T_steps(backend: str) -> None:
    T = 64
    default = _kept_per_neuron_step(N.LIF(backend=backend), T)
    lean = _kept_per_neuron_step(N.LIF(backend=backend, memory="lean"), T)
    assert lean <= 4 * 8 / T + 1e-9, lean          # ≤ one float32 state per ⌈√64⌉ = 8 steps
    if backend == "cpu":        # the CPU kernels keep no state per step in either mode (only the input)
        assert lean == default <= 1e-3, (lean, default)
    else:
        assert lean * 4 <= default, (lean, default)


def test_set_memory_switches_a_whole_model() -> None:
    torch.manual_seed(0)
    model = create_model("spiking_cnn_tiny", in_channels=1, img_size=8, num_classes=10, T=9)
    for m in model.modules():
        if isinstance(m, N.SpikingNeuron):
            m.backend = "torch"
    x, y = torch.rand(9, 4, 1, 8, 8), torch.randint(0, 10, (4,))

    def step() -> tuple[float, list[torch.Tensor], int]:
        model.zero_grad(set_to_none=True)
        kept: dict[int, int] = {}             # by storage: a tensor saved twice is kept once

        def pack(t: torch.Tensor) -> torch.Tensor:
            kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = torch.nn.functional.cross_entropy(model(x).mean(0), y)
        loss.backward()
        return float(loss.detach()), [p.grad.clone() for p in model.parameters()], sum(kept.values())

    model.train(False)       # the batch norms' running statistics stay put between the two runs
    loss, grads, kept = step()
    assert N.set_memory(model, "lean") == ["sn1", "sn2"]
    assert all(m.memory == "lean" for m in model.modules() if isinstance(m, N.SpikingNeuron))
    lean_loss, lean_grads, lean_kept = step()
    assert lean_loss == loss
    for g, w in zip(lean_grads, grads):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-7)
    assert lean_kept < kept
    with pytest.raises(ValueError, match="memory must be 'default' or 'lean'"):
        N.set_memory(model, "tiny")

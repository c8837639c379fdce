"""State handling: fresh state per forward, explicit continuation, dtypes, clear errors."""

from __future__ import annotations

import pytest
import torch

from spikeforge import neurons as N
from tests.neurons.harness import BY_ID


def test_forward_starts_fresh_every_call() -> None:
    m = N.LIF(tau=2.0)
    x = torch.full((3, 2), 1.5)
    assert torch.equal(m(x), m(x))
    assert m(x)[:, 0].tolist() == [0.0, 1.0, 0.0]      # V: 0.75, 1.125 → fire → 0, 0.75


def test_hand_trace_lif_soft_reset() -> None:
    # tau=2, soft reset: V 0 → 0.75 | 1.125 fire → 0.125 | 0.8125 | 1.15625 fire → 0.15625
    s, (v,) = N.LIF(tau=2.0, v_reset=None).run(torch.full((4, 1), 1.5))
    assert s.flatten().tolist() == [0.0, 1.0, 0.0, 1.0]
    assert v.item() == pytest.approx(0.15625)


def test_hand_trace_izhikevich_first_spike() -> None:
    # regular spiking cell, I = 10: the first spike comes at a step the float64 golden loop also gives
    from tests.neurons.golden import izhikevich
    x = torch.full((40, 1), 10.0, dtype=torch.float64)
    s, _ = N.Izhikevich().double().run(x)
    want, _ = izhikevich(x.numpy())
    first = int(torch.nonzero(s.flatten())[0])
    assert first == int(want.flatten().nonzero()[0][0]) and 2 <= first <= 30


def test_step_loop_equals_run() -> None:
    m = N.ALIF()
    x = torch.randn(9, 4, 3) + 0.5
    spikes, state = m.run(x)
    st = None
    outs = []
    for xt in x:
        s, st = m.step(xt, st)
        outs.append(s)
    assert torch.equal(torch.stack(outs), spikes)
    assert all(torch.equal(a, b) for a, b in zip(st, state))
    assert isinstance(state, N.ALIFState) and state._fields == ("v", "a")


def test_state_accepts_plain_tuple_and_broadcasts() -> None:
    m = N.LIF()
    x = torch.randn(5, 2, 3)
    v0 = torch.full((3,), 0.5)                      # broadcasts over the batch
    a, _ = m.run(x, (v0,))
    b, _ = m.run(x, (v0.expand(2, 3).clone(),))
    assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_dtypes_follow_input(dtype: torch.dtype) -> None:
    x = (torch.randn(6, 2, 3) + 0.5).to(dtype)
    s, (v,) = N.LIF().run(x)
    assert s.dtype == dtype
    assert v.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    ref, _ = N.LIF().run(x.float())
    if dtype != torch.float64:
        # reduced-precision inputs are exact in float32, and the state is float32: same spikes
        assert torch.equal(s.float(), ref)


def test_errors_name_the_problem() -> None:
    m = N.LIF()
    with pytest.raises(ValueError, match=r"\[T, B, \.\.\.\].*got \(5,\)"):
        m(torch.randn(5))
    with pytest.raises(ValueError, match="time axis of x_seq is empty"):
        m(torch.randn(0, 3))
    with pytest.raises(ValueError, match="state must be a tuple of 1 tensors"):
        m.run(torch.randn(2, 3), (torch.zeros(3), torch.zeros(3)))
    with pytest.raises(ValueError, match="state 'v' has shape \\(4,\\)"):
        m.run(torch.randn(2, 3), (torch.zeros(4),))
    with pytest.raises(ValueError, match="tau must be >= dt"):
        N.LIF(tau=0.5)
    with pytest.raises(ValueError, match="init_tau must be > 1"):
        N.PLIF(init_tau=1.0)
    with pytest.raises(ValueError, match="unknown backend 'cuda-magic'"):
        N.LIF(backend="cuda-magic")(torch.randn(2, 3))
    with pytest.raises(ValueError, match="unknown neuron 'lifx'"):
        N.create_neuron("lifx")


def test_learnable_thresholds_get_gradients() -> None:
    for case_id in ("lif-learn-threshold", "lif-channel-threshold", "lif-neuron-threshold", "plif-channel-soft"):
        case = BY_ID[case_id]
        m = case.make()
        x = case.input(T=10)
        (m(x) * torch.randn(10, 3, 4, 5)).sum().backward()
        for name, p in m.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, (case_id, name)


def test_per_channel_threshold_equals_separate_neurons() -> None:
    th = torch.tensor([0.5, 1.0, 1.5, 2.0]).view(4, 1)
    x = torch.rand(12, 3, 4, 5) * 2
    together = N.LIF(v_threshold=th)(x)
    for c in range(4):
        alone = N.LIF(v_threshold=float(th[c]))(x[:, :, c])
        assert torch.equal(together[:, :, c], alone)


def test_registry_and_templates() -> None:
    tmpl = N.LIF(tau=3.0, v_reset=None)
    a, b = N.create_neuron(tmpl), N.create_neuron(tmpl)
    assert a is not tmpl and a is not b and a.tau == 3.0 and a.v_reset is None
    assert isinstance(N.create_neuron("plif", init_tau=4.0), N.PLIF)
    assert {"if", "lif", "plif", "alif", "cubalif", "izhikevich", "multispike", "psn"} <= set(N.list_neurons())


def test_module_state_dict_round_trip() -> None:
    m = N.PLIF(init_tau=torch.tensor([2.0, 3.0]).view(2, 1), learn_threshold=True, v_threshold=0.8)
    m2 = N.PLIF(init_tau=torch.tensor([5.0, 5.0]).view(2, 1), learn_threshold=True, v_threshold=1.0)
    m2.load_state_dict(m.state_dict())
    x = torch.rand(6, 3, 2, 4) * 2
    assert torch.equal(m(x), m2(x))

"""The correctness table: every registered backend × every neuron case (see ``harness.py``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeforge import neurons as N
from spikeforge.neurons.scan import available_backends
from spikeforge.surrogate import SURROGATES, Sigmoid
from tests.neurons.harness import (
    BY_ID,
    CASE_IDS,
    CASES,
    Case,
    Target,
    assert_same,
    rest_state,
    run,
    smooth,
    targets,
)

BACKENDS = available_backends()
TARGETS = targets(BACKENDS)
FAST = targets([b for b in BACKENDS if b != "torch"])          # compared against the torch reference
GOLDEN = [c for c in CASES if c.golden is not None]


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest) -> Target:
    return request.param


@pytest.mark.parametrize("case", GOLDEN, ids=[c.id for c in GOLDEN])
def test_matches_golden_float64(target: Target, case: Case) -> None:
    x = case.input(T=24, dtype=torch.float64)
    m = target.put(case.make().double())
    spikes, state = m.run(x.to(target.device))
    spikes, state = spikes.cpu(), [s.cpu() for s in state]
    want_spikes, want_state = case.golden(x.numpy(), **case.golden_kwargs)
    assert spikes.sum() > 0 and spikes.sum() < spikes.numel() * spikes.max(), "degenerate case: tune the input"
    want = torch.from_numpy(want_spikes)
    assert torch.equal(spikes, want), f"{(spikes != want).sum()} spikes differ from the golden loop"
    for s, w in zip(state, want_state):
        torch.testing.assert_close(s, torch.from_numpy(w), rtol=case.golden_tol, atol=case.golden_tol)


def covering_rows() -> list[tuple[str, str, bool, int, bool]]:
    """Every neuron case × every surrogate, with detach_reset, T and input contiguity assigned so that
    every pair of factor levels occurs (checked by ``test_table_covers_all_pairs``)."""
    rows = []
    for i, c in enumerate(CASE_IDS):
        for j, s in enumerate(sorted(SURROGATES)):
            rows.append((c, s, (i + j) % 2 == 1, (1, 5, 16)[(i + 2 * j) % 3], (i + j // 2) % 2 == 0))
    return rows


ROWS = covering_rows()
TABLE = [pytest.param(f.values[0], *r, marks=f.marks, id=f"{f.id}/{r[0]}/{r[1]}/d{int(r[2])}/T{r[3]}/c{int(r[4])}")
         for f in FAST for r in ROWS]


def test_table_covers_all_pairs() -> None:
    levels = [CASE_IDS, sorted(SURROGATES), [False, True], [1, 5, 16], [False, True]]
    for a in range(5):
        for b in range(a + 1, 5):
            seen = {(r[a], r[b]) for r in ROWS}
            assert len(seen) == len(levels[a]) * len(levels[b]), (a, b)


@pytest.mark.parametrize("fast,case_id,sg_name,detach,T,contiguous", TABLE)
def test_backend_equals_reference(fast: Target, case_id: str, sg_name: str, detach: bool, T: int,
                                  contiguous: bool) -> None:
    case = BY_ID[case_id]
    ref = case.make(surrogate=SURROGATES[sg_name](), detach_reset=detach, backend="torch")
    x = case.input(T=T)
    if not contiguous:
        x = x.transpose(0, 1).contiguous().transpose(0, 1)
    st = rest_state(ref, x)
    assert_same(run(fast.put(ref), x, st, device=fast.device), run(ref, x, st), what=f"{fast.id}/{case_id}/{sg_name}")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_detach_reset_and_T1(target: Target, case: Case) -> None:
    for detach in (False, True):
        ref = case.make(detach_reset=detach, backend="torch")
        m = target.put(ref)
        x = case.input(T=12, seed=3)
        assert_same(run(m, x, device=target.device), run(ref, x), what=f"detach={detach}")
        x1 = case.input(T=1, seed=4)
        r1 = run(m, x1, device=target.device)
        spike, _ = m.step(x1[0].to(target.device))
        assert torch.equal(r1.spikes[0], spike.detach().cpu())
        assert_same(r1, run(ref, x1), what="T=1")


def test_detach_reset_is_wired() -> None:
    case = BY_ID["lif-hard"]
    x = case.input(T=12)
    g_keep = run(case.make(detach_reset=False), x).grads["x"]
    g_cut = run(case.make(detach_reset=True), x).grads["x"]
    assert (g_keep - g_cut).abs().max() > 1e-3


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_noncontiguous_input(target: Target, case: Case) -> None:
    m = target.put(case.make())
    x = case.input(T=10, seed=5).to(target.device)
    x_nc = x.permute(1, 0, 2, 3).contiguous().permute(1, 0, 2, 3)     # same values, batch-major storage
    assert not x_nc.is_contiguous()
    assert_same(run(m, x_nc, device=target.device), run(m, x, device=target.device), what="non-contiguous")


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_called_twice_before_one_backward(target: Target, case: Case) -> None:
    m = target.put(case.make())
    x1 = case.input(T=8, seed=6).to(target.device).requires_grad_()
    x2 = case.input(T=8, seed=7).to(target.device).requires_grad_()
    w1, w2 = torch.randn_like(x1), torch.randn_like(x2)
    ((m(x1) * w1).sum() + (m(x2) * w2).sum()).backward()
    g1, g2 = x1.grad.clone(), x2.grad.clone()
    for x, w, g in ((x1, w1, g1), (x2, w2, g2)):
        xs = x.detach().clone().requires_grad_()
        (m(xs) * w).sum().backward()
        torch.testing.assert_close(xs.grad, g, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_split_sequence_equals_whole(target: Target, case: Case) -> None:
    m = target.put(case.make())
    x = case.input(T=14, seed=8).to(target.device)
    whole, state = m.run(x)
    a, st = m.run(x[:5])
    b, st = m.run(x[5:], st)
    assert torch.equal(torch.cat([a, b]), whole)
    for s, w in zip(st, state):
        torch.testing.assert_close(s, w, rtol=0, atol=0)


BOUNDARY = {   # input that puts H exactly on the threshold at step 0 (in exact binary arithmetic)
    "if": (N.IF, {}, 1.0, 1.0),
    "lif": (N.LIF, {"tau": 2.0}, 2.0, 1.0),
    "plif": (N.PLIF, {"init_tau": 2.0}, 2.0, 1.0),
    "alif": (N.ALIF, {"tau": 2.0}, 2.0, 1.0),
    "cubalif": (N.CUBALIF, {"tau": 2.0, "tau_syn": 2.0}, 4.0, 1.0),
    "multispike-2": (N.MultiSpike, {"tau": 2.0}, 4.0, 2.0),
}


@pytest.mark.parametrize("name", sorted(BOUNDARY))
def test_threshold_boundary_fires(target: Target, name: str) -> None:
    cls, kw, x_on, count = BOUNDARY[name]
    m = target.put(cls(**kw))
    below = torch.nextafter(torch.tensor(x_on), torch.tensor(0.0)).item()
    x = torch.tensor([[x_on, below]], device=target.device)          # [T=1, 2]
    assert m(x).cpu().tolist() == [[count, count - 1]]


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_gradcheck_float64_smooth(target: Target, case: Case) -> None:
    neuron = target.put(case.make(surrogate=smooth(Sigmoid(alpha=2.0))).double())

    class Wrap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.neuron = neuron

        def forward(self, x: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
            spikes, final = self.neuron.run(x, state)
            return (spikes, *final)

    wrap = Wrap()
    x = case.input(T=3, dtype=torch.float64, shape=(1, 4, 5)).to(target.device) * 0.5
    state = tuple(s.detach() for s in rest_state(neuron, x))
    names = [n for n, _ in wrap.named_parameters()]
    params = [p.detach().clone() for _, p in wrap.named_parameters()]

    def f(x: torch.Tensor, *rest: torch.Tensor) -> tuple[torch.Tensor, ...]:
        st, ps = rest[: len(state)], rest[len(state):]
        out: tuple[torch.Tensor, ...] = torch.func.functional_call(wrap, dict(zip(names, ps)), (x, *st))
        return out

    inputs = tuple(t.requires_grad_() for t in (x, *state, *params))
    assert torch.autograd.gradcheck(f, inputs, fast_mode=True)

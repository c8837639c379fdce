"""Exact spike times (``ttfs.py``) against bisection and an Euler simulation, their implicit gradients against
finite differences and the official closed-form derivatives, the grazing clip, and the ``ttfs`` method."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spikeforge.data import build_dataset
from spikeforge.learning import (
    METHODS,
    TTFS,
    CubaParams,
    ExactLIF,
    SpikeTimesInput,
    exact_spike_times,
    lambertw,
    ttfs_loss,
)
from spikeforge.models import create_model
from spikeforge.training import fit

D = torch.float64


def _case(seed: int, B: int = 3, n_in: int = 6, n_out: int = 4, mean: float = 0.9) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(B, n_in, generator=g, dtype=D) * 2
    t[0, 2] = math.inf
    w = torch.randn(n_out, n_in, generator=g, dtype=D) * 0.8 + mean
    b = torch.randn(n_out, generator=g, dtype=D) * 0.3
    return t, w, b


def _f(t: np.ndarray, t_in: np.ndarray, w: np.ndarray, p: CubaParams, spikes: list[float]) -> np.ndarray:
    """``F(t) = g_L(u − E_L) − ϑ′`` of one neuron, straight from the kernel sum (inputs incl. the bias at 0)."""
    f = np.full_like(t, -p.theta)
    for ti, wi in zip(t_in, w):
        if np.isfinite(ti):
            s = np.clip(t - ti, 0, None)
            es = np.exp(-s / p.tau_syn)
            k = np.exp(-s / p.tau_mem) - es if p.tau_ratio == 2 else s / p.tau_syn * es
            f += wi * np.where(t >= ti, k, 0.0)
    for tk in spikes:
        f -= p.theta * np.where(t > tk, np.exp(-(t - tk) / p.tau_mem), 0.0)
    return f


def _bisect(t_in: np.ndarray, w: np.ndarray, p: CubaParams, K: int, t_end: float = 12.0) -> list[float]:
    """The first ``K`` upward crossings of ``F`` (with reset), located on a grid and bisected to float64."""
    spikes: list[float] = []
    grid = np.linspace(0, t_end, 60001)
    for _ in range(K):
        f = _f(grid, t_in, w, p, spikes)
        up = np.nonzero((f >= 0) & (grid > (spikes[-1] if spikes else -1)))[0]
        if not len(up):
            break
        lo, hi = grid[up[0] - 1], grid[up[0]]
        for _ in range(80):
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if _f(np.array([mid]), t_in, w, p, spikes)[0] >= 0 else (mid, hi)
        spikes.append(hi)
    return spikes + [math.inf] * (K - len(spikes))


def _compare_to_bisection(p: CubaParams, K: int, seed: int) -> tuple[int, int]:
    t, w, b = _case(seed, mean=1.2)
    out, _ = exact_spike_times(t, w, b, p, max_spikes=K)
    for i in range(t.shape[0]):
        t_in = np.append(t[i].numpy(), 0.0)                                  # the bias input spikes at 0
        for n in range(w.shape[0]):
            want = _bisect(t_in, np.append(w[n].numpy(), b[n].item()), p, K)
            got = out[i, n].tolist()
            assert [math.isinf(v) for v in got] == [math.isinf(v) for v in want], (i, n, got, want)
            assert np.allclose([g for g in got if math.isfinite(g)], [v for v in want if math.isfinite(v)],
                               rtol=0, atol=1e-12), (i, n, got, want)
    fired = torch.isfinite(out)
    return int(fired[..., 0].sum()), int(fired[..., 1:].sum())


@pytest.mark.parametrize(("ratio", "K"), [(2, 1), (2, 3), (1, 1), (1, 3)])
def test_spike_times_equal_bisection_of_the_analytic_membrane(ratio: int, K: int) -> None:
    """τ_m = 2τ_s (square root) and τ_m = τ_s (Lambert W), first spike and spikes after reset, to 1e-12."""
    first, later = _compare_to_bisection(CubaParams(tau_ratio=ratio), K, seed=ratio)
    assert first >= 6 and (K == 1 or later >= 6)      # first spikes, and spikes after a reset


def test_lambertw_principal_branch_equals_scipy() -> None:
    sp = pytest.importorskip("scipy.special")
    z = torch.cat([-math.exp(-1) + torch.logspace(-14, 0, 300, dtype=D)[:-1] * math.exp(-1) * (1 - 1e-12),
                   torch.linspace(-0.36, 0, 200, dtype=D), torch.logspace(-10, 4, 200, dtype=D)])
    want = torch.from_numpy(sp.lambertw(z.numpy()).real)
    got = lambertw(z)
    cond = 1 + 1 / torch.sqrt(2 * (math.e * z + 1))                 # W's sensitivity near the branch point
    assert ((got - want).abs() <= 4e-16 * cond * want.abs().clamp(min=1)).all()
    assert lambertw(torch.tensor([-math.exp(-1)], dtype=D)).item() == -1.0
    assert torch.isnan(lambertw(torch.tensor([-0.4], dtype=D))).all()          # below −1/e: no real W


def _euler(t_in: np.ndarray, w: np.ndarray, p: CubaParams, K: int, t_end: float, dt: float) -> np.ndarray:
    """Forward Euler of ``C_m du/dt = g_L(E_L − u) + I``, ``τ_s dI/dt = −I`` for every neuron at once; inputs
    land at the first step at or after their time; a spike at ``u ≥ ϑ`` resets ``u`` to ``E_L``."""
    n = w.shape[0]
    g_l = p.tau_syn / p.tau_mem
    u, cur = np.full(n, p.leak), np.zeros(n)
    out = np.full((n, K), np.inf)
    count = np.zeros(n, dtype=int)
    steps = np.ceil(np.where(np.isfinite(t_in), t_in, -1) / dt).astype(int)
    for s in range(int(t_end / dt) + 1):
        cur += w[:, steps == s].sum(1)
        u += dt * ((p.leak - u) / p.tau_mem + cur / (g_l * p.tau_mem))
        cur -= dt * cur / p.tau_syn
        spike = (u >= p.threshold) & (count < K)
        out[spike, count[spike]] = (s + 1) * dt
        count += spike
        u[spike] = p.leak
    return out


@pytest.mark.parametrize("ratio", [2, 1])
def test_spike_times_agree_with_an_euler_simulation(ratio: int) -> None:
    p, K, t_max = CubaParams(tau_ratio=ratio), 3, 6.0
    t, w, _ = _case(3, B=1, n_in=8, n_out=12)
    out, _ = exact_spike_times(t, w, None, p, max_spikes=K)
    sim = _euler(t[0].numpy(), w.numpy(), p, K, t_max, 1e-4 * t_max)
    exact = out[0].numpy()
    exact[exact > t_max] = np.inf
    fin = np.isfinite(exact)
    assert np.array_equal(fin, np.isfinite(sim)) and fin[:, 0].sum() >= 6 and fin[:, 1:].sum() >= 6
    assert np.abs(exact[fin] - sim[fin]).max() < 1e-3 * t_max


def _at(base: list[torch.Tensor], which: int, j: int, delta: float, p: CubaParams, K: int,
        idx: tuple[int, ...]) -> float:
    """The spike time ``idx`` with element ``j`` of argument ``which`` moved by ``delta``."""
    args = [x.clone() for x in base]
    args[which].view(-1)[j] += delta
    return exact_spike_times(*args, params=p, max_spikes=K)[0][idx].item()


def _finite_differences(p: CubaParams, K: int, seed: int) -> None:
    t, w, b = _case(seed, B=2, n_in=5, n_out=3)
    leaves = [t.clone().requires_grad_(), w.clone().requires_grad_(), b.clone().requires_grad_()]
    out, clipped = exact_spike_times(*leaves, params=p, max_spikes=K)
    assert clipped.item() == 0
    h, checked = 1e-6, 0
    for idx in map(tuple, torch.nonzero(torch.isfinite(out)).tolist()):
        grads = torch.autograd.grad(out[idx], leaves, retain_graph=True)
        for which, g in enumerate(grads):
            base = [x.detach() for x in leaves]
            for j in range(base[which].numel()):
                if not math.isfinite(base[which].reshape(-1)[j]):
                    assert g.reshape(-1)[j] == 0
                    continue

                fd = (_at(base, which, j, h, p, K, idx) - _at(base, which, j, -h, p, K, idx)) / (2 * h)
                assert abs(g.reshape(-1)[j].item() - fd) <= 1e-6 * max(1.0, abs(fd)), (idx, which, j)
                checked += 1
    assert checked > 50


@pytest.mark.parametrize(("ratio", "K"), [(2, 1), (2, 3), (1, 1), (1, 3)])
def test_gradients_equal_finite_differences_of_the_exact_times(ratio: int, K: int) -> None:
    """∂t_k/∂(w, b, t_in), later spikes including the dependence through the earlier resets."""
    _finite_differences(CubaParams(tau_ratio=ratio), K, seed=10 + ratio)


def test_gradients_equal_the_official_closed_form_derivatives() -> None:
    """τ_m = 2τ_s, K = 1: the official ``get_spiketime_derivative`` (fastAndDeep ``utils_spiketime.py``),
    restated without its 1e-6 guards: ∂t/∂w_i = τ_m((1 + ϑ′e^{t/τ_m}/√D)e^{t_i/τ_s}/a₁ − e^{t_i/τ_m}/√D),
    ∂t/∂t_i = w_i((1 + ϑ′e^{t/τ_m}/√D)·2e^{t_i/τ_s}/a₁ − e^{t_i/τ_m}/√D)/… with the causal set of t."""
    p = CubaParams(tau_ratio=2)
    t, w, _ = _case(5, B=1, n_in=6, n_out=3)
    t[0, 2] = 0.7
    tl, wl = t.clone().requires_grad_(), w.clone().requires_grad_()
    out, _ = exact_spike_times(tl, wl, None, p)
    for n in range(3):
        t_out = out[0, n, 0]
        if not torch.isfinite(t_out):
            continue
        gw, gt = torch.autograd.grad(t_out, [wl, tl], retain_graph=True)
        causal = t[0] <= t_out.detach()
        cw = torch.where(causal, w[n], torch.zeros(()))
        es, em = torch.exp(t[0] / p.tau_syn), torch.exp(t[0] / p.tau_mem)
        a1, a2 = (cw * es).sum(), (cw * em).sum()
        sq = torch.sqrt(a2 ** 2 - 4 * a1 * p.theta)
        e_out = torch.exp(t_out.detach() / p.tau_mem)
        dw = p.tau_mem * ((1 + p.theta / sq * e_out) / a1 * es - em / sq)
        dt = cw * ((1 + p.theta / sq * e_out) / a1 * 2 * es - em / sq)
        assert torch.allclose(gw[n], torch.where(causal, dw, torch.zeros(())), rtol=1e-10, atol=1e-12)
        assert torch.allclose(gt[0], dt, rtol=1e-10, atol=1e-12)


def test_a_grazing_crossing_is_clipped_and_counted() -> None:
    """One input whose PSP peak (w·max κ = w/4 for τ_m = 2τ_s) barely reaches ϑ′: the crossing is nearly tangent,
    ∂u/∂t ≈ 0, so the spike exists but passes no gradient, and it is counted; a clear crossing is not."""
    p = CubaParams(tau_ratio=2)
    t = torch.tensor([[0.0, 0.0]], dtype=D)
    w = torch.tensor([[4 * p.theta * (1 + 1e-8), 0.0], [3.0, 0.0]], dtype=D, requires_grad=True)
    layer = ExactLIF(2, 2, bias=False, params=p, eps=1e-3).double()
    with torch.no_grad():
        layer.weight.copy_(w)
    out = layer(t)
    assert torch.isfinite(out).all() and layer.clipped == 1
    out.sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad[0].abs().sum() == 0
    assert layer.weight.grad[1, 0] != 0
    out, clipped = exact_spike_times(t, w, None, p, eps=0.0)                 # unclipped: large but finite
    (g,) = torch.autograd.grad(out[0, 0, 0], [w])
    assert clipped.item() == 0 and torch.isfinite(g).all() and g[0, 0].abs() > 100


def test_a_silent_neuron_passes_no_gradient_and_no_nan() -> None:
    p = CubaParams()
    t = torch.tensor([[0.1, 0.5, math.inf]], dtype=D, requires_grad=True)
    w = torch.tensor([[0.1, 0.1, 5.0], [3.0, 2.0, 1.0]], dtype=D, requires_grad=True)
    out, _ = exact_spike_times(t, w, None, p, max_spikes=2)
    assert torch.isinf(out[0, 0]).all() and torch.isfinite(out[0, 1, 0])
    first = torch.where(torch.isfinite(out), out, torch.zeros(()))          # as a loss would mask them
    (first.sum() + out[0, 0].clamp(max=10).sum()).backward()
    assert t.grad is not None and w.grad is not None
    assert torch.isfinite(t.grad).all() and torch.isfinite(w.grad).all()
    assert w.grad[0].abs().sum() == 0 and t.grad[0, 2] == 0 and w.grad[1, :2].abs().sum() > 0


def test_inputs_after_the_output_spike_are_not_in_its_causal_set() -> None:
    p = CubaParams()
    t = torch.tensor([[0.0, 0.2]], dtype=D)
    w = torch.tensor([[3.0, 2.0]], dtype=D)
    t_out = exact_spike_times(t, w, None, p)[0][0, 0, 0].item()
    late = torch.tensor([[0.0, 0.2, t_out + 1e-3]], dtype=D, requires_grad=True)
    wl = torch.tensor([[3.0, 2.0, -50.0]], dtype=D, requires_grad=True)
    out, _ = exact_spike_times(late, wl, None, p)
    assert out[0, 0, 0].item() == t_out                                  # a strong inhibitory input, too late
    out[0, 0, 0].backward()
    assert late.grad is not None and wl.grad is not None
    assert late.grad[0, 2] == 0 and wl.grad[0, 2] == 0 and wl.grad[0, 0] != 0


def test_bad_input_times_and_settings_name_the_value() -> None:
    w = torch.ones(2, 3)
    with pytest.raises(ValueError, match=r"got nan at index \[0, 1\]"):
        exact_spike_times(torch.tensor([[0.0, math.nan, 1.0]]), w)
    with pytest.raises(ValueError, match=r"got -0.5 at index \[0, 2\]"):
        exact_spike_times(torch.tensor([[0.0, 1.0, -0.5]]), w)
    with pytest.raises(ValueError, match="max_spikes must be an integer >= 1.*got 0"):
        TTFS(max_spikes=0)
    with pytest.raises(ValueError, match="max_spikes must be an integer >= 1.*got -3"):
        METHODS["ttfs"](max_spikes=-3)
    with pytest.raises(ValueError, match="tau_ratio"):
        TTFS(tau_ratio=3)
    with pytest.raises(ValueError, match="0/1 spike trains.*0.5"):
        SpikeTimesInput()(torch.full((4, 1, 1, 2, 2), 0.5))


def test_latency_train_becomes_spike_times_and_the_readout_picks_the_earliest() -> None:
    from spikeforge.encode import latency

    x = torch.tensor([[[[1.0, 0.5], [0.0, 0.25]]]])
    times = SpikeTimesInput(t_max=2.0)(latency(x, 5))
    assert times.shape == (1, 4, 1)
    assert times[0, :, 0].tolist() == [0.0, 1.0, math.inf, 1.5]         # step round((1 − x)·4), times 2/4 per step
    exact = SpikeTimesInput(t_max=2.0)(x)
    assert exact[0, :, 0].tolist() == [0.0, 1.0, math.inf, 1.5]
    model = create_model("spiking_mlp_tiny", in_channels=1, num_classes=3, img_size=2, T=5, hidden=8)
    TTFS().prepare(model)
    out = model(latency(x, 5))
    assert out.shape == (1, 1, 3)
    first = model.head[0](model.fc(times))[..., 0]                         # the label neurons' first spikes
    assert int(out.mean(0).argmax(-1)) == int(first.argmin(-1))


def test_loss_is_the_official_one() -> None:
    first = torch.tensor([[1.0, 2.0, math.inf], [math.inf, 0.5, 1.0]], requires_grad=True)
    y = torch.tensor([0, 0])
    loss = ttfs_loss(first, y, xi=0.2, alpha=0.005, beta=1.0)
    ce = math.log(math.exp(-5) + math.exp(-10)) + 5 + 0.005 * math.exp(1.0)
    assert loss.item() == pytest.approx((ce + 100) / 2, rel=1e-6)
    loss.backward()
    assert first.grad is not None and torch.isfinite(first.grad).all() and first.grad[1].abs().sum() == 0


@pytest.fixture(scope="module")
def one_batch() -> object:
    return build_dataset("digits", T=1, progress=False, limit_train=32, val_fraction=0.0)


@pytest.mark.parametrize("K", [1, 3])
def test_the_method_overfits_one_batch_and_is_deterministic(K: int, one_batch: object) -> None:
    def run() -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        torch.manual_seed(0)
        model = create_model("spiking_mlp_tiny", in_channels=1, num_classes=10, img_size=8, T=16, hidden=64)
        res = fit(model, one_batch, T=16, encoding="latency", epochs=40, batch_size=32, method=TTFS(max_spikes=K),
                  progress=False, optimizer=lambda ps: torch.optim.Adam(ps, lr=1e-2), seed=0, eval_every=40)
        return res.history[-1], {k: v.clone() for k, v in model.state_dict().items()}

    last, weights = run()
    assert last["train_accuracy"] == 1.0 and last["test_accuracy"] > 0.2
    assert {"train_clipped", "train_bumped", "train_hidden_spikes", "train_silent_labels"} <= set(last)
    if K > 1:
        assert last["train_hidden_spikes"] > 1.0
    again = run()[1]
    assert all(torch.equal(weights[k], again[k]) for k in weights)


def test_memory_is_linear_in_the_inputs() -> None:
    """Prefix sums, not an N_in × N_in causal-set tensor: 20 000 inputs into 2 neurons in a few MB."""
    t = torch.rand(2, 20_000, dtype=D) * 2
    w = torch.full((2, 20_000), 4.0 / 20_000, dtype=D)
    out, _ = exact_spike_times(t, w, None, CubaParams())
    assert torch.isfinite(out).all()


def test_method_registration_and_options() -> None:
    m = METHODS["ttfs"](max_spikes=5)
    assert isinstance(m, TTFS) and m.config == {"encoding": "latency"} and m.replaces_neurons
    assert m.options()["max_spikes"] == 5
    assert TTFS().check(create_model("spiking_cnn_tiny", in_channels=1, img_size=8)) is not None
    assert TTFS().check(create_model("spiking_mlp_tiny")) is None


@pytest.mark.parametrize(("ratio", "K"), [(2, 1), (2, 3), (1, 2)])
def test_gradcheck_of_the_autograd_function(ratio: int, K: int) -> None:
    t, w, b = _case(20 + ratio, B=2, n_in=4, n_out=3, mean=1.2)
    leaves = [t.clone().requires_grad_(), w.clone().requires_grad_(), b.clone().requires_grad_()]

    def f(ti: torch.Tensor, wi: torch.Tensor, bi: torch.Tensor) -> torch.Tensor:
        out = exact_spike_times(ti, wi, bi, CubaParams(tau_ratio=ratio), max_spikes=K)[0]
        return torch.where(torch.isfinite(out), out, 0.0)

    assert torch.isfinite(exact_spike_times(t, w, b, CubaParams(tau_ratio=ratio), max_spikes=K)[0]).sum() >= 6
    assert torch.autograd.gradcheck(f, leaves, eps=1e-7, atol=1e-6, rtol=1e-5)

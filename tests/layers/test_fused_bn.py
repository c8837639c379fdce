"""``bn_neuron`` (a batch norm computed inside the next neuron's kernel) equals ``neuron(fold(x))``: spikes, loss,
every gradient and the running statistics; it keeps one tensor of the conv output's size for backward instead of
two; ``why_not`` names each case it leaves unfused."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch import nn

from spikeforge.layers import TimeFold
from spikeforge.layers.fused_bn import SpikingSequential, bn_neuron, why_not
from spikeforge.neurons import LIF, PLIF
from spikeforge.surrogate import ATan


def _pair(bn: nn.Module, neuron: nn.Module | None = None, conv: nn.Module | None = None,
          seed: int = 0) -> tuple[TimeFold, nn.Module]:
    torch.manual_seed(seed)
    conv = conv if conv is not None else nn.Conv2d(2, 3, 3, padding=1, bias=False)
    return TimeFold(conv, bn), neuron if neuron is not None else LIF(tau=2.0, surrogate=ATan(2.0), detach_reset=True)


def _input(shape: tuple[int, ...], channels_last: bool = False, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=dtype) * 2 + 0.5
    if channels_last:
        x = x.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, shape[:2])
    return x.requires_grad_()


def _run(f: Callable[[torch.Tensor], torch.Tensor], mods: list[nn.Module], x: torch.Tensor, calls: int = 1
         ) -> tuple[torch.Tensor, float, list[torch.Tensor], torch.Tensor]:
    """Spikes of the last call, its loss, the parameter gradients (summed over calls) and the input gradient."""
    x = x.detach().clone().requires_grad_()
    for _ in range(calls):
        s = f(x)
        w = torch.randn(s.shape, generator=torch.Generator().manual_seed(2), dtype=s.dtype)
        loss = (s * w).sum()
        loss.backward()
    params = [p for m in mods for p in m.parameters()]
    return s.detach(), float(loss.detach()), [p.grad.clone() for p in params], x.grad.clone()


def _compare(fold: TimeFold, neuron: nn.Module, x: torch.Tensor, calls: int = 1, tol: float = 1e-4) -> None:
    f2, n2 = copy.deepcopy(fold), copy.deepcopy(neuron)
    assert why_not(f2, n2, x) is None
    ref = _run(lambda z: neuron(fold(z)), [fold, neuron], x, calls)
    got = _run(lambda z: bn_neuron(f2, n2, z), [f2, n2], x, calls)
    assert torch.equal(ref[0], got[0]) and ref[0].sum() > 0 and (ref[0] == 0).any()
    assert got[1] == pytest.approx(ref[1], rel=tol, abs=tol)
    floor = 1e-6 if tol >= 1e-8 else 1e-12     # a bias before a batch norm has gradient 0: rounding noise only
    for a, b in zip(ref[2] + [ref[3]], got[2] + [got[3]]):
        assert torch.allclose(a, b, rtol=tol, atol=max(floor, tol * float(a.abs().max()))), float((a - b).abs().max())
    for a, b in zip(fold.buffers(), f2.buffers()):
        assert torch.allclose(a.double(), b.double(), rtol=1e-6, atol=1e-7)
    if tol < 1e-8:
        assert got[0].dtype == torch.float64


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("T", [1, 4])
def test_conv_bn_lif_equals_unfused(channels_last: bool, T: int) -> None:
    fold, neuron = _pair(nn.BatchNorm2d(3))
    if channels_last:
        fold = fold.to(memory_format=torch.channels_last)
    _compare(fold, neuron, _input((T, 5, 2, 7, 6), channels_last), calls=2)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("channels", [3, 18])       # channels-last: 18 = a vector of 16 channels and 2 more
def test_the_input_gradient_is_one_kernel_pass(channels_last: bool, channels: int) -> None:
    """BN's input gradient after the neuron's kernel: one LLVM pass over the conv output, not torch's addcmul_
    and add_ (the same bits: tests/kernels/test_llvm_stats.py)."""
    from torch.profiler import ProfilerActivity, profile
    fold, neuron = _pair(nn.BatchNorm2d(channels), conv=nn.Conv2d(2, channels, 3, padding=1, bias=False))
    if channels_last:
        fold = fold.to(memory_format=torch.channels_last)
    x = _input((4, 5, 2, 7, 6), channels_last)
    s = bn_neuron(fold, neuron, x)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        s.sum().backward()
    names = {e.name for e in prof.events()}
    # channels-last, the conv of 2 input channels runs direct and the batch norm's affine is part of its Function
    unit = "_ConvBatchAffineBackward" if channels_last else "_BatchAffineBackward"
    assert unit in names and not names & {"aten::addcmul_", "aten::addcmul"}, sorted(names)


@pytest.mark.parametrize("channels", [3, 16, 40])
@pytest.mark.parametrize("bias", [False, True])
def test_a_direct_conv_folds_the_input_gradient_into_its_weight_gradient(channels: int, bias: bool,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A channels-last fold of a few-channel conv and a batch norm: the statistics come out of the conv's kernel
    and, the input needing no gradient, BN's input gradient is folded into the conv's weight gradient (never
    written; with a conv bias it is written, for the bias's gradient). Loss, every parameter gradient and the
    running statistics equal the unfused ``neuron(fold(x))``."""
    from spikeforge.kernels import llvm_conv
    seen: list[bool] = []
    orig = llvm_conv.weight_grad
    monkeypatch.setattr(llvm_conv, "weight_grad", lambda *a, **k: seen.append("affine" in k) or orig(*a, **k))
    fold, neuron = _pair(nn.BatchNorm2d(channels), conv=nn.Conv2d(2, channels, 3, padding=1, bias=bias))
    fold = fold.to(memory_format=torch.channels_last)
    f2, n2 = copy.deepcopy(fold), copy.deepcopy(neuron)
    x = (torch.rand(4, 6, 2, 9, 7, generator=torch.Generator().manual_seed(5)) < 0.4).float()
    w = torch.randn(4, 6, channels, 9, 7, generator=torch.Generator().manual_seed(6))
    losses = []
    for f in (lambda z: neuron(fold(z)), lambda z: bn_neuron(f2, n2, z)):
        loss = (f(x) * w).sum()
        loss.backward()
        losses.append(float(loss.detach()))
    assert seen == [False, not bias]            # the unfused fold runs the direct conv too, its own gradient
    assert losses[1] == pytest.approx(losses[0], rel=1e-4, abs=1e-4)
    scale = max(float(p.grad.abs().max()) for p in fold.parameters() if p.grad is not None)
    assert scale > 1e-3
    for a, b in zip(fold.parameters(), f2.parameters()):   # a conv bias before BN: gradient 0 up to rounding
        assert a.grad is not None and b.grad is not None
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-5 * scale), float((a.grad - b.grad).abs().max())
    for a, b in zip(fold.buffers(), f2.buffers()):
        assert torch.allclose(a.double(), b.double(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("bn", [nn.BatchNorm2d(3, affine=False), nn.BatchNorm2d(3, track_running_stats=False),
                                nn.BatchNorm2d(3, momentum=None), nn.BatchNorm2d(3, eps=0.1)],
                         ids=["no-affine", "no-running-stats", "cumulative-average", "eps"])
def test_batch_norm_variants(bn: nn.Module) -> None:
    fold, neuron = _pair(bn)
    _compare(fold, neuron, _input((3, 4, 2, 5, 5)), calls=3)


def test_evaluation_uses_running_statistics() -> None:
    fold, neuron = _pair(nn.BatchNorm2d(3))
    bn = fold[1]
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 3.0)
    nn.init.uniform_(bn.weight, 0.5, 2.0)
    nn.init.uniform_(bn.bias, -0.5, 0.5)
    fold.eval()
    _compare(fold, neuron, _input((3, 4, 2, 5, 5)))
    with torch.inference_mode():
        x = _input((3, 4, 2, 5, 5)).detach()
        assert torch.equal(bn_neuron(fold, neuron, x), neuron(fold(x)))


def test_float64_agrees_to_double_precision() -> None:
    fold, neuron = _pair(nn.BatchNorm2d(3))
    fold, neuron = fold.double(), neuron.double()
    _compare(fold, neuron, _input((3, 4, 2, 5, 5), dtype=torch.float64), tol=1e-9)


def test_conv1d_and_linear_with_batchnorm1d() -> None:
    fold, neuron = _pair(nn.BatchNorm1d(3), conv=nn.Conv1d(2, 3, 1))
    _compare(fold, neuron, _input((3, 4, 2, 9)))
    fold, neuron = _pair(nn.BatchNorm1d(6), conv=nn.Linear(5, 6))
    _compare(fold, neuron, _input((3, 8, 5)))


@pytest.mark.parametrize("neuron", [PLIF(init_tau=2.0), LIF(tau=2.0, learn_threshold=True, v_reset=None)],
                         ids=["plif", "learnable-threshold-soft-reset"])
def test_neuron_parameters_get_their_gradients(neuron: nn.Module) -> None:
    fold, neuron = _pair(nn.BatchNorm2d(3), neuron)
    _compare(fold, neuron, _input((4, 4, 2, 5, 5)))
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in neuron.parameters())


def test_keeps_one_conv_output_for_backward_instead_of_two() -> None:
    """Bytes saved for backward (each storage once): the unfused pair keeps BN's input and output."""
    fold, neuron = _pair(nn.BatchNorm2d(3))
    x = _input((6, 8, 2, 10, 10))
    u_bytes = 6 * 8 * 3 * 10 * 10 * 4

    def saved(f: Callable[[], torch.Tensor]) -> int:
        seen: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            f()
        return sum(seen.values())
    unfused = saved(lambda: neuron(fold(x)))
    fused = saved(lambda: bn_neuron(fold, neuron, x))
    # fused: the conv's input and its output u (the per-channel arrays are kept as [C, 1, 1]: 12 bytes each)
    assert fused <= x.numel() * 4 + u_bytes + 1024
    assert unfused >= x.numel() * 4 + 2 * u_bytes


def test_why_not_names_each_case_and_runs_unfused() -> None:
    fold, neuron = _pair(nn.BatchNorm2d(3))
    x = _input((3, 4, 2, 5, 5))
    assert why_not(fold, neuron, x) is None
    assert "BatchNorm" in why_not(TimeFold(nn.Conv2d(2, 3, 1)), neuron, x)
    assert "BatchNorm" in why_not(TimeFold(nn.Conv2d(2, 3, 1), nn.SyncBatchNorm(3)), neuron, x)
    assert "scan neuron" in why_not(fold, nn.ReLU(), x)
    static = torch.randn(4, 2, 5, 5).expand(3, 4, 2, 5, 5)
    assert "static input" in why_not(fold, neuron, static)
    assert "float32" in why_not(fold, neuron, x.detach().half())
    seen = []
    h = fold[0].register_forward_hook(lambda m, i, o: seen.append(o.shape))
    assert "hooks" in why_not(fold, neuron, x)
    s = bn_neuron(fold, neuron, x)             # unfused: the hook sees the conv's output
    assert seen == [(12, 3, 5, 5)] and s.shape == (3, 4, 3, 5, 5)
    h.remove()
    g = nn.modules.module.register_module_forward_hook(lambda m, i, o: None)
    try:
        assert "global" in why_not(fold, neuron, x)
    finally:
        g.remove()
    fx_fold = torch.fx.symbolic_trace(nn.Sequential(nn.Identity()))
    assert fx_fold is not None
    proxy = torch.fx.Proxy(torch.fx.Graph().placeholder("x"))
    assert "fx" in why_not(fold, neuron, proxy)


def test_one_value_per_channel_in_training_is_refused_as_torch_does() -> None:
    fold, neuron = _pair(nn.BatchNorm2d(3))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        bn_neuron(fold, neuron, torch.randn(1, 1, 2, 1, 1))
    wrong = TimeFold(nn.Conv2d(2, 4, 1), nn.BatchNorm2d(3))
    with pytest.raises(RuntimeError, match=r"BatchNorm2d\(3\) got 4 channels"):
        bn_neuron(wrong, neuron, torch.randn(2, 2, 2, 3, 3))


def test_spiking_sequential_runs_pairs_fused_with_the_sequential_state_dict() -> None:
    def build() -> list[nn.Module]:
        torch.manual_seed(3)
        return [TimeFold(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4)), LIF(), TimeFold(nn.MaxPool2d(2)),
                TimeFold(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)), LIF()]
    seq, ref = SpikingSequential(*build()), nn.Sequential(*build())
    assert list(seq.state_dict()) == list(ref.state_dict())
    x = _input((3, 4, 2, 8, 8))
    calls = []
    for m in seq:
        if isinstance(m, TimeFold):
            m.register_forward_pre_hook(lambda *a: calls.append(1))
    s1 = ref(x)
    seq_plain = SpikingSequential(*build())
    assert torch.equal(seq_plain(x), s1)
    assert seq(x).shape == s1.shape and len(calls) == 3     # hooked folds run unfused: every hook fires


@pytest.mark.parametrize("name", ["spiking_cnn_tiny", "sew_resnet_tiny", "spikformer_tiny", "spenser"])
def test_zoo_models_fused_equal_unfused(name: str) -> None:
    """Every conv-BN-neuron unit of the model fused, against ``fuse_bn = False`` on every fold."""
    from spikeforge.models import create_model
    torch.manual_seed(0)
    kw = {"in_channels": 2, "img_size": 16, "T": 3} if name != "spikformer_tiny" else {"T": 3}
    fused = create_model(name, **kw)
    plain = copy.deepcopy(fused)
    for m in plain.modules():
        if isinstance(m, TimeFold):
            m.fuse_bn = False
    side = 16 if name != "spikformer_tiny" else fused.img_size
    x = torch.randn(3, 4, fused.in_channels, side, side, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 3])
    losses = []
    for net in (plain, fused):
        loss = nn.functional.cross_entropy(net(x).mean(0), y)
        loss.backward()
        losses.append(float(loss.detach()))
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    for (n, a), b in zip(plain.named_parameters(), fused.parameters()):
        assert a.grad is not None and b.grad is not None, n
        assert torch.allclose(a.grad, b.grad, rtol=1e-3, atol=1e-6 + 1e-3 * float(a.grad.abs().max())), n
    for a, b in zip(plain.buffers(), fused.buffers()):
        assert torch.allclose(a.double(), b.double(), rtol=1e-5, atol=1e-6)


def test_a_second_derivative_through_the_conv_bn_unit_raises() -> None:
    """The unit's kernels (and the fused neuron's before it) are not differentiable: differentiating the gradient
    raises instead of giving 0."""
    fold, neuron = _pair(nn.BatchNorm2d(4), conv=nn.Conv2d(2, 4, 3, padding=1, bias=False))
    fold = fold.to(memory_format=torch.channels_last)
    x = torch.rand(3, 2, 2, 6, 6)
    s = bn_neuron(fold, neuron, x)
    (g,) = torch.autograd.grad((s * torch.rand_like(s)).sum(), fold[0].weight, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|does not require grad"):
        g.sum().backward()

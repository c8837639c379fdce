"""TimeFold / time_fold equal running the module step by step; ToSequence; SeqDropout shares its mask."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from spikeforge.layers import SeqDropout, SeqDropout2d, TimeFold, ToSequence, time_fold


def per_step(module: nn.Module, x_seq: torch.Tensor) -> torch.Tensor:
    return torch.stack([module(x) for x in x_seq])


@pytest.mark.parametrize("module", [
    nn.Conv2d(3, 5, 3, padding=1), nn.MaxPool2d(2), nn.AvgPool2d(3, 2, 1), nn.Flatten(),
    nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)),
])
def test_timefold_equals_per_step(module: nn.Module) -> None:
    x = torch.randn(5, 3, 3, 8, 8)
    folded = TimeFold(module)(x)
    assert torch.allclose(folded, per_step(module, x), atol=1e-6)
    assert torch.allclose(time_fold(module, x), folded)


def test_timefold_eval_batchnorm_equals_per_step_and_train_uses_time_and_batch() -> None:
    bn = nn.BatchNorm2d(3)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    x = torch.randn(4, 2, 3, 5, 5) * 2 + 1
    bn.eval()
    assert torch.allclose(TimeFold(bn)(x), per_step(bn, x), atol=1e-6)
    bn.train()
    y = TimeFold(bn)(x)      # statistics over T·B·H·W per channel: normalised over all steps together
    m = y.transpose(0, 2).reshape(3, -1)
    assert torch.allclose(m.mean(1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(m.var(1, unbiased=False), torch.ones(3), atol=1e-3)


def test_timefold_is_sequential_of_plain_layers_and_keeps_grad() -> None:
    conv = nn.Conv2d(2, 4, 3)
    tf = TimeFold(conv, nn.BatchNorm2d(4))
    assert tf[0] is conv and isinstance(tf[1], nn.BatchNorm2d)
    x = torch.randn(3, 2, 2, 6, 6, requires_grad=True)
    tf(x).square().sum().backward()
    assert x.grad is not None and conv.weight.grad is not None
    with pytest.raises(ValueError, match="time-first"):
        time_fold(conv, torch.randn(4))


def test_to_sequence_repeats_static_and_passes_sequences() -> None:
    enc = ToSequence(T=3)
    x = torch.randn(2, 1, 4, 4)
    y = enc(x)
    assert y.shape == (3, 2, 1, 4, 4) and all(torch.equal(y[t], x) for t in range(3))
    seq = torch.randn(7, 2, 1, 4, 4)
    assert enc(seq) is seq
    with pytest.raises(ValueError, match="expected a batch"):
        enc(torch.randn(4, 4))


def test_seq_dropout_shares_mask_over_time() -> None:
    d = SeqDropout(0.5)
    x = torch.ones(6, 4, 50)
    y = d(x)
    zero = y == 0
    assert all(torch.equal(zero[t], zero[0]) for t in range(6))
    assert 0.3 < zero[0].float().mean() < 0.7
    assert torch.all((y == 0) | (y == 2.0))          # kept units scaled by 1/(1 − p)
    d.eval()
    assert d(x) is x


def test_seq_dropout2d_drops_whole_channels() -> None:
    d = SeqDropout2d(0.5)
    y = d(torch.ones(3, 2, 40, 5, 5))
    per_channel = y.flatten(3)
    assert torch.all(per_channel.amin(-1) == per_channel.amax(-1))       # constant over H, W
    assert torch.equal(y[0], y[2])                                        # and over time
    with pytest.raises(ValueError, match="p must lie"):
        SeqDropout(1.0)


def test_channels_last_layers_get_channels_last_gradients() -> None:
    cl = torch.channels_last
    conv = nn.Conv2d(2, 4, 3, padding=1).to(memory_format=cl)
    seen: list[bool] = []
    conv.register_full_backward_hook(lambda m, gin, gout: seen.append(gout[0].is_contiguous(memory_format=cl)))
    x = torch.randn(3, 2, 2, 6, 6, requires_grad=True)
    y = TimeFold(conv)(x)
    assert y.flatten(0, 1).is_contiguous(memory_format=cl)          # the layout survives the unfold
    (y.flatten(2) * torch.randn(3, 2, 144)).sum().backward()        # flatten: a plain-contiguous gradient
    assert seen == [True]
    ref = torch.stack([conv(xt) for xt in x.detach()])
    assert torch.allclose(y, ref, atol=1e-6)


def test_a_channels_last_conv_converts_a_plain_input_once() -> None:
    """Left to the conv, an NCHW input meets channels-last weights twice (forward, and the weight gradient):
    the fold converts it once. Counted by the profiler as copies of a tensor of the input's shape. (Six input
    channels: with up to four the direct kernel runs, which reads the input as it is and copies nothing.)"""
    from torch.profiler import ProfilerActivity, profile
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 4, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
    ref = nn.Conv2d(6, 4, 3, padding=1, bias=False)
    ref.load_state_dict(conv.state_dict())
    x = torch.randn(3, 2, 6, 6, 6)
    for cin, expect in ((6, 1), (2, 0)):
        c = conv if cin == 6 else nn.Conv2d(2, 4, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            TimeFold(c)(x[:, :, :cin]).sum().backward()
        copies = [e for e in prof.events() if e.name == "aten::copy_" and e.input_shapes[:1] == [[6, cin, 6, 6]]]
        assert len(copies) == expect
    conv.zero_grad(set_to_none=True)
    y = TimeFold(conv)(x)
    y.sum().backward()
    TimeFold(ref)(x).sum().backward()
    torch.testing.assert_close(y, TimeFold(ref)(x))
    torch.testing.assert_close(conv.weight.grad, ref.weight.grad)


def test_the_conversion_leaves_lazy_and_parametrized_convs_alone() -> None:
    """Deciding whether to convert reads no computed weight: a lazy conv still makes its weight on the first call,
    and a spectral-normed conv runs its power iteration once per call, as unfolded."""
    from torch.nn.utils.parametrizations import spectral_norm
    x = torch.randn(2, 2, 4, 8, 8)
    assert TimeFold(nn.LazyConv2d(6, 3))(x).shape == (2, 2, 6, 6, 6)
    torch.manual_seed(0)
    conv = spectral_norm(nn.Conv2d(4, 6, 3)).to(memory_format=torch.channels_last)
    ref = copy.deepcopy(conv)
    y = TimeFold(conv)(x)
    assert torch.equal(y.flatten(0, 1), ref(x.flatten(0, 1)))
    assert torch.equal(conv.parametrizations.weight[0]._u, ref.parametrizations.weight[0]._u)


# -- a static input (direct encoding) runs the fold once -------------------------------------------------------
def _pair(channels_last: bool, momentum: float | None = 0.1) -> tuple[nn.Module, nn.Module]:
    from spikeforge.models import create_model
    torch.manual_seed(3)
    net = create_model("spiking_cnn_tiny", in_channels=1, img_size=12, width=4, T=5)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = momentum
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    ref = copy.deepcopy(net)
    for m in ref.modules():
        if isinstance(m, TimeFold):
            m.static_once = False
    return net, ref


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_static_input_once_equals_every_step(channels_last: bool, momentum: float | None) -> None:
    """Loss, every gradient and BatchNorm's running statistics (unbiased with the T·B·H·W count) equal the
    every-step path over three training steps; eval outputs equal too."""
    net, ref = _pair(channels_last, momentum)
    assert net.block1.why_not(torch.zeros(5, 2, 1, 12, 12).expand(5, 2, 1, 12, 12)) is not None   # not a view
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        x, y = torch.rand(6, 1, 12, 12, generator=gen), torch.randint(0, 10, (6,), generator=gen)
        x_seq = x.unsqueeze(0).expand(5, *x.shape)
        assert net.block1.why_not(x_seq) is None and ref.block1.why_not(x_seq) is None
        losses = []
        for m in (net, ref):
            m.zero_grad()
            loss = nn.functional.cross_entropy(m(x_seq).mean(0), y)
            loss.backward()
            losses.append(loss)
        torch.testing.assert_close(losses[0], losses[1], rtol=1e-6, atol=1e-6)
        for (name, p), q in zip(net.named_parameters(), ref.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)
        with torch.no_grad():
            for p, q in zip(net.parameters(), ref.parameters()):
                p -= 0.5 * p.grad
                q -= 0.5 * q.grad
    for (name, b), c in zip(net.named_buffers(), ref.buffers()):
        torch.testing.assert_close(b, c, rtol=1e-5, atol=1e-6, msg=name)
    assert int(net.block1[1].num_batches_tracked) == 3
    net.eval(), ref.eval()
    x = torch.rand(4, 1, 12, 12)
    torch.testing.assert_close(net(x), ref(x), rtol=1e-5, atol=1e-5)


def test_static_input_runs_the_first_conv_on_one_step() -> None:
    net, _ = _pair(False)
    seen: list[tuple[int, ...]] = []

    class Seen(nn.Conv2d):                         # records its input without a hook (hooks see every step)
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(tuple(x.shape))
            return super().forward(x)
    conv = Seen(1, 4, 3, padding=1, bias=False)
    conv.load_state_dict(net.block1[0].state_dict())
    net.block1[0] = conv
    out = net(torch.rand(3, 1, 12, 12))
    assert seen == [(3, 1, 12, 12)] and out.shape == (5, 3, 10)
    spikes = net.sn1(net.block1(net.stem(torch.rand(3, 1, 12, 12))))
    assert spikes.shape == (5, 3, 4, 12, 12) and spikes.stride(0) != 0      # the neuron still runs every step


def test_why_not_names_the_reason() -> None:
    fold = TimeFold(nn.Conv2d(1, 2, 3), nn.Dropout(0.5))
    static = torch.rand(2, 1, 5, 5).unsqueeze(0).expand(4, 2, 1, 5, 5)
    assert "Dropout" in fold.why_not(static)
    assert "differs between steps" in TimeFold(nn.Conv2d(1, 2, 3)).why_not(torch.rand(4, 2, 1, 5, 5))
    assert "single step" in TimeFold(nn.Conv2d(1, 2, 3)).why_not(static[:1])
    assert TimeFold(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.MaxPool2d(2), nn.Flatten()).why_not(static) is None
    assert "SyncBatchNorm" in TimeFold(nn.SyncBatchNorm(1)).why_not(static)
    hooked = TimeFold(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    seen: list[tuple[int, ...]] = []
    hooked[1].register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    assert "hooks" in hooked.why_not(static)
    hooked(static)
    assert seen == [(8, 2, 3, 3)]                          # the hook sees all T·B samples
    # dropout keeps its per-step masks: the fold runs every step
    torch.manual_seed(0)
    y = TimeFold(nn.Dropout(0.5))(static)
    assert not torch.equal(y[0], y[1])


def test_operation_count_sees_every_step() -> None:
    from spikeforge.analysis import OpCounter
    net, ref = _pair(False)
    counts, x = [], torch.rand(2, 1, 12, 12)
    for m in (net, ref):
        with OpCounter(m) as c:
            m(x)
        counts.append(c.totals())
    assert counts[0] == counts[1] and counts[0]["mac"] > 0
    assert all(f.static_once for f in net.modules() if isinstance(f, TimeFold))     # restored

"""The gradient hand-off between a max pool and the neuron before it (``bn_neuron(..., pool)``,
``kernels.pool.handoff``): the same loss and gradients bit for bit, one pooled buffer of the spikes' size less
per pair, and never while anyone else could see the gradient (``handoff_why_not``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeforge.kernels.pool import POOL, BufferPool, handoff
from spikeforge.layers import TimeFold
from spikeforge.layers.fused_bn import bn_neuron, handoff_why_not
from spikeforge.models import create_model
from spikeforge.neurons import LIF

T, B = 3, 4


def _net(name: str, hand_off: bool, channels_last: bool = False, fuse_bn: bool = True) -> nn.Module:
    torch.manual_seed(0)
    kw = dict(in_channels=2, width=8, img_size=16) if name == "spiking_cnn_tiny" else \
        dict(in_channels=2, img_size=16, num_classes=10)
    net = create_model(name, **kw)
    for m in net.modules():
        if isinstance(m, TimeFold):
            m.hand_off, m.fuse_bn = hand_off, fuse_bn
    return net.to(memory_format=torch.channels_last) if channels_last else net


def _step(net: nn.Module, steps: int = 1) -> tuple[float, list[torch.Tensor], int]:
    """Loss, parameter gradients (summed over ``steps``) and the number of gradients handed off."""
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(T, B, 2, 16, 16, generator=g) < 0.3).float()
    y = torch.randint(0, 10, (B,), generator=g)
    before = POOL.received
    for _ in range(steps):
        loss = nn.functional.cross_entropy(net(x).mean(0), y)
        loss.backward()
    return float(loss.detach()), [p.grad.clone() for p in net.parameters()], POOL.received - before


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("fuse_bn", [True, False])
def test_same_loss_and_gradients_bit_for_bit(channels_last: bool, fuse_bn: bool) -> None:
    ref = _step(_net("spiking_cnn_tiny", False, channels_last, fuse_bn), steps=2)
    got = _step(_net("spiking_cnn_tiny", True, channels_last, fuse_bn), steps=2)
    assert (ref[2], got[2]) == (0, 4)          # two neuron-pool pairs, two steps
    assert got[0] == ref[0]
    assert all(torch.equal(a, b) for a, b in zip(ref[1], got[1]))
    assert all(float(g.abs().sum()) > 0 for g in got[1])


def test_spiking_sequential_hands_off_in_vgg() -> None:
    ref = _step(_net("spiking_vgg_tiny", False))
    got = _step(_net("spiking_vgg_tiny", True))
    assert ref[2] == 0 and got[2] > 0
    assert got[0] == ref[0] and all(torch.equal(a, b) for a, b in zip(ref[1], got[1]))


def test_one_buffer_of_the_spikes_size_less_per_pair() -> None:
    """The pool's pooled bytes after two steps from an empty pool: with the hand-off, each neuron's gradient is
    written over the pool's, so one buffer of each neuron's output size (``T·B·8·16·16`` and ``T·B·16·8·8``
    float32 values) is never taken."""
    sizes = {}
    for hand in (False, True):
        net = _net("spiking_cnn_tiny", hand)
        POOL.clear()
        _step(net, steps=2)
        sizes[hand] = POOL.nbytes()
    assert sizes[False] - sizes[True] == 4 * T * B * (8 * 16 * 16 + 16 * 8 * 8)


def test_a_hook_that_keeps_the_pool_gradient_sees_it_intact() -> None:
    """A backward hook on the pool is shown the gradient the neuron would overwrite: no hand-off then."""
    kept: list[torch.Tensor] = []
    ref_kept: list[torch.Tensor] = []
    for hand, store in ((False, ref_kept), (True, kept)):
        net = _net("spiking_cnn_tiny", hand)
        net.pool1.register_full_backward_hook(lambda m, gi, go, store=store: store.append(gi[0]))
        _, _, received = _step(net)
        assert received == (1 if hand else 0)   # the second pair still hands off; the hooked one does not
    assert torch.equal(kept[0], ref_kept[0]) and float(kept[0].abs().sum()) > 0


def test_handoff_why_not_names_each_case() -> None:
    n, pool = LIF(), TimeFold(nn.MaxPool2d(2))
    assert handoff_why_not(n, pool) is None
    assert "MaxPool2d" in handoff_why_not(n, TimeFold(nn.AvgPool2d(2)))
    assert "MaxPool2d" in handoff_why_not(n, nn.MaxPool2d(2))
    off = TimeFold(nn.MaxPool2d(2))
    off.hand_off = False
    assert "hand_off is off" in handoff_why_not(n, off)
    assert "not a scan neuron" in handoff_why_not(nn.ReLU(), pool)
    h = n.register_forward_hook(lambda *a: None)
    assert "LIF has hooks" in handoff_why_not(n, pool)
    h.remove()
    h = pool[0].register_full_backward_hook(lambda *a: None)
    assert "MaxPool2d has hooks" in handoff_why_not(n, pool)
    h.remove()
    h = nn.modules.module.register_module_full_backward_hook(lambda *a: None)
    try:
        assert "global module hooks" in handoff_why_not(n, pool)
    finally:
        h.remove()
    assert handoff_why_not(n, pool) is None


def test_bn_neuron_with_pool_equals_pool_of_bn_neuron() -> None:
    torch.manual_seed(0)
    fold, n, pool = TimeFold(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3)), LIF(), TimeFold(nn.MaxPool2d(2))
    x = torch.randn(T, B, 2, 8, 8).requires_grad_()
    before = POOL.received
    a = bn_neuron(fold, n, x, pool)
    (a * torch.arange(a.numel()).view_as(a)).sum().backward()
    ga, x.grad = x.grad.clone(), None
    assert POOL.received - before == 1
    b = pool(bn_neuron(fold, n, x))
    (b * torch.arange(b.numel()).view_as(b)).sum().backward()
    assert torch.equal(a, b) and torch.equal(ga, x.grad) and float(ga.abs().sum()) > 0


def test_buffer_pool_receives_only_whole_given_buffers_once() -> None:
    pool = BufferPool()
    t = pool.take((4, 6), torch.float32)
    pool.give(torch.zeros(24))              # not a pooled buffer: nothing is marked
    assert not pool.receive(t)
    pool.give(t)
    assert not pool.receive(t[1:])          # a part of it
    pool.give(t)
    assert pool.receive(t) and not pool.receive(t) and pool.received == 1
    pool.give(t)
    del t
    u = pool.take((24,), torch.float32)     # handed out again: the mark is gone
    assert not pool.receive(u)


def test_outside_the_scope_nothing_is_handed_off() -> None:
    """``handoff()`` is read when the kernels run forward: a pool run outside it gives nothing, even when its
    gradient reaches a neuron that ran inside."""
    n, pool = LIF(), TimeFold(nn.MaxPool2d(2))
    x = torch.randn(T, B, 3, 8, 8).requires_grad_()
    before = POOL.received
    with handoff():
        s = n(x)
    pool(s).sum().backward()
    assert POOL.received == before and float(x.grad.abs().sum()) > 0


class _TwoScans(LIF):
    """A neuron whose own forward uses its spikes twice: autograd hands both scans one gradient tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.run(x)[0] + self.run(0.5 * x)[0]


def test_a_neuron_with_its_own_forward_keeps_its_buffer() -> None:
    assert "standard forward" in handoff_why_not(_TwoScans(), TimeFold(nn.MaxPool2d(2)))
    grads = []
    for hand in (False, True):
        torch.manual_seed(0)
        fold, n = TimeFold(nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3)), _TwoScans()
        pool = TimeFold(nn.MaxPool2d(2))
        pool.hand_off = hand
        x = torch.randn(T, B, 2, 8, 8).requires_grad_()
        before = POOL.received
        y = bn_neuron(fold, n, x, pool)
        (y * torch.arange(y.numel()).view_as(y)).sum().backward()
        assert POOL.received == before
        grads.append(x.grad)
    assert torch.equal(grads[0], grads[1]) and float(grads[0].abs().sum()) > 0

"""The direct convolution for few input channels equals torch's ``conv2d`` in values and gradients, writes a
channels-last output, gives the same bits for any thread count, and says when it does not apply."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import fx, nn
from torch.nn import functional as F

from spikeforge.kernels import llvm_conv
from spikeforge.kernels.llvm_conv import conv2d_few, why_not
from spikeforge.layers import TimeFold


def _conv(cin: int, cout: int, k: Any, padding: Any, bias: bool, seed: int = 0) -> nn.Conv2d:
    torch.manual_seed(seed)
    return nn.Conv2d(cin, cout, k, padding=padding, bias=bias).to(memory_format=torch.channels_last)


def _run(conv: nn.Conv2d, x: torch.Tensor, fn: Any, g: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Output, then the gradients of the weight, the input and (if any) the bias, for ``sum(out · g)``."""
    conv.zero_grad(set_to_none=True)
    xr = x.detach().clone().requires_grad_()
    y = fn(conv, xr)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(3)) if g is None else g
    (y * g).sum().backward()
    grads = [conv.weight.grad, xr.grad] + ([conv.bias.grad] if conv.bias is not None else [])
    return [y.detach(), *grads]


# 16 and 32 output channels are whole vectors; 40 = 16 + 16 + 8 and 5 end in a part-vector (masked lanes);
# kernel 3×5 with padding (1, 2), no padding, and 1 to 4 input channels
CASES = [(2, 16, 3, 1, False), (1, 40, 5, 2, True), (3, 5, (3, 5), (1, 2), True), (4, 32, 3, 0, False),
         (2, 21, 1, 0, True)]


@pytest.mark.parametrize("cin,cout,k,padding,bias", CASES)
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
def test_equals_torch_conv2d(cin: int, cout: int, k: Any, padding: Any, bias: bool, layout: str) -> None:
    conv = _conv(cin, cout, k, padding, bias)
    x = torch.randn(6, cin, 11, 13, generator=torch.Generator().manual_seed(1))
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":                               # a view: every other column of a wider input
        x = torch.randn(6, cin, 11, 26, generator=torch.Generator().manual_seed(1))[..., ::2]
    assert why_not(conv, x) is None
    ours = _run(conv, x, conv2d_few)
    ref = _run(conv, x, lambda c, v: F.conv2d(v, c.weight, c.bias, padding=c.padding))
    assert ours[0].is_contiguous(memory_format=torch.channels_last)
    assert ours[1].stride() == conv.weight.stride()         # the gradient in the weight's own layout
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=2e-5)
    assert float(ours[1].abs().max()) > 1.0                 # the sums are of many terms, not trivially small


def test_hand_computed_values() -> None:
    """A 3×3 all-ones kernel over a ramp sums each pixel's in-image neighbours (zero padding outside)."""
    conv = _conv(1, 1, 3, 1, False)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    x = torch.arange(12.0).view(1, 1, 3, 4)
    y = conv2d_few(conv, x)[0, 0]
    expect = torch.tensor([[10.0, 18.0, 24.0, 18.0],
                           [27.0, 45.0, 54.0, 39.0],
                           [26.0, 42.0, 48.0, 34.0]])
    assert torch.equal(y.detach(), expect)


def test_same_bits_for_any_thread_count() -> None:
    conv = _conv(2, 40, 3, 1, True)
    x = (torch.rand(37, 2, 17, 15, generator=torch.Generator().manual_seed(2)) < 0.2).float()
    old = torch.get_num_threads()
    out = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            out.append(_run(conv, x, conv2d_few))
    finally:
        torch.set_num_threads(old)
    for a, b in zip(*out):
        assert torch.equal(a, b)


def test_an_empty_batch() -> None:
    conv = _conv(2, 16, 3, 1, True)
    y, gw, gx, gb = _run(conv, torch.zeros(0, 2, 5, 5), conv2d_few)
    assert y.shape == (0, 16, 5, 5) and gx.shape == (0, 2, 5, 5)
    assert torch.equal(gw, torch.zeros_like(gw)) and torch.equal(gb, torch.zeros_like(gb))


@pytest.mark.parametrize("make,expect", [
    (lambda: nn.Conv2d(2, 8, 3, stride=2), "stride 1"),
    (lambda: nn.Conv2d(2, 8, 3, dilation=2), "dilation 1"),
    (lambda: nn.Conv2d(2, 8, 3, padding="same"), "numeric zero padding"),
    (lambda: nn.Conv2d(2, 8, 3, padding=1, padding_mode="reflect"), "padding_mode='reflect'"),
    (lambda: nn.Conv2d(4, 8, 3, groups=2), "groups 1"),
    (lambda: nn.Conv2d(5, 8, 3), "5 input channels"),
    (lambda: nn.Conv2d(2, 300, 1), "300 output channels"),
    (lambda: nn.Conv2d(3, 8, 5), "taps"),
])
def test_why_not_names_the_setting(make: Any, expect: str) -> None:
    conv = make().to(memory_format=torch.channels_last)
    x = torch.randn(2, conv.in_channels, 9, 9)
    reason = why_not(conv, x)
    assert reason is not None and expect in reason
    with pytest.raises(ValueError, match="conv2d_few: "):
        conv2d_few(conv, x)


def test_why_not_for_the_input_and_the_module() -> None:
    conv = _conv(2, 8, 3, 0, False)
    assert "not channels-last" in str(why_not(nn.Conv2d(2, 8, 3), torch.randn(1, 2, 5, 5)))
    assert "float32" in str(why_not(conv, torch.randn(1, 2, 5, 5, dtype=torch.float64)))
    assert "[N, 2, H, W]" in str(why_not(conv, torch.randn(1, 3, 5, 5)))
    assert "smaller than the padded kernel" in str(why_not(conv, torch.randn(1, 2, 2, 5)))
    assert "fx" in str(why_not(conv, fx.Proxy(fx.Graph().placeholder("x"))))
    x = torch.randn(1, 2, 5, 5)
    for register in (conv.register_forward_hook, conv.register_full_backward_hook):
        handle = register(lambda *a: None)
        assert "the module has hooks" in str(why_not(conv, x))
        handle.remove()
    assert why_not(conv, x) is None
    handle = nn.modules.module.register_module_full_backward_hook(lambda *a: None)
    try:
        assert "global module hooks" in str(why_not(conv, x))
    finally:
        handle.remove()

    class Sub(nn.Conv2d):
        pass

    assert "not a plain nn.Conv2d" in str(why_not(Sub(2, 8, 3), torch.randn(1, 2, 5, 5)))


def test_a_channels_last_fold_runs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """``TimeFold`` runs a channels-last few-channel conv directly (and an NCHW one through torch), equal to the
    conv applied to every step."""
    calls: list[tuple[int, ...]] = []
    orig = llvm_conv._ConvFew.apply

    def spy(x: torch.Tensor, *a: Any) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return orig(x, *a)

    monkeypatch.setattr(llvm_conv._ConvFew, "apply", spy)
    x_seq = (torch.rand(4, 3, 2, 10, 10, generator=torch.Generator().manual_seed(4)) < 0.3).float()
    for channels_last in (True, False):
        torch.manual_seed(0)
        fold = TimeFold(nn.Conv2d(2, 16, 3, padding=1, bias=False))
        if channels_last:
            fold = fold.to(memory_format=torch.channels_last)
        calls.clear()
        y = fold(x_seq)
        assert calls == ([(12, 2, 10, 10)] if channels_last else [])
        ref = torch.stack([F.conv2d(x, fold[0].weight, padding=1) for x in x_seq])
        torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cout", [16, 40])
def test_statistics_and_the_folded_affine(cout: int) -> None:
    """``forward(stats=True)`` sums each output channel as float64 sums of the output do; the weight gradient with
    a batch norm's ``fma(u, k2, g) + k1`` folded in has the bits of the one for that gradient written out
    (``llvm_stats.channel_affine_add_``)."""
    from spikeforge.kernels.llvm_stats import channel_affine_add_
    conv = _conv(2, cout, 3, 1, True)
    g = llvm_conv.geometry(conv)
    x = (torch.rand(9, 2, 12, 10, generator=torch.Generator().manual_seed(7)) < 0.3).float()
    u, sums = llvm_conv.forward(x, conv.weight, conv.bias, g, stats=True)
    assert sums is not None and sums.dtype == torch.float64
    ref = torch.stack([u.double().sum((0, 2, 3)), u.double().pow(2).sum((0, 2, 3))])
    torch.testing.assert_close(sums, ref, rtol=1e-12, atol=1e-9)
    gen = torch.Generator().manual_seed(8)
    gu = torch.randn(u.shape, generator=gen).contiguous(memory_format=torch.channels_last)
    k2, k1 = torch.randn(cout, generator=gen), torch.randn(cout, generator=gen)
    folded = llvm_conv.weight_grad(x, gu, g, affine=(u, k2, k1))
    written = llvm_conv.weight_grad(x, channel_affine_add_(gu.clone(), u, k2, k1, 1), g)
    assert torch.equal(folded, written)
    expect = torch.ops.aten.convolution_backward(gu + k2.view(1, -1, 1, 1) * u + k1.view(1, -1, 1, 1), x,
                                                 conv.weight, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                                                 [False, True, False])[1]
    torch.testing.assert_close(folded, expect, rtol=1e-4, atol=1e-3)


def test_second_derivatives_as_torch() -> None:
    """With ``create_graph`` (a gradient penalty) the backward runs torch's differentiable convolution_backward: the
    weight's second-order gradient equals torch's."""
    conv = _conv(2, 16, 3, 1, True)
    x = torch.randn(3, 2, 7, 6, generator=torch.Generator().manual_seed(9))
    grads = []
    for fn in (conv2d_few, lambda c, v: F.conv2d(v, c.weight, c.bias, padding=c.padding)):
        conv.zero_grad(set_to_none=True)
        xr = x.clone().requires_grad_()
        y = fn(conv, xr)
        (gx,) = torch.autograd.grad((y * y).sum(), xr, create_graph=True)
        (gx * gx).sum().backward()
        grads.append(conv.weight.grad.clone())
    assert float(grads[1].abs().max()) > 1e-3
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-4)

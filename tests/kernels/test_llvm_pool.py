"""The fused 2×2 max pooling equals torch's ``max_pool2d`` in values and gradients, keeps one byte per output,
and says when it does not apply."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from spikeforge.kernels.llvm_pool import max_pool_2x2, why_not
from spikeforge.layers import TimeFold


def _both(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = F.max_pool2d(x1, 2), max_pool_2x2(x2)
    g = torch.randn(y1.shape, generator=torch.Generator().manual_seed(1))
    y1.backward(g)
    y2.backward(g)
    return y1, y2, x1.grad, x2.grad


# channels-last runs whole vectors of channels, then one at a time: 16, 21 and 40 channels cover both parts
@pytest.mark.parametrize("shape", [(4, 3, 8, 8), (2, 5, 7, 9), (1, 1, 3, 2), (0, 2, 4, 4), (64, 16, 34, 34),
                                   (3, 21, 7, 6), (2, 40, 5, 9)])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True])
def test_equals_torch_max_pool(shape: tuple[int, ...], threads: int, channels_last: bool) -> None:
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    try:
        gen = torch.Generator().manual_seed(0)
        for x in ((torch.rand(shape, generator=gen) < 0.3).float(),            # spikes: ties in most windows
                  torch.randn(shape, generator=gen).round()):                    # integers: ties and negatives
            y1, y2, g1, g2 = _both(x.contiguous(memory_format=fmt))
            assert torch.equal(y1, y2) and torch.equal(g1, g2)
            if channels_last and x.numel():
                assert y2.is_contiguous(memory_format=fmt) and g2.is_contiguous(memory_format=fmt)
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("channels", [1, 19])
def test_nan_takes_the_window_as_torch_does(channels: int) -> None:
    x = torch.randn(1, channels, 4, 4)
    c = channels - 1                     # with 19 channels-last: channel 0 in a vector, channel 18 one at a time
    for ch in {0, c}:
        x[0, ch, 0, 1] = float("nan")        # second position of the first window
        x[0, ch, 2, 2] = x[0, ch, 3, 3] = float("nan")    # two NaNs in one window: the later one wins in torch
    y1, y2, g1, g2 = _both(x.contiguous(memory_format=torch.channels_last) if channels > 1 else x)
    assert bool(y2.isnan().any())
    assert torch.equal(y1.isnan(), y2.isnan()) and torch.equal(y1.nan_to_num(), y2.nan_to_num())
    assert torch.equal(g1, g2)


def test_keeps_one_byte_per_output() -> None:
    x = torch.rand(2, 4, 10, 10, requires_grad=True)
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        max_pool_2x2(x)
    assert [(t.dtype, tuple(t.shape)) for t in saved] == [(torch.uint8, (2, 4, 5, 5))]


def test_why_not() -> None:
    x = torch.rand(2, 3, 8, 8)
    assert why_not(nn.MaxPool2d(2), x) is None
    assert "kernel_size=2" in why_not(nn.MaxPool2d(3, 2), x)
    assert "kernel_size=2" in why_not(nn.MaxPool2d(2, padding=1), x)
    assert "float32" in why_not(nn.MaxPool2d(2), x.double())
    assert why_not(nn.MaxPool2d(2), x.contiguous(memory_format=torch.channels_last)) is None
    assert "contiguous" in why_not(nn.MaxPool2d(2), x[..., ::2])
    hooked = nn.MaxPool2d(2)
    hooked.register_forward_hook(lambda *a: None)
    assert "hooks" in why_not(hooked, x)
    assert "plain" in why_not(nn.AvgPool2d(2), x)
    assert "smaller than the window" in why_not(nn.MaxPool2d(2), torch.rand(2, 3, 1, 5))
    with pytest.raises(ValueError, match="float32"):
        max_pool_2x2(x.double())


def test_timefold_runs_max_pool_fused() -> None:
    fold = TimeFold(nn.MaxPool2d(2), nn.Flatten())
    x = torch.rand(3, 2, 4, 6, 6, requires_grad=True)
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = fold(x)
    assert any(t.dtype == torch.uint8 for t in saved)
    ref = torch.stack([F.max_pool2d(s, 2).flatten(1) for s in x])
    assert torch.equal(y, ref)

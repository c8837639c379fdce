"""The one-pass per-channel statistics equal torch's (in double), for every layout a batch norm meets, and do not
depend on the thread count."""

from __future__ import annotations

import pytest
import torch

from spikeforge.kernels.llvm_stats import channel_affine_add_, channel_mean_var, channel_sums


def _layouts(shape: tuple[int, ...], gen: torch.Generator) -> list[torch.Tensor]:
    x = torch.randn(shape, generator=gen) * 3 + 5
    out = [x]
    if len(shape) == 5:      # [T, B, C, H, W] with channels-last steps
        out.append(x.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, shape[:2]))
    return out


# channels-last rows are read a vector of channels at a time, then one at a time: 21 and 40 channels cover both
@pytest.mark.parametrize("shape", [(3, 4, 5, 6, 7), (2, 2, 3, 1, 1), (4, 3, 8, 10), (5, 7, 6), (1, 2, 1, 3, 3),
                                   (2, 3, 21, 4, 5), (1, 2, 40, 3, 3)])
@pytest.mark.parametrize("threads", [1, 2])
def test_equals_torch_in_double(shape: tuple[int, ...], threads: int) -> None:
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for x in _layouts(shape, torch.Generator().manual_seed(0)):
            dims = [d for d in range(x.dim()) if d != 2]
            var, mean = torch.var_mean(x.double(), dim=dims, correction=0)
            m, v = channel_mean_var(x, 2)
            assert m.dtype == torch.float64 and m.shape == (shape[2],)
            assert torch.allclose(m, mean, rtol=0, atol=1e-12) and torch.allclose(v, var, rtol=1e-10, atol=1e-12)
            s1, s2 = channel_sums(x, 2)
            assert torch.allclose(s1, x.double().sum(dims), rtol=1e-12)
            assert torch.allclose(s2, x.double().square().sum(dims), rtol=1e-12)
    finally:
        torch.set_num_threads(old)


def test_same_result_for_any_thread_count_and_many_blocks() -> None:
    x = torch.randn(6, 32, 16, 20, 20, generator=torch.Generator().manual_seed(1))     # 38 blocks of rows
    old = torch.get_num_threads()
    try:
        outs = []
        for nt in (1, 2):
            torch.set_num_threads(nt)
            outs.append(channel_sums(x, 2))
        assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("channels", [16, 21, 5, 30])   # 30 = 16 + 8 + 4 + 1 + 1 lanes
def test_channels_last_rows_are_summed_in_row_order(channels: int) -> None:
    """Each block of rows adds its rows to 0 one after the other, in double (cumsum's order), and the blocks are
    summed afterwards: bit for bit, so the batch statistics do not change with the kernel's vector width."""
    x = (torch.randn(9, channels, 50, 40, generator=torch.Generator().manual_seed(2)) * 3 + 5)
    x = x.contiguous(memory_format=torch.channels_last)
    rows = x.permute(0, 2, 3, 1).reshape(-1, channels).double()
    per = max(1, (1 << 16) // channels)
    blocks = [rows[i:i + per] for i in range(0, len(rows), per)]
    assert len(blocks) > 1
    want = torch.stack([torch.stack([blk.cumsum(0)[-1], (blk * blk).cumsum(0)[-1]]) for blk in blocks]).sum(dim=0)
    got1, got2 = channel_sums(x, 1)
    assert torch.equal(got1, want[0]) and torch.equal(got2, want[1])


def test_channel_dim_one_of_a_plain_batch() -> None:
    x = torch.randn(8, 3, 5, 5)
    var, mean = torch.var_mean(x.double(), dim=(0, 2, 3), correction=0)
    m, v = channel_mean_var(x, 1)
    assert torch.allclose(m, mean, atol=1e-12) and torch.allclose(v, var, atol=1e-12)


@pytest.mark.parametrize("x", [torch.randn(4, 3, 5).double(), torch.randn(4, 6, 5)[:, ::2], torch.randn(4, 3, 5).int()])
def test_refuses_what_it_cannot_read(x: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="dense float32"):
        channel_sums(x, 1)


# channels-last: a vector of channels at a time, then one at a time (16, 21, 3 channels); NCHW: planes of 63
@pytest.mark.parametrize("shape,channels_last", [((10, 4, 16, 6, 5), True), ((3, 5, 21, 7, 9), True),
                                                 ((2, 3, 3, 4, 4), True), ((3, 4, 21, 7, 9), False)])
@pytest.mark.parametrize("threads", [1, 2])
def test_affine_add_is_the_bits_of_addcmul_then_add(shape: tuple[int, ...], channels_last: bool,
                                                    threads: int) -> None:
    gen = torch.Generator().manual_seed(3)
    g, u = _layouts(shape, gen)[-1 if channels_last else 0], _layouts(shape, gen)[-1 if channels_last else 0]
    C = shape[2]
    k2, k1 = torch.randn(C, generator=gen), torch.randn(C, generator=gen)
    view = [1, 1, C, 1, 1]
    # one rounding of g + k2·u (exact in double for these magnitudes), then + k1: torch's vector addcmul_ fuses it
    want = (g.double() + u.double() * k2.view(view).double()).float() + k1.view(view)
    if torch.backends.cpu.get_cpu_capability() != "DEFAULT":
        assert torch.equal(want, g.clone().addcmul_(u, k2.view(view)).add_(k1.view(view)))
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = g.clone()
        assert channel_affine_add_(got, u, k2, k1, 2) is got
    finally:
        torch.set_num_threads(old)
    assert torch.equal(got, want)
    assert not torch.equal(want, (g + u * k2.view(view)) + k1.view(view))     # the fused multiply-add matters


def test_affine_add_refuses_mismatched_layouts() -> None:
    g = torch.randn(2, 3, 4, 5, 5)
    u = g.flatten(0, 1).contiguous(memory_format=torch.channels_last).unflatten(0, (2, 3))
    with pytest.raises(ValueError, match="one shape and strides"):
        channel_affine_add_(g, u, torch.ones(4), torch.zeros(4), 2)
    with pytest.raises(ValueError, match=r"k2 \(3,\)"):
        channel_affine_add_(g, g.clone(), torch.ones(3), torch.zeros(4), 2)
    base = torch.randn(2 * 3 * 4 * 25 + 1)
    with pytest.raises(ValueError, match="partly overlap"):      # torch's addcmul_ refuses this too
        channel_affine_add_(base[:-1].view(2, 3, 4, 5, 5), base[1:].view(2, 3, 4, 5, 5), torch.ones(4),
                            torch.zeros(4), 2)
    same = torch.randn(2, 3, 4, 5, 5)
    want = same.clone().addcmul_(same.clone(), torch.ones(1, 1, 4, 1, 1)).add_(1.0)
    torch.testing.assert_close(channel_affine_add_(same, same, torch.ones(4), torch.ones(4), 2), want)

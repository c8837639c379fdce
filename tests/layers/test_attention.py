"""SSA equals its written formula on a hand example; SPS / SSA / MLP shapes and their two forms."""

from __future__ import annotations

import pytest
import torch

from spikeforge.layers import SPS, SpikingMLP, SpikingSelfAttention, spiking_attention
from spikeforge.neurons import IF, LIF


def _cm(rows: list[list[float]]) -> torch.Tensor:
    """Token-major rows [N, d] -> channel-major [d, N]."""
    return torch.tensor(rows).t()


def test_ssa_hand_example() -> None:
    # head 0: Q K^T = [[1,0,1],[2,1,1],[1,1,0]],  (Q K^T) V = [[2,1],[3,2],[1,1]],  × 0.125
    q0, k0, v0 = _cm([[1, 0], [1, 1], [0, 1]]), _cm([[1, 1], [0, 1], [1, 0]]), _cm([[1, 0], [0, 1], [1, 1]])
    ones = torch.ones(2, 3)
    q = torch.cat([q0, torch.zeros(2, 3)]).view(1, 1, 4, 3)       # head 1 has no query spikes
    k = torch.cat([k0, ones]).view(1, 1, 4, 3)
    v = torch.cat([v0, ones]).view(1, 1, 4, 3)
    out = spiking_attention(q, k, v, num_heads=2, scale=0.125)
    want = torch.tensor([[0.25, 0.375, 0.125], [0.125, 0.25, 0.125], [0, 0, 0], [0, 0, 0]]).view(1, 1, 4, 3)
    assert torch.equal(out, want)


def test_ssa_both_orders_equal_exactly_on_spikes() -> None:
    g = torch.Generator().manual_seed(1)
    q, k, v = ((torch.rand(2, 3, 16, 50, generator=g) < 0.4).float() for _ in range(3))
    out = spiking_attention(q, k, v, num_heads=4, scale=0.125)
    tok = [x.unflatten(2, (4, -1)).transpose(-1, -2) for x in (q, k, v)]            # [T, B, h, N, d]
    left = (tok[0] @ tok[1].transpose(-1, -2)) @ tok[2] * 0.125                       # (Q K^T) V
    assert torch.equal(out, left.transpose(-1, -2).flatten(2, 3))


def test_ssa_module_thresholds_shapes_and_forms() -> None:
    for sd in (False, True):
        ssa = SpikingSelfAttention(32, num_heads=4, spike_driven=sd)
        assert ssa.attn_sn.v_threshold == 0.5 and ssa.q_sn.v_threshold == 1.0
        assert ssa.attn_sn is not ssa.q_sn and isinstance(ssa.attn_sn, LIF) and ssa.attn_sn.detach_reset
        x = torch.rand(3, 2, 32, 10) * 3
        y = ssa(x)
        assert y.shape == x.shape
        binary = bool(((y == 0) | (y == 1)).all())
        assert binary != sd            # Spikformer's SSA ends with a neuron, Spikingformer's with a BN
    with pytest.raises(ValueError, match="divisible"):
        SpikingSelfAttention(30, num_heads=4)


def test_ssa_neuron_injection() -> None:
    ssa = SpikingSelfAttention(16, 2, neuron=IF(v_threshold=2.0))
    assert isinstance(ssa.q_sn, IF) and ssa.q_sn.v_threshold == 2.0 and ssa.attn_sn.v_threshold == 0.5


@pytest.mark.parametrize("pools,size", [((3, 4), 8), ((1, 2, 3, 4), 2)])
def test_sps_token_grid(pools: tuple[int, ...], size: int) -> None:
    x = torch.rand(2, 3, 2, 32, 32)
    for sd in (False, True):
        sps = SPS(2, 64, pool_before=pools, spike_driven=sd)
        y = sps(x)
        assert y.shape == (2, 3, 64, size * size)
        if not sd:       # x + RPE: a sum of two spike tensors
            assert set(y.unique().tolist()) <= {0.0, 1.0, 2.0}


def test_mlp_forms() -> None:
    x = torch.randn(2, 2, 16, 5)
    assert SpikingMLP(16, 64)(x).shape == x.shape
    assert SpikingMLP(16, 64, spike_driven=True)(x).shape == x.shape

"""Residual forms: SEW identity with A ≡ 0 (ADD, IAND) or A ≡ 1 (AND), the plain spiking form, the
spike-driven check."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeforge.layers import (
    Residual,
    SEWResidual,
    SpikeDrivenResidual,
    SpikingResidual,
    TimeFold,
    default_neuron,
    sew_function,
)
from spikeforge.neurons import IF


class Const(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, self.value)


def test_sew_truth_table() -> None:
    a = torch.tensor([0.0, 1.0, 0.0, 1.0])
    s = torch.tensor([0.0, 0.0, 1.0, 1.0])
    assert sew_function(a, s, "ADD").tolist() == [0, 1, 1, 2]
    assert sew_function(a, s, "AND").tolist() == [0, 0, 0, 1]
    assert sew_function(a, s, "IAND").tolist() == [0, 0, 1, 0]
    with pytest.raises(ValueError, match="ADD"):
        sew_function(a, s, "OR")


@pytest.mark.parametrize("cnf,a", [("ADD", 0.0), ("IAND", 0.0), ("AND", 1.0)])
def test_sew_block_is_identity(cnf: str, a: float) -> None:
    s = (torch.rand(4, 3, 8, 5, 5) < 0.3).float()
    assert torch.equal(SEWResidual(Const(a), cnf)(s), s)


def test_sew_with_a_real_branch_and_downsample() -> None:
    branch = nn.Sequential(TimeFold(nn.Conv2d(4, 8, 3, 2, 1), nn.BatchNorm2d(8)), default_neuron())
    down = nn.Sequential(TimeFold(nn.Conv2d(4, 8, 1, 2), nn.BatchNorm2d(8)), default_neuron())
    s = (torch.rand(3, 2, 4, 6, 6) < 0.5).float()
    out = SEWResidual(branch, "ADD", down)(s)
    assert out.shape == (3, 2, 8, 3, 3) and set(out.unique().tolist()) <= {0.0, 1.0, 2.0}


def test_spiking_residual_fires_after_the_sum() -> None:
    s = (torch.rand(4, 2, 6) < 0.5).float()
    blk = SpikingResidual(Const(0.0), IF())        # IF with V_th = 1 passes a lone spike through
    assert torch.equal(blk(s), IF()(s))
    assert torch.equal(Residual(Const(1.0))(s), s + 1)


def test_spike_driven_residual_requires_a_leading_neuron() -> None:
    ok = nn.Sequential(default_neuron(), TimeFold(nn.Linear(4, 4)))
    x = torch.randn(2, 3, 4)
    assert SpikeDrivenResidual(ok)(x).shape == x.shape
    with pytest.raises(ValueError, match="begin with a spiking neuron"):
        SpikeDrivenResidual(nn.Sequential(TimeFold(nn.Linear(4, 4)), default_neuron()))

"""eval_mode: evaluation mode inside the block, the module's own mode after it — also after an exception."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeforge.core import eval_mode
from spikeforge.training import evaluate


@pytest.mark.parametrize("training", [True, False])
def test_the_mode_comes_back(training: bool) -> None:
    m = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)).train(training)
    with eval_mode(m):
        assert not m.training and not m[1].training
    assert m.training is training and m[1].training is training
    with pytest.raises(ZeroDivisionError), eval_mode(m):
        1 / 0
    assert m.training is training and m[1].training is training


class _Breaks(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("broken forward")


def test_evaluate_leaves_a_training_model_training_when_its_forward_raises() -> None:
    m = _Breaks().train()
    data = torch.utils.data.TensorDataset(torch.rand(4, 3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(RuntimeError, match="broken forward"):
        evaluate(m, data, "static", T=2, encoding="direct")
    assert m.training

"""Batch-norm folding: the folded layer computes what conv/linear → BN computes, exactly (float64)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeforge.layers import TDBatchNorm, fold_bn, fold_bn_pairs
from spikeforge.models import create_model


def _trained_bn(bn: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    """A BN with non-trivial running statistics and affine parameters, in eval mode."""
    bn.train()
    with torch.no_grad():
        for _ in range(3):
            bn(torch.randn(*shape, dtype=torch.float64) * 3 + 1.5)
        if bn.affine:
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.uniform_(-1.0, 1.0)
    return bn.eval()


CASES = [
    (lambda: nn.Conv2d(3, 5, 3, padding=1), lambda: nn.BatchNorm2d(5), (4, 3, 6, 6)),
    (lambda: nn.Conv2d(3, 5, 3, bias=False), lambda: nn.BatchNorm2d(5, affine=False), (4, 3, 6, 6)),
    (lambda: nn.Conv1d(2, 4, 3), lambda: nn.BatchNorm1d(4), (5, 2, 9)),
    (lambda: nn.Linear(7, 6), lambda: nn.BatchNorm1d(6), (8, 7)),
    (lambda: nn.Conv2d(2, 4, 3, padding=1), lambda: TDBatchNorm(4, alpha=0.5 ** 0.5, v_threshold=0.8), (3, 2, 5, 5)),
]


@pytest.mark.parametrize("make_layer,make_bn,shape", CASES, ids=["conv2d", "nobias-noaffine", "conv1d", "linear",
                                                                 "tdbn"])
def test_folded_equals_layer_then_bn(make_layer, make_bn, shape) -> None:
    torch.manual_seed(0)
    layer = make_layer().double()
    x = torch.randn(*shape, dtype=torch.float64)
    out_shape = layer(x).shape
    bn = _trained_bn(make_bn().double(), out_shape)
    folded = fold_bn(layer, bn)
    torch.testing.assert_close(folded(x), bn(layer(x)), rtol=1e-12, atol=1e-12)
    assert folded is not layer and folded.bias is not None
    assert layer.bias is None or not torch.equal(folded.bias, layer.bias)       # the original is untouched


def test_float32_folding_matches_to_rounding() -> None:
    torch.manual_seed(1)
    conv = nn.Conv2d(4, 8, 3, padding=1)
    x = torch.randn(2, 4, 7, 7)
    bn = _trained_bn(nn.BatchNorm2d(8).double(), (2, 8, 7, 7)).float()
    with torch.no_grad():
        ref, got = bn(conv(x)), fold_bn(conv, bn)(x)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)      # float32 rounding of two orders


def test_bad_pairs_are_named() -> None:
    with pytest.raises(TypeError, match="stem: cannot fold a batch norm into MaxPool2d"):
        fold_bn(nn.MaxPool2d(2), nn.BatchNorm2d(3), "stem")
    with pytest.raises(ValueError, match="stem: the batch norm has 4 channels, the layer outputs 3"):
        fold_bn(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(4), "stem")
    with pytest.raises(ValueError, match="stem: BatchNorm2d has no running statistics"):
        fold_bn(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3, track_running_stats=False), "stem")


def test_folding_a_zoo_model_keeps_its_spikes() -> None:
    """``spiking_cnn_tiny`` in float64: every Conv → BN pair folds, and the outputs stay equal."""
    torch.manual_seed(0)
    model = create_model("spiking_cnn_tiny", in_channels=1, img_size=8, T=4).double()
    x = torch.rand(4, 3, 1, 8, 8, dtype=torch.float64)
    model.train()
    with torch.no_grad():
        model(x)                                   # running statistics away from their init
    model.eval()
    with torch.no_grad():
        ref = model(x)
        names = fold_bn_pairs(model)
        got = model(x)
    assert names == ["block1.0", "block2.0"]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)

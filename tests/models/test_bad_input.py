"""A model refuses sizes that cannot be, and names the input shape it expects."""

from __future__ import annotations

import pytest
import torch

from spikeforge.models import create_model


@pytest.mark.parametrize("key,value", [("in_channels", 0), ("img_size", -1), ("T", 0), ("num_classes", -1),
                                       ("in_channels", 2.5), ("T", True)])
def test_sizes_must_be_positive_integers(key: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"spiking_cnn_tiny: {key} must be an integer >= "):
        create_model("spiking_cnn_tiny", **{key: value})


@pytest.mark.parametrize("name", ["spiking_cnn_tiny", "spiking_mlp_tiny", "sew_resnet_tiny", "spikformer_tiny"])
def test_wrong_input_channels_name_the_expected_shape(name: str) -> None:
    model = create_model(name, in_channels=2, img_size=8, T=2)
    with pytest.raises(ValueError, match=r"expects \[B, 2, H, W\] or \[T, B, 2, H, W\] \(in_channels=2\), "
                                         r"got shape \(2, 4, 3, 8, 8\)"):
        model(torch.rand(2, 4, 3, 8, 8))
    assert model(torch.rand(2, 4, 2, 8, 8)).shape == (2, 4, 10)

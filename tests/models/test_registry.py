"""The registry, neuron injection and the parameter counts of the papers' sizes (on the meta device)."""

from __future__ import annotations

import pytest
import torch

from spikeforge.layers import is_neuron
from spikeforge.models import create_model, list_models
from spikeforge.neurons import IF, LIF, PLIF, PSN
from spikeforge.surrogate import ATan

REQUIRED = ["spiking_vgg11", "spiking_vgg16", "spiking_resnet18", "spiking_resnet34", "sew_resnet18", "sew_resnet34",
            "sew_resnet50", "spikformer_4_384", "spikformer_8_384", "spikformer_8_512", "spikformer_8_768",
            "spikformer_2_256", "spikingformer_4_384", "spikingformer_8_384", "spikingformer_8_512",
            "spikingformer_8_768", "spikingformer_2_256", "seq_csnn_psn", "seq_csnn_masked_psn",
            "seq_csnn_sliding_psn"]

# published counts: Spikformer / Spikingformer READMEs (identical for both), torchvision for the CNNs
PUBLISHED = {
    "spikingformer_4_384": 9.32e6, "spikingformer_8_384": 16.81e6, "spikingformer_8_512": 29.68e6,
    "spikingformer_8_768": 66.34e6, "spikingformer_2_256": 2.57e6,
    "spikformer_4_384": 9.32e6, "spikformer_8_384": 16.81e6, "spikformer_8_512": 29.68e6,
    "spikformer_8_768": 66.34e6, "spikformer_2_256": 2.57e6,
    "sew_resnet18": 11.69e6, "sew_resnet34": 21.80e6, "sew_resnet50": 25.56e6,
    "spiking_resnet18": 11.69e6, "spiking_resnet34": 21.80e6, "spiking_vgg11": 132.87e6, "spiking_vgg16": 138.37e6,
}


def test_required_names_and_tiny_variants() -> None:
    names = list_models()
    assert set(REQUIRED) <= set(names)
    assert {"spiking_vgg_tiny", "spiking_resnet_tiny", "sew_resnet_tiny", "spikformer_tiny", "spikingformer_tiny",
            "seq_csnn_tiny"} <= set(list_models("*_tiny"))
    with pytest.raises(ValueError, match="unknown model"):
        create_model("resnet18")


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_count_matches_paper(name: str) -> None:
    with torch.device("meta"):
        model = create_model(name)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n / PUBLISHED[name] - 1) < 0.01, f"{name}: {n / 1e6:.3f}M vs published {PUBLISHED[name] / 1e6:.2f}M"


def test_default_neuron_is_the_papers_lif() -> None:
    model = create_model("sew_resnet_tiny")
    neurons = [m for m in model.modules() if is_neuron(m)]
    assert neurons and all(isinstance(n, LIF) for n in neurons)
    n = neurons[0]
    assert n.tau == 2.0 and n.detach_reset and n.surrogate == ATan(alpha=2.0) and n.v_threshold == 1.0
    assert len({id(n) for n in neurons}) == len(neurons)        # one fresh neuron per layer


@pytest.mark.parametrize("spec,cls", [(IF(), IF), ("plif", PLIF), (lambda: LIF(tau=4.0), LIF)])
def test_neuron_injection(spec: object, cls: type) -> None:
    model = create_model("spikingformer_tiny", neuron=spec)
    neurons = [m for m in model.modules() if is_neuron(m)]
    assert all(isinstance(n, cls) for n in neurons)
    attn = [n for name, n in model.named_modules() if name.endswith("attn_sn")]
    assert attn and all(n.v_threshold == 0.5 for n in attn)
    others = [n for name, n in model.named_modules() if is_neuron(n) and not name.endswith("attn_sn")]
    assert all(n.v_threshold == 1.0 for n in others)


def test_psn_by_name_gets_the_models_T() -> None:
    model = create_model("sew_resnet_tiny", neuron="psn", T=3)
    assert all(n.T == 3 for n in model.modules() if isinstance(n, PSN))
    with pytest.raises(ValueError, match="built for T=5"):
        create_model("sew_resnet_tiny", neuron=PSN(T=5), T=3)


def test_kwargs_override_defaults() -> None:
    m = create_model("sew_resnet_tiny", num_classes=7, in_channels=1, img_size=28, cnf="IAND", layers=(2, 1, 1))
    assert m.num_classes == 7 and m.cnf == "IAND" and len(m.stages[0]) == 2
    assert m(torch.rand(2, 1, 28, 28)).shape == (m.T, 2, 7)
    assert create_model("spikformer_tiny", num_classes=0).forward(torch.rand(2, 2, 2, 8, 8)).shape == (2, 2, 64)


def test_norm_layer_options() -> None:
    from functools import partial

    from spikeforge.layers import L1BatchNorm, TDBatchNorm
    for norm in (L1BatchNorm, partial(TDBatchNorm, alpha=1.0, v_threshold=1.0)):
        m = create_model("sew_resnet_tiny", norm_layer=norm, in_channels=1, img_size=8)
        assert sum(isinstance(x, L1BatchNorm | TDBatchNorm) for x in m.modules()) == 9  # 1 + 3·2 + 2
        m(torch.rand(2, 1, 8, 8)).sum().backward()
    assert create_model("spiking_vgg_tiny", norm_layer=None)(torch.rand(2, 2, 2, 8, 8)).shape == (2, 2, 10)

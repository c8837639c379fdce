"""The spike-driven audit: categories on hand-made modules, and the findings on the model zoo."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeforge.analysis import audit
from spikeforge.models import create_model
from spikeforge.neurons import LIF


def zoo_audit(name: str, **kwargs: object):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = create_model(name, in_channels=1, img_size=8, num_classes=10, T=2, **kwargs)   # train-mode BN
    return audit(model, torch.rand(2, 3, 1, 8, 8) * 4)


def test_spikingformer_has_no_nonspike_macs_outside_encoder_and_head() -> None:
    a = zoo_audit("spikingformer_tiny")
    assert a.spike_driven() and a.nonspike_mac_count() == 0
    assert {(f.layer, tuple(f.tags)) for f in a.findings} == {("patch_embed.units.0.0", ("encoder",)),
                                                             ("head.0", ("head",))}
    assert a.categories["foldable"] > 0 and a.categories["neuron"] > 0 and a.categories["ac"] > 0


@pytest.mark.parametrize("depth", [2])
def test_spikformer_lists_its_residual_sums(depth: int) -> None:
    a = zoo_audit("spikformer_tiny", depth=depth)
    found = {f.layer: f for f in a.nonspike_macs()}
    expected = {f"blocks.{b}.0.branch.{p}.0" for b in range(depth) for p in ("q", "k", "v")}
    expected |= {f"blocks.{b}.1.branch.fc1.0" for b in range(depth)}
    assert set(found) == expected
    assert "residual sum" in found["blocks.1.0.branch.q.0"].cause and "blocks.0.1 (Residual)" in \
        found["blocks.1.0.branch.q.0"].cause
    assert "patch_embed (SPS)" in found["blocks.0.0.branch.q.0"].cause           # x + RPE
    # one sample's MACs of q: N tokens × D × D at T steps
    assert found["blocks.0.0.branch.q.0"].count == 2 * 4 * 64 * 64
    assert not a.spike_driven()


def test_sew_add_lists_its_sums_and_and_iand_are_spike_driven() -> None:
    a = zoo_audit("sew_resnet_tiny", cnf="ADD")
    assert {f.layer for f in a.nonspike_macs()} == {"stages.1.0.branch.0.0", "stages.1.0.shortcut.0.0",
                                                      "stages.2.0.branch.0.0", "stages.2.0.shortcut.0.0"}
    assert all("SEWResidual" in f.cause for f in a.nonspike_macs())
    assert zoo_audit("sew_resnet_tiny", cnf="AND").spike_driven()
    assert zoo_audit("sew_resnet_tiny", cnf="IAND").spike_driven()


class Mixed(nn.Module):
    """Each line one audit category: see the test."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv1d(2, 2, 1), nn.BatchNorm1d(2)
        self.sn1, self.sn2, self.bn2 = LIF(), LIF(), nn.BatchNorm1d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:        # x [T, B, 2, 4]
        T, B = x.shape[:2]
        y = self.bn(self.conv(x.flatten(0, 1))).unflatten(0, (T, B))      # BN after conv: foldable
        s = self.sn1(y * 0.5)                                             # scale before a neuron: foldable
        r = x * 3.0 + s                                                   # scale feeding an add: a MAC
        z = self.bn2(r.flatten(0, 1)).unflatten(0, (T, B))                # BN on a sum: a MAC
        return self.sn2(z * r) * s                                        # real × real: MAC; × spikes: AC


def test_categories_on_a_hand_made_module() -> None:
    torch.manual_seed(0)
    a = audit(Mixed(), torch.rand(3, 2, 2, 4) + 0.5)
    n = 3 * 2 * 2 * 4                                    # elements of one [T, B, 2, 4] tensor, 2 samples
    by = {f.layer: f for f in a.findings}
    assert set(by) == {"conv", "model:mul1", "bn2", "model:mul2"}   # ops of the root are numbered
    assert by["conv"].tags == ["encoder"] and by["conv"].count == 2 * n / 2          # 2 input channels
    assert "feeds add" in by["model:mul1"].cause and by["model:mul1"].count == n / 2
    assert "does not follow a conv/linear" in by["bn2"].cause
    assert "element-wise product of real values" in by["model:mul2"].cause
    assert a.categories["foldable"] == (n + n) / 2       # bn after the conv, and the 0.5 scale
    assert a.categories["ac"] == n / 2                   # the last product, with spikes
    assert a.categories["mac"] == (2 * n + n + n + n) / 2
    assert a.categories["neuron"] > 0


def test_an_audit_of_a_silent_model_says_it_cannot_tell() -> None:
    """All-zero spikes are binary operands, so a model that never fires passes the value test trivially: the
    audit records the firing and says so instead of answering yes."""
    import torch

    from spikeforge.analysis import audit
    from spikeforge.models import create_model

    net = create_model("spikformer_tiny", in_channels=1, num_classes=10, img_size=8, T=4).eval()
    silent = audit(net, torch.rand(4, 8, 1, 8, 8))
    assert silent.fired is False and silent.spiking_layers == 12 and len(silent.silent) == 12
    assert silent.table().splitlines()[-1].endswith("cannot tell: no spiking layer fired on these inputs "
                                                    "(every spike operand was 0)")
    loud = audit(net, torch.rand(4, 8, 1, 8, 8) * 50)
    assert loud.fired is True and 0 < len(loud.silent) < 12
    assert f"{len(loud.silent)} of 12 spiking layers never fired" in loud.table().splitlines()[-1]
    assert loud.to_dict()["fired"] is True


def test_the_report_carries_the_firing_the_audit_saw() -> None:
    import torch

    from spikeforge.analysis import analyze
    from spikeforge.models import create_model

    net = create_model("spikformer_tiny", in_channels=1, num_classes=10, img_size=8, T=4).eval()
    silent = analyze(net, [torch.rand(4, 8, 1, 8, 8)])["audit"]
    loud = analyze(net, [torch.rand(4, 8, 1, 8, 8) * 50])["audit"]
    assert silent["fired"] is False and len(silent["silent_layers"]) == 12
    assert loud["fired"] is True and len(loud["silent_layers"]) < 12

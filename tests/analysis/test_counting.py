"""Operation counting by hand: one conv, one linear, one attention product, under every convention."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeforge.analysis import CONVENTIONS, EnergyModel, OpCounter, count_ops, energy, inspect_values
from spikeforge.neurons import LIF

# Conv2d(2 -> 3, 3×3, padding 1, bias) on [2, 2, 4, 4]: 96 outputs × 18 taps = 1728 products, 96 bias adds.
DENSE, BIAS, NUMEL = 1728, 96, 64
# Three nonzero inputs: a corner (covered by 2×2 output positions), an interior pixel (3×3) and an edge
# pixel (2×3); 3 output channels; the centre tap is zeroed in every filter, which removes exactly one
# output position per input pixel and channel: 3·(4 + 9 + 6) − 3·3 = 48 nonzero × nonzero products.
SITES = [(0, 0, 0, 0), (1, 1, 1, 2), (0, 1, 3, 1)]
EFFECTIVE = 3 * (4 + 9 + 6) - 3 * 3


def conv_layer() -> nn.Conv2d:
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1)
    with torch.no_grad():
        conv.weight.add_(torch.sign(conv.weight) * 0.1)   # no accidental zero weights
        conv.weight[:, :, 1, 1] = 0.0
    return conv


def input_with(values: list[float]) -> torch.Tensor:
    x = torch.zeros(2, 2, 4, 4)
    for site, v in zip(SITES, values):
        x[site] = v
    return x


def counted(layer: nn.Module, x: torch.Tensor, convention: str) -> tuple[float, float]:
    c = count_ops(layer, x, convention, batch_dim=0)
    t = c.totals(per_sample=False)
    return t["ac"], t["mac"]


# (values at the three sites) -> {convention: (AC, MAC)}; the hand-count table of the docs
HAND = {
    "binary": ([1, 1, 1], {"spikingformer": ((DENSE + BIAS) * 3 / NUMEL, 0),
                           "spikformer": ((DENSE + BIAS) * 3 / NUMEL, 0),
                           "neurobench": (EFFECTIVE, 0)}),
    "counts": ([1, 2, 2], {"spikingformer": (0, DENSE + BIAS),
                           "spikformer": ((DENSE + BIAS) * 5 / NUMEL, 0),
                           "neurobench": (0, EFFECTIVE)}),
    "ternary": ([1, -1, 1], {"spikingformer": (0, DENSE + BIAS),
                             "spikformer": (0, DENSE + BIAS),
                             "neurobench": (EFFECTIVE, 0)}),
    "real": ([0.5, 0.25, 2.5], {"spikingformer": (0, DENSE + BIAS),
                                "spikformer": (0, DENSE + BIAS),
                                "neurobench": (0, EFFECTIVE)}),
}


@pytest.mark.parametrize("kind", list(HAND))
@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
def test_conv_hand_counts(kind: str, convention: str) -> None:
    values, expected = HAND[kind]
    ac, mac = counted(conv_layer(), input_with(values), convention)
    assert (ac, mac) == pytest.approx(expected[convention], rel=1e-12)


def test_linear_hand_counts() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(4, 3)                                   # [5, 4] @ [4, 3]: 60 products, 15 bias adds
    x = torch.zeros(5, 4)
    x.view(-1)[[0, 3, 5, 9, 12, 14, 19]] = 1.0             # 7 spikes of 20: rate 0.35, fan-out 3 each
    assert counted(lin, x, "spikingformer") == pytest.approx((75 * 0.35, 0))
    assert counted(lin, x, "neurobench") == pytest.approx((7 * 3, 0))
    assert counted(lin, x * 0.5, "spikformer") == pytest.approx((0, 75))        # 0.5 is not a count


class BMM(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b


def test_attention_product_uses_the_smaller_rate() -> None:
    a = torch.zeros(2, 3, 4)
    a[0] = 1.0                                              # rate 0.5
    b = torch.zeros(2, 4, 5)
    b[0, 0] = 1.0
    b[1] = 1.0                                              # rate 25/40
    bmm = BMM()
    with torch.no_grad(), OpCounter(bmm, "spikingformer", batch_dim=0) as c:
        bmm(a, b)
    assert c.totals(False)["ac"] == pytest.approx(120 * 0.5)   # 2·3·4·5 products × min(0.5, 0.625)
    with torch.no_grad(), OpCounter(bmm, "neurobench", batch_dim=0) as c:
        bmm(a, b)
    assert c.totals(False)["ac"] == 3 * 5                  # batch 0: 3 rows of a meet the 5 ones of b's row 0


def test_value_classes() -> None:
    assert inspect_values(torch.tensor([0.0, 1.0, 1.0, 0.0])).kind == "binary"
    v = inspect_values(torch.tensor([0.0, 2.0, 1.0, 3.0]))
    assert (v.kind, v.rate, v.max) == ("counts", 1.5, 3.0)
    assert inspect_values(torch.tensor([0.0, -1.0, 1.0, 1.0])).kind == "ternary"
    assert inspect_values(torch.tensor([0.0, 0.5])).kind == "real"
    assert inspect_values(torch.zeros(3)).kind == "binary"


def test_energy_uses_the_cited_constants() -> None:
    values, _ = HAND["counts"]
    c = count_ops(conv_layer(), input_with(values), "spikingformer", batch_dim=0)
    e = energy(c, per_sample=False)
    assert e["energy_mj"] == pytest.approx(4.6e-9 * (DENSE + BIAS))
    assert energy(c, EnergyModel(e_ac_pj=1.0, e_mac_pj=2.0), per_sample=False)["energy_mj"] == \
        pytest.approx(2e-9 * (DENSE + BIAS))
    assert c.samples == 2 and energy(c)["mac"] == (DENSE + BIAS) / 2


class Net(nn.Module):
    """conv → BN → LIF → linear on [T, B, ...]: a model the counter must leave exactly as it was."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn, self.sn, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), LIF(), nn.Linear(64, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, B = x.shape[:2]
        y = self.bn(self.conv(x.flatten(0, 1))).unflatten(0, (T, B)) * 4.0
        return self.fc(self.sn(y).flatten(2))


def test_counter_changes_nothing_and_ignores_work_outside_the_forward() -> None:
    torch.manual_seed(0)
    net = Net()
    x = torch.rand(3, 2, 1, 4, 4)
    with torch.no_grad():
        ref = net(x)
    with torch.no_grad(), OpCounter(net) as c:
        out = net(x)
        (out * 2).sum()                                     # after the forward: not counted
    assert torch.equal(out, ref)
    assert net.sn.backend == "auto" and not net.sn._forward_hooks and not net._forward_pre_hooks
    assert set(c.per_layer()) == {"conv", "fc"} and c.samples == 2
    assert c.layers["fc"].ac > 0 and c.layers["fc"].mac == 0       # spikes reach the linear layer
    assert c.layers["conv"].tags == {"encoder"} and c.layers["fc"].tags == {"head"}
    assert c.layers["sn"].role == "neuron" and c.layers["sn"].audit["neuron"] > 0


def test_neuron_internal_work_scales_with_steps() -> None:
    torch.manual_seed(0)
    net = Net()
    counts = []
    for T in (1, 3):
        with torch.no_grad(), OpCounter(net) as c:
            net(torch.rand(T, 2, 1, 4, 4))
        counts.append(c.layers["sn"].dense)
    assert counts[1] == 3 * counts[0] and counts[0] % (2 * 64) == 0   # whole multiplications per neuron-step


def test_unknown_convention_names_the_choices() -> None:
    with pytest.raises(ValueError, match="neurobench"):
        OpCounter(nn.Linear(2, 2), "syops")


def test_counting_a_sliding_psn_net_keeps_its_outputs_and_algorithm(monkeypatch: pytest.MonkeyPatch) -> None:
    """The counter switches *scan* neurons to the torch loop; a SlidingPSN has no scan backend and keeps its
    GEMM form (it was once switched to the convolution form by a shared attribute name)."""
    from spikeforge.models import create_model
    from spikeforge.neurons import SlidingPSN
    torch.manual_seed(0)
    net = create_model("seq_csnn_sliding_psn", in_channels=1, img_size=8, channels=4, k=3).eval()
    x = torch.rand(2, 1, 8, 8)
    with torch.no_grad():
        ref = net(x)
    import spikeforge.neurons.psn as psn_module
    gemms = []
    real = psn_module.toeplitz_weight          # the GEMM form builds the Toeplitz matrix; the conv form does not
    monkeypatch.setattr(psn_module, "toeplitz_weight", lambda *a: gemms.append(1) or real(*a))
    psns = [m for m in net.modules() if isinstance(m, SlidingPSN)]
    with torch.no_grad(), OpCounter(net, batch_dim=0) as c:
        assert all(m.algorithm == "gemm" and not hasattr(m, "backend") for m in psns)
        out = net(x)
    assert len(gemms) == len(psns) > 0 and torch.equal(out, ref)
    assert all(m.algorithm == "gemm" for m in psns) and c.samples == 2

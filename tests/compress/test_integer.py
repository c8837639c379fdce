"""Integer-only inference of MINT models: bit-identical spikes to the fake-quantised path at every layer and
step (random and trained models), int32 accumulation, no float multiplication after the encoder, refusals."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from spikeforge.compress import (
    CompressionError,
    EncoderSpikes,
    IntegerLIF,
    IntegerSynapse,
    MintQuantizer,
    parse_spec,
    to_integer,
)
from spikeforge.layers import TimeFold, ToSequence
from spikeforge.neurons import IF, LIF
from tests.compress.conftest import spikes_of, tiny


def assert_bit_identical(model: nn.Module, x: Tensor, names: list[str] = ["sn1", "sn2"]) -> dict[str, Tensor]:  # noqa: B006
    model.eval()
    integer = to_integer(model)
    f, logits = spikes_of(model, names, x)
    i, acc = spikes_of(integer, names, x)
    for n in names:
        assert i[n].dtype == torch.int8 and torch.equal(f[n], i[n].float()), n
    assert acc.dtype == torch.int32
    assert torch.equal(logits, acc.float() * integer.head[0].scale)     # the readout: s · I, exactly
    return f


@pytest.mark.parametrize("spec,neuron", [
    ("w2u2", LIF(v_threshold=0.2)), ("w4u4", LIF(v_threshold=0.3, decay_input=False)),
    ("mint:weight_bits=3,state_bits=3,reset=hard,head_bits=5", LIF(tau=4.0, v_threshold=0.2)),
    ("w8u8", IF(v_threshold=0.05))])
def test_random_models_spike_bit_identically_at_every_layer_and_step(spec: str, neuron: nn.Module) -> None:
    m = tiny(neuron=neuron)
    parse_spec("quantize", spec).apply(m)
    with torch.no_grad():                # a bias too, and scales off their initial values
        for p in m.parameters():
            p.mul_(1 + 0.2 * torch.rand_like(p))
    torch.manual_seed(1)
    seen = assert_bit_identical(m, torch.rand(8, 1, 8, 8) * 4)
    assert 0.005 < float(seen["sn2"].mean()) < 0.95                 # the comparison is not trivially silent


def test_a_trained_model_spikes_bit_identically_on_the_test_split() -> None:
    from spikeforge.data import batch_loader, build_dataset, to_time_first
    from spikeforge.training import fit

    data = build_dataset("digits", T=4, progress=False, limit_train=384)
    m = tiny(neuron=LIF())
    opt = {"optimizer": lambda ps: torch.optim.Adam(ps, lr=1e-2), "progress": False, "encoding": "direct"}
    fit(m, data, T=4, epochs=3, **opt)                                  # FP32 with BatchNorm
    MintQuantizer(2, 2).apply(m)                                        # fold the trained BN, then QAT
    result = fit(m, data, T=4, epochs=1, **opt)
    assert result.history[-1]["test_accuracy"] > 0.5
    x = next(iter(batch_loader(data.test, data.kind, batch_size=400, shuffle=False)))[0]
    seen = assert_bit_identical(m, to_time_first(x, data.kind, 4, "direct", None))
    assert float(seen["sn2"].mean()) > 0.01


def test_accumulation_is_int32_a_64_channel_sum_of_1728_does_not_wrap() -> None:
    net = nn.Sequential(ToSequence(1), TimeFold(nn.Conv2d(1, 64, 1)), LIF(v_threshold=0.5),
                        TimeFold(nn.Conv2d(64, 1, 3, bias=False)), LIF(v_threshold=1000.0))
    with torch.no_grad():
        net[1][0].weight.fill_(1.0), net[1][0].bias.fill_(1.0)         # the encoder: every neuron fires
        net[3][0].weight.fill_(1.0)
    MintQuantizer(3, 3).apply(net)
    with torch.no_grad():
        net[3][0].parametrizations.weight[0].beta.fill_(0.5)           # tanh(1) > β: every W_int = Q = 3
    assert torch.equal(net[3][0].weight, torch.full((1, 64, 3, 3), 3.0))
    integer = to_integer(net)
    x = torch.ones(1, 1, 1, 3, 3)
    current = {}
    for tag, model in (("float", net), ("int", integer)):
        model[3].register_forward_hook(lambda m, a, o, tag=tag: current.__setitem__(tag, o))
        with torch.no_grad():
            model(x)
    assert current["int"].dtype == torch.int32 and int(current["int"].flatten()[0]) == 1728
    assert float(current["float"].flatten()[0]) == 1728.0
    ones, threes = torch.ones(1, 64, 3, 3, dtype=torch.int8), torch.full((1, 64, 3, 3), 3, dtype=torch.int8)
    wrapped = nn.functional.conv2d(ones, threes)
    assert int(wrapped) == -64                                          # what int8 accumulation would give


class _FloatMults(TorchDispatchMode):
    """Counts multiplications with a floating-point operand once ``armed``."""

    OPS = {"mul", "div", "mm", "addmm", "bmm", "baddbmm", "convolution", "matmul", "linear", "_conv_depthwise2d"}

    def __init__(self) -> None:
        super().__init__()
        self.armed, self.found = False, []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = func.overloadpacket.__name__.rstrip("_")
        if self.armed and name in self.OPS and any(isinstance(a, Tensor) and a.is_floating_point() for a in args):
            self.found.append(name)
        return func(*args, **(kwargs or {}))


def test_no_float_multiplication_after_the_encoder_and_the_audit_agrees() -> None:
    from spikeforge.analysis import audit

    m = tiny()
    MintQuantizer(2, 2).apply(m)
    integer = to_integer(m)
    assert isinstance(integer.sn1, EncoderSpikes) and isinstance(integer.sn2, IntegerLIF)
    assert isinstance(integer.block2[0], IntegerSynapse) and integer.block2[0].weight.dtype == torch.int8
    mode = _FloatMults()
    integer.sn1.register_forward_hook(lambda mod, a, o: setattr(mode, "armed", True))
    x = torch.rand(4, 1, 8, 8) * 4
    with mode, torch.no_grad():
        integer(x)
    assert mode.armed and mode.found == []
    a = audit(integer, ToSequence(4)(x))
    assert a.spike_driven() and all("encoder" in f.tags for f in a.findings)


def test_integer_neuron_golden_trace() -> None:
    n = IntegerLIF(theta=3, leak_shift=1, decay_input=True, v_reset=None, lo=-1, hi=1)
    x = torch.tensor([4, 4, -5, 7, 1], dtype=torch.int32).view(5, 1)
    # H = V + ⌊(X − V)/2⌋: 2 → V 1;  1 + ⌊3/2⌋ = 2 → 1;  1 + ⌊−6/2⌋ = −2 → −1;  −1 + 4 = 3 fires → 0;  ⌊1/2⌋ = 0
    s, v = n.run(x)
    assert s.flatten().tolist() == [0, 0, 0, 1, 0] and int(v) == 0 and s.dtype == torch.int8


def test_models_without_an_integer_form_are_refused_naming_the_layer() -> None:
    with pytest.raises(CompressionError, match="not MINT-quantised"):
        to_integer(tiny())
    for spec, what in (("w2u2:separate", "sn2 has a separate membrane"), ("w2", "sn2 has a fp membrane")):
        m = tiny()
        parse_spec("quantize", spec).apply(m)
        with pytest.raises(CompressionError, match=what):
            to_integer(m)
    m = tiny(pool="avg")
    MintQuantizer(2, 2).apply(m)
    with pytest.raises(CompressionError, match=r"pool1.0 \(AvgPool2d\) averages spikes"):
        to_integer(m)
    m = tiny()
    MintQuantizer(2, 2).apply(m)
    m.block2[1] = nn.BatchNorm2d(32)                                   # a BN that was never folded
    with pytest.raises(CompressionError, match="block2.1 is an unfolded BatchNorm2d"):
        to_integer(m)

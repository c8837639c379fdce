"""MINT quantisation-aware training: the official quantiser and initialisation, the neurons in integer units,
checkpoints and tracing, memory, the spec's bad inputs."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
from torch import nn

from spikeforge.compress import (
    CompressionError,
    MintQuantizer,
    MintWeight,
    applied,
    memory_bits,
    mint_layers,
    parse_spec,
    surrogate_in_units,
)
from spikeforge.layers import TimeFold, ToSequence
from spikeforge.models import create_model
from spikeforge.neurons import IF, LIF, PLIF
from spikeforge.surrogate import (
    ATan,
    Erf,
    FastSigmoid,
    PiecewiseExp,
    PiecewiseQuadratic,
    Rectangle,
    Sigmoid,
    SoftSign,
    Triangle,
)
from tests.compress.conftest import tiny


def test_integer_weights_are_the_official_quantiser_with_a_straight_through_gradient() -> None:
    q = MintWeight(bits=3, beta=0.5)                       # Q = 3 levels each side, LSB s = 0.5 / 3
    w = torch.tensor([-2.0, -0.3, -0.05, 0.0, 0.1, 0.2, 0.4, 3.0], requires_grad=True)
    w_int = q(w)
    expect = torch.round(3 * torch.clamp(torch.tanh(w.detach()) / 0.5, -1, 1))
    assert torch.equal(w_int, expect) and w_int.tolist() == [-3, -2, 0, 0, 1, 1, 2, 3]
    w_int.sum().backward()
    inside = (torch.tanh(w.detach()).abs() < 0.5).float()
    assert torch.allclose(w.grad, 3 / 0.5 * (1 - torch.tanh(w.detach()) ** 2) * inside)
    assert math.isclose(float(q.scale().detach()), 0.5 / 3, rel_tol=1e-6)


def test_apply_folds_bn_keeps_the_encoder_fp_and_uses_the_official_initialisation() -> None:
    m = tiny()
    w2 = m.block2[0].weight.detach().clone() / math.sqrt(1 + 1e-5)     # an untrained BN folds to 1/sqrt(1+eps)
    MintQuantizer(2, 2).apply(m)
    layers = mint_layers(m)
    assert list(layers) == ["block2.0", "head.0"] and not any(isinstance(x, nn.BatchNorm2d) for x in m.modules())
    beta = float(layers["block2.0"].beta.detach())
    assert math.isclose(beta, float(2 * w2.abs().mean() / math.sqrt(1)), rel_tol=1e-5)
    assert layers["head.0"].readout and layers["head.0"].bits == 8 and layers["block2.0"].neuron == "sn2"
    assert type(m.sn1) is LIF and m.sn1.v_reset is None and m.sn1.quantizer is None     # encoder: FP, soft reset
    p = m.sn2.params()
    s = layers["block2.0"].scale()
    assert float(p.v_threshold.detach()) == max(1.0, round(0.2 / float(s.detach())))
    assert p.quantizer.lo == -1 and p.quantizer.hi == 1
    assert p.leak_shift == 1 and p.v_reset is None
    assert applied(m) == {"quantize": "mint:weight_bits=2,state_bits=2,shared_scale=true,reset=soft,head_bits=8"}


def test_shared_neuron_runs_on_integers_in_lsb_and_every_scale_learns() -> None:
    m = tiny()
    MintQuantizer(2, 2).apply(m)
    seen = {}
    m.block2.register_forward_hook(lambda mod, a, o: seen.setdefault("I", o))
    m.sn2.register_forward_hook(lambda mod, a, o: seen.setdefault("S", o))
    out = m(torch.rand(6, 1, 8, 8) * 4)
    assert torch.equal(seen["I"], seen["I"].round()) and seen["S"].sum() > 0
    _, (v,) = m.sn2.run(seen["I"].detach())
    assert torch.equal(v, v.round()) and int(v.abs().max()) <= 1                # 2-bit membrane: -1, 0, 1
    out.square().mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_fused_and_torch_backends_agree_on_spikes_and_gradients() -> None:
    grads = []
    for backend in ("auto", "torch"):
        m = tiny()
        MintQuantizer(2, 2).apply(m)
        for n in (m.sn1, m.sn2):
            n.backend = backend
        torch.manual_seed(1)
        m(torch.rand(4, 1, 8, 8) * 4).sum().backward()
        grads.append({k: p.grad for k, p in m.named_parameters()})
    for k in grads[0]:
        assert torch.allclose(grads[0][k], grads[1][k], rtol=1e-4, atol=1e-6), k


@pytest.mark.parametrize("cls", [Sigmoid, ATan, PiecewiseQuadratic, Rectangle, Erf, SoftSign, PiecewiseExp, Triangle])
def test_rescaled_surrogate_has_the_real_unit_gradient(cls: type) -> None:
    sg, s = cls(), 0.37
    z = torch.linspace(-6, 6, 97)
    assert torch.allclose(surrogate_in_units(sg, s).grad(z), s * sg.grad(s * z), atol=1e-6)


def test_checkpoint_restores_the_thresholds_and_scales_in_a_fresh_model() -> None:
    a, b = tiny(0), tiny(1)                              # b: other initial weights, so another β0 and θ
    for spec in ("w2u2:separate", "w2u2"):
        a, b = tiny(0), tiny(1)
        parse_spec("quantize", spec).apply(a)
        parse_spec("quantize", spec).apply(b)
        with torch.no_grad():
            a.block2[0].parametrizations.weight[0].beta.mul_(0.4)
        b.load_state_dict(a.state_dict())
        x = torch.rand(3, 1, 8, 8) * 4
        a.eval(), b.eval()
        with torch.no_grad():
            assert torch.equal(a(x), b(x))
            assert torch.equal(torch.as_tensor(a.sn2.params().v_threshold), torch.as_tensor(b.sn2.params().v_threshold))
    assert "sn2.mint_membrane_beta" not in a.state_dict()


def test_fx_trace_and_deepcopy_give_the_same_outputs() -> None:
    from spikeforge.models.fx import trace

    m = tiny()
    MintQuantizer(3, 3).apply(m)
    x = torch.rand(2, 1, 8, 8) * 4
    gm, twin = trace(m), copy.deepcopy(m)
    m.eval(), gm.eval(), twin.eval()
    with torch.no_grad():
        assert torch.equal(gm(x), m(x)) and torch.equal(twin(x), m(x))


def test_separate_scale_quantises_the_membrane_on_its_own_learnable_grid() -> None:
    m = tiny()
    MintQuantizer(2, 2, shared_scale=False).apply(m)
    assert math.isclose(float(m.sn2.mint_membrane_beta.detach()), 0.2, rel_tol=1e-6)   # init: the threshold
    p = m.sn2.params()
    step = float(p.quantizer.step.detach())
    v = p.quantizer(torch.linspace(-5, 5, 41) * step)
    assert set((v / step).round().tolist()) == {-1.0, 0.0, 1.0}
    assert math.isclose(float(p.v_threshold.detach()), 0.2 / float(mint_layers(m)["block2.0"].scale().detach()),
                        rel_tol=1e-5)                                  # V_th/s, not rounded
    m(torch.rand(3, 1, 8, 8) * 4).sum().backward()
    assert m.sn2.mint_membrane_beta.grad is not None


def test_memory_counts_bits_of_weights_and_membranes() -> None:
    fp = memory_bits(tiny())
    m = tiny()
    MintQuantizer(2, 2).apply(m)
    mem = memory_bits(m)
    # conv2 4,608 weights at 2 bits + 32 biases at 16; its 32·4·4 neurons at 2 bits; the head 1,280 at 8 + 10 at 16
    assert mem["quantized_bits"] == 4608 * 2 + 32 * 16 + 512 * 2
    assert mem["quantized_fp32_bits"] == 32 * (4608 + 32 + 512)
    assert mem["weight_bits"] == 32 * (144 + 16) + 4608 * 2 + 32 * 16 + 1280 * 8 + 10 * 16
    assert mem["membrane_bits"] == 16 * 64 * 32 + 512 * 2
    # unfolded, a BatchNorm counts as the bias it folds into: the same FP32 total
    assert fp["total_bits"] == mem["fp32_total_bits"] == 32 * (144 + 16 + 4608 + 32 + 1280 + 10 + 1024 + 512)
    d = MintQuantizer(2, 2).describe(m)
    assert d["memory_bits"] == mem["total_bits"] and d["quantized_layers_reduction"] > 15


def test_init_loads_a_trained_model_folds_its_bn_and_sets_the_scales_from_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from spikeforge.training import save_checkpoint

    trained = tiny(3)
    with torch.no_grad():
        for bn in (trained.block1[1], trained.block2[1]):
            bn.running_mean.uniform_(-0.5, 0.5), bn.running_var.uniform_(0.5, 2), bn.weight.uniform_(0.5, 2)
            bn.num_batches_tracked.fill_(10)
    path = save_checkpoint(tmp_path / "fp.safetensors", model=trained.state_dict())
    want = copy.deepcopy(trained)
    MintQuantizer(2, 2).apply(want)
    got = tiny(0)
    q = MintQuantizer(2, 2, init=str(path))
    q.apply(got)
    assert "init=" in q.spec() and parse_spec("quantize", q.spec()).init == str(path)
    q.load_init()
    sd_w, sd_g = want.state_dict(), got.state_dict()
    assert all(torch.equal(sd_w[k], sd_g[k]) for k in sd_w)
    with pytest.raises(CompressionError, match="does not fit the model"):
        q.init = str(save_checkpoint(tmp_path / "q.safetensors", model=want.state_dict()))
        q.load_init()


def test_spec_round_trips() -> None:
    for text in ("w2u2", "w4", "w3u3:separate", "w8u8:shared", "mint:weight_bits=5,reset=hard,head_bits=4"):
        q = parse_spec("quantize", text)
        assert parse_spec("quantize", q.spec()).spec() == q.spec()
    assert parse_spec("quantize", "w2u2:separate").mode == "separate"
    assert parse_spec("quantize", "w6").mode == "fp" and parse_spec("quantize", "mint").spec().startswith(
        "mint:weight_bits=2,reset")


@pytest.mark.parametrize(("spec", "message"), [
    ("w1u1", "weight_bits must be an integer from 2 to 8, got 1"), ("w9", "weight_bits must be an integer from 2"),
    ("w2u9", "state_bits must be an integer from 2 to 8"), ("w2u4", "a shared scale needs equal weight and membrane"),
    ("w2:shared", "shared_scale needs a quantised membrane"), ("mint:head_bits=1", "head_bits must be"),
    ("mint:reset=none", "reset must be 'soft' or 'hard'"), ("mint:weight_bits=2.0", "integer from 2 to 8"),
    ("mint:shared_scale=1", "shared_scale must be true or false"), ("mint@3", "mint has no @TARGET"),
    ("mint:init=", "init must be the path")])
def test_bad_specs_are_one_clear_line(spec: str, message: str) -> None:
    with pytest.raises(CompressionError, match=message) as e:
        parse_spec("quantize", spec)
    assert "\n" not in str(e.value) and str(e.value).startswith(f"--quantize {spec}")


def test_models_mint_cannot_quantise_are_refused_naming_the_layer() -> None:
    assert "tau/dt = 3" in (MintQuantizer(2, 2).check(tiny(neuron=LIF(tau=3.0))) or "")
    assert MintQuantizer(2).check(tiny(neuron=LIF(tau=3.0))) is None           # an FP membrane keeps its leak
    assert "sn2 is a PLIF" in (MintQuantizer(2, 2).check(tiny(neuron=PLIF())) or "")
    assert "FastSigmoid" in (MintQuantizer(2, 2).check(tiny(neuron=LIF(surrogate=FastSigmoid()))) or "")
    assert "learnable threshold" in (MintQuantizer(2, 2).check(tiny(neuron=LIF(learn_threshold=True))) or "")
    assert MintQuantizer(2, 2).check(tiny(neuron=IF())) is None
    resnet = create_model("spiking_resnet_tiny", in_channels=1, img_size=8, num_classes=10, T=4)
    assert "stages.1.0.sn receives the current of stages.1.0.branch.2.0, stages.1.0.shortcut.0" in (
        MintQuantizer(2, 2).check(resnet) or "")                     # a residual sum before the neuron (fx graph)
    loose = nn.Sequential(ToSequence(2), TimeFold(nn.Flatten(), nn.Linear(64, 8)), LIF(), TimeFold(nn.BatchNorm1d(8)),
                          TimeFold(nn.Linear(8, 4)), LIF())
    assert "3.0 is a BatchNorm that does not directly follow" in (MintQuantizer(2, 2).check(loose) or "")
    with pytest.raises(CompressionError, match="3.0 is a BatchNorm"):
        MintQuantizer(2, 2).apply(loose)
    assert "has 1 synaptic layer" in (MintQuantizer(2, 2).check(nn.Sequential(nn.Linear(3, 3), LIF())) or "")


def test_a_model_is_quantised_once() -> None:
    m = tiny()
    MintQuantizer(2, 2).apply(m)
    before = copy.deepcopy(m.state_dict())
    with pytest.raises(CompressionError, match="already compressed by 'mint:weight_bits=2,state_bits=2"):
        MintQuantizer(4).apply(m)
    assert m.state_dict().keys() == before.keys()


def test_hard_reset_and_if_neurons() -> None:
    m = tiny(neuron=IF())
    MintQuantizer(4, 4, reset="hard").apply(m)
    p = m.sn2.params()
    assert type(m.sn2).__name__ == "MintIF" and p.v_reset == 0.0 and p.quantizer.hi == 7
    assert dataclasses.replace(p).v_reset == 0.0 and m.sn1.v_reset == 0.0

"""Auto-Spikformer: slicing equals the standalone model, energy equals the report's, BN recalibration, supernet
sampling, genotypes, fitness, setup / evaluate."""

from __future__ import annotations

import inspect
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from spikeforge.analysis import analyze
from spikeforge.data import DataBundle, batch_loader, build_dataset, to_time_first
from spikeforge.models import create_model
from spikeforge.neurons import LIF
from spikeforge.search import (
    SEARCHES,
    AutoSpikformerSpace,
    EvalContext,
    SearchError,
    SpikformerChoices,
    SpikformerSupernet,
    SupernetStep,
    aeb_fitness,
    extract_subnet,
    recalibrate_bn,
)
from spikeforge.search.autospikformer_eval import REPORT_SETTINGS, calibration_batches, report_energy
from spikeforge.surrogate import ATan
from spikeforge.training import Callback, Trainer, fit

ARCHS = [
    {"depth": 2, "dim": 64, "heads": 4, "mlp_ratio": 4.0, "tau": 2.0, "v_threshold": 1.0},   # the largest
    {"depth": 1, "dim": 32, "heads": 1, "mlp_ratio": 2.0, "tau": 1.5, "v_threshold": 0.5},   # the smallest
    {"depth": 1, "dim": 48, "heads": 4, "mlp_ratio": 4.0, "tau": 3.0, "v_threshold": 1.0},
    {"depth": 2, "dim": 32, "heads": 2, "mlp_ratio": 2.0, "tau": 2.0, "v_threshold": 0.5},
]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    """Small tensors: one thread (as the suites in conftest's SINGLE_THREADED; conftest puts the count back)."""
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    pytest.importorskip("sklearn")
    return build_dataset("digits", T=2, seed=0, progress=False)


def _randomized_supernet() -> SpikformerSupernet:
    """A supernet whose BN statistics and affines are far from their initial values, so a wrong slice shows."""
    torch.manual_seed(1)
    net = SpikformerSupernet()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, _BatchNorm):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.05, 0.3)
                m.weight.uniform_(0.5, 2.0)
                m.bias.uniform_(0.0, 1.0)
    return net.eval()


def _standalone(arch: dict) -> nn.Module:
    """The ordinary zoo model at ``arch``'s size, built without the search package."""
    neuron = LIF(tau=arch["tau"], v_threshold=arch["v_threshold"], surrogate=ATan(alpha=2.0), detach_reset=True)
    return create_model("spikformer_tiny", img_size=8, in_channels=1, num_classes=10, T=2, pool_before=(3, 4),
                        embed_dim=arch["dim"], depth=arch["depth"], num_heads=arch["heads"],
                        mlp_ratio=arch["mlp_ratio"], neuron=neuron)


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: f"{a['depth']}-{a['dim']}-h{a['heads']}-r{a['mlp_ratio']}")
def test_sliced_subnet_equals_the_standalone_model(arch: dict) -> None:
    net = _randomized_supernet()
    model = _standalone(arch)
    big = net.state_dict()
    model.load_state_dict({k: big[k][tuple(slice(0, n) for n in v.shape)].clone()
                           for k, v in model.state_dict().items()})
    model.eval()
    x = 3.0 * torch.rand(16, 1, 8, 8)
    net.set_arch(arch)
    out = net(x)
    assert out.shape == (2, 16, 10)
    assert out.std(dim=1).max() > 0                 # the samples differ: spikes flowed
    assert torch.equal(out, model(x))
    sub = extract_subnet(net, arch)
    assert type(sub) is type(model) and not sub.training
    assert torch.equal(sub(x), out)
    assert sum(p.numel() for p in sub.parameters()) == sum(p.numel() for p in model.parameters())


def test_the_supernet_trains_only_the_active_slice() -> None:
    net = SpikformerSupernet().train()
    arch = ARCHS[3]
    net.set_arch(arch)
    bn = net.blocks[0][1].branch.fc1[1]                        # MLP hidden BN: 256 channels, 64 active
    q = net.blocks[0][0].branch.q[0].weight                    # [64, 64, 1], [:32, :32] active
    mean0 = bn.running_mean.clone()
    net(3.0 * torch.rand(8, 1, 8, 8)).sum().backward()
    assert q.grad is not None and q.grad[:32, :32].abs().sum() > 0 and q.grad[32:].abs().sum() == 0
    assert q.grad[:, 32:].abs().sum() == 0
    assert not torch.equal(bn.running_mean[:64], mean0[:64]) and torch.equal(bn.running_mean[64:], mean0[64:])
    assert net.blocks[1][0].branch.q[0].weight.grad.abs().sum() > 0     # depth 2: the second block trains
    assert net.head[0].weight.grad[:, 32:].abs().sum() == 0


def test_subnet_energy_is_the_report_figure(digits: DataBundle) -> None:
    from spikeforge.app.report import run_report
    defaults = {k: v.default for k, v in inspect.signature(run_report).parameters.items()}
    assert {k: defaults[k] for k in ("batch_size", "count_batches", "convention")} == {
        k: REPORT_SETTINGS[k] for k in ("batch_size", "count_batches", "convention")}
    assert defaults["energy_model"] is None and "manual_seed(12345)" in inspect.getsource(run_report)
    model = extract_subnet(_randomized_supernet(), ARCHS[2])
    # what run_report does: its test batches, encoded with its generator, counted by analyze
    gen = torch.Generator().manual_seed(12345)
    counted = []
    for x, _ in batch_loader(digits.test, digits.kind, batch_size=64, shuffle=False):
        counted.append(to_time_first(x, digits.kind, 2, "rate", gen))
        if len(counted) == 4:
            break
    want = analyze(model, counted, "spikingformer", None)["energy"]
    got = report_energy(model, digits.test, digits.kind, 2, "rate")
    assert got["energy_mj"] == want["energy_mj"] and got["energy_uj"] == 1e3 * want["energy_mj"]
    assert got["ac"] == want["ac"] > 0 and got["mac"] == want["mac"]


def test_bn_recalibration_uses_exactly_20_batches_and_is_deterministic(digits: DataBundle) -> None:
    def stats(model: nn.Module) -> list[torch.Tensor]:
        return [t.clone() for m in model.modules() if isinstance(m, _BatchNorm)
                for t in (m.running_mean, m.running_var)]

    net = _randomized_supernet()
    model = extract_subnet(net, ARCHS[3])
    before = stats(model)
    drawn = []

    def batches() -> Iterator[torch.Tensor]:
        for x in calibration_batches(digits.train, digits.kind, T=2, encoding="direct", batch_size=32, seed=5):
            drawn.append(x)
            yield x

    bn = model.patch_embed.units[0][1]
    means: list[torch.Tensor] = []
    hook = bn.register_forward_hook(lambda m, inp, out: means.append(inp[0].mean(dim=(0, 2, 3))))
    assert recalibrate_bn(model, batches()) == 20
    hook.remove()
    assert len(drawn) == 20 and len(means) == 20
    assert not model.training
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert all(int(m.num_batches_tracked) == 20 and m.momentum == 0.1 for m in bns)
    torch.testing.assert_close(bn.running_mean, torch.stack(means).mean(0))      # the cumulative average
    after = stats(model)
    assert all(not torch.equal(a, b) for a, b in zip(before, after))
    runs = []
    for _ in range(2):      # without the hook, the first conv and BN of the static input run once: equal to float
        again = extract_subnet(net, ARCHS[3])    # rounding to the hooked run, and bit for bit to each other
        recalibrate_bn(again, calibration_batches(digits.train, digits.kind, T=2, encoding="direct", batch_size=32,
                                                  seed=5))
        runs.append(stats(again))
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    for a, b in zip(after, runs[0]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="20 batches are needed, only 3"):
        recalibrate_bn(again, drawn[:3])


def test_supernet_training_samples_archs_deterministically(digits: DataBundle) -> None:
    choices = SpikformerChoices()
    step = SupernetStep(choices, seed=3)
    archs = [step.arch_at(s) for s in range(12)]
    assert archs == [SupernetStep(choices, seed=3).arch_at(s) for s in range(12)]
    assert archs != [SupernetStep(choices, seed=4).arch_at(s) for s in range(12)]
    assert len({tuple(a.values()) for a in archs}) >= 8
    assert all(choices.check(a) == a for a in archs)
    fixed = SupernetStep(choices, seed=3, sample_neurons=False)
    assert {(fixed.arch_at(s)["tau"], fixed.arch_at(s)["v_threshold"]) for s in range(12)} == {(2.0, 1.0)}

    class Seen(Callback):
        def __init__(self) -> None:
            self.archs: list[dict] = []

        def on_after_backward(self, trainer: Trainer) -> None:
            self.archs.append(dict(trainer.model.arch))

    def run() -> tuple[dict[str, torch.Tensor], list[dict]]:
        torch.manual_seed(0)
        net, seen = SpikformerSupernet(), Seen()
        fit(net, digits, T=2, encoding="direct", epochs=1, batch_size=16, max_steps=3, method=SupernetStep(choices, 3),
            callbacks=[seen], progress=False, seed=0, diverge_factor=None)
        return net.state_dict(), seen.archs

    w1, seen1 = run()
    w2, seen2 = run()
    assert seen1 == seen2 == archs[:3]
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert SupernetStep(choices).check(nn.Linear(2, 2)) is not None


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_random_mutate_and_crossover_give_valid_genotypes(seed: int) -> None:
    space = AutoSpikformerSpace()
    rng = random.Random(seed)
    a, b = space.random(rng), space.random(rng)
    assert space.choices.check(a) == a and set(a) == {"depth", "dim", "heads", "mlp_ratio", "tau", "v_threshold"}
    frozen = dict(a)
    child = space.mutate(a, rng)
    assert a == frozen and child != a and space.choices.check(child) == child
    assert space.choices.check(space.crossover(a, b, rng))
    assert a["dim"] % a["heads"] == 0 and a["dim"] % 8 == 0


def test_genotypes_and_options_are_checked() -> None:
    space = AutoSpikformerSpace(depth="1,3", dim="[16, 32]", heads=[1, 2])
    assert space.choices.depth == (1, 3) and space.choices.dim == (16, 32) and space.parents == 4
    assert AutoSpikformerSpace(parents=2).parents == 2
    with pytest.raises(SearchError, match="unknown option"):
        AutoSpikformerSpace(depht=[1])
    with pytest.raises(SearchError, match="dim 32 is not divisible by heads 5"):
        AutoSpikformerSpace(heads=[1, 5])
    with pytest.raises(SearchError, match="divisible by 8"):
        AutoSpikformerSpace(dim=[20])
    with pytest.raises(SearchError, match="tau=2.5 is not one of"):
        space.choices.check({**space.choices.largest(), "tau": 2.5})
    with pytest.raises(SearchError, match="no 'heads'"):
        space.choices.check({"depth": 1, "dim": 16})
    single = AutoSpikformerSpace(depth=[1], dim=[16], heads=[1], mlp_ratio=[1], tau=[2], v_threshold=[1])
    g = single.random(random.Random(0))
    assert single.mutate(g, random.Random(0)) == g and single.choices.size() == 1


def test_fitness_on_hand_values() -> None:
    assert aeb_fitness(0.9, 1.0, 2.0) == 0.9                            # under the target: accuracy alone
    assert aeb_fitness(0.9, 2.0, 2.0) == 0.9                            # at the target
    assert aeb_fitness(0.9, 4.0, 2.0) == pytest.approx(0.9 * 2 ** -0.07)    # 2x over: x 0.9526
    assert aeb_fitness(0.8, 6.0, 2.0, beta=-0.5) == pytest.approx(0.8 / 3 ** 0.5)
    space = AutoSpikformerSpace()
    assert space.fitness({"val_accuracy": 0.5, "energy_uj": 3.0, "e_target_uj": 1.5}) == pytest.approx(
        0.5 * 2 ** -0.07)
    assert AutoSpikformerSpace(e_target=6.0).fitness({"val_accuracy": 0.5, "energy_uj": 3.0}) == 0.5
    with pytest.raises(SearchError, match="no energy target"):
        space.fitness({"val_accuracy": 0.5, "energy_uj": 3.0})


TINY = {"depth": [1, 2], "dim": [16], "heads": [1, 2], "mlp_ratio": [1], "tau": [2.0], "v_threshold": [1.0],
        "supernet_epochs": 1, "batch_size": 32, "bn_batch_size": 16, "bn_batches": 2}


def test_setup_trains_once_and_evaluate_is_deterministic(tmp_path: Path, digits: DataBundle) -> None:
    assert SEARCHES["autospikformer"] is AutoSpikformerSpace
    space = AutoSpikformerSpace(**TINY)
    ctx = EvalContext("digits", 5, 2, 0, str(tmp_path), limit_train=64)
    setup = space.setup(ctx)
    sup = Path(setup["supernet"])
    assert sup == tmp_path / "supernet.safetensors" and sup.is_file() and setup["epochs"] == 1
    assert setup["reference"]["genotype"] == space.choices.largest()
    assert setup["e_target_uj"] == pytest.approx(0.5 * setup["reference"]["energy_uj"])
    stamp = sup.stat().st_mtime_ns
    assert AutoSpikformerSpace(**TINY).setup(ctx) == setup and sup.stat().st_mtime_ns == stamp     # resumed
    with pytest.raises(SearchError, match="lr"):
        AutoSpikformerSpace(**{**TINY, "lr": 0.1}).setup(ctx)
    g = {"depth": 1, "dim": 16, "heads": 2, "mlp_ratio": 1.0, "tau": 2.0, "v_threshold": 1.0}
    c = EvalContext("digits", 5, 2, 1234, str(tmp_path), limit_train=64, setup=setup)
    m = space.evaluate(g, c)
    assert m == AutoSpikformerSpace(**TINY).evaluate(dict(g), c)
    assert {"val_accuracy", "test_accuracy", "energy_uj", "params", "e_target_uj"} <= set(m)
    assert 0 <= m["val_accuracy"] <= 1 and m["energy_uj"] > 0
    assert space.fitness(m) == aeb_fitness(m["val_accuracy"], m["energy_uj"], setup["e_target_uj"])

"""The integer core simulator: bit-exact against the integer model at every layer and step (random and trained
models), a hand-computed run (synaptic operations, packets, updates, energy, decision step), the mapping's
counts, and the refusals (registers, cores, chains, routing), through the API and ``spikeforge deploy``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from spikeforge.compress import EncoderSpikes, IntegerLIF, IntegerSynapse, parse_spec, to_integer
from spikeforge.export.chip import ChipConfig, ChipError, map_model, parse_crossbar
from spikeforge.export.chip_sim import decision_steps, simulate, summary
from spikeforge.layers import TimeFold
from spikeforge.neurons import IF, LIF
from tests.compress.conftest import spikes_of, tiny
from tests.training.conftest import main_in_process


def quantised(spec: str, neuron: nn.Module, seed: int = 0) -> nn.Module:
    m = tiny(seed, neuron=neuron, pool="max")
    parse_spec("quantize", spec).apply(m)
    with torch.no_grad():                      # a bias too, and scales off their initial values
        for p in m.parameters():
            p.mul_(1 + 0.2 * torch.rand_like(p))
    return m.eval()


@pytest.mark.parametrize("spec,neuron", [
    ("w4u4", LIF(v_threshold=0.2)), ("w2u2", LIF(v_threshold=0.3, decay_input=False)),
    ("mint:weight_bits=3,state_bits=3,reset=hard,head_bits=5", LIF(tau=4.0, v_threshold=0.2)),
    ("w8u8", IF(v_threshold=0.05))])
def test_random_models_run_bit_exactly_at_every_layer_and_step(spec: str, neuron: nn.Module) -> None:
    integer = to_integer(quantised(spec, neuron))
    torch.manual_seed(1)
    x = torch.rand(6, 1, 8, 8) * 4
    run = simulate(map_model(integer, x, ChipConfig(crossbar=(64, 32), neurons_per_core=64)), x, record=True)
    seen, out = spikes_of(integer, ["sn2"], x)
    assert run.outputs.dtype == torch.int32 and torch.equal(run.outputs, out)
    assert run.spikes["sn2"].dtype == torch.int8 and torch.equal(run.spikes["sn2"], seen["sn2"])
    assert 0.005 < float(seen["sn2"].float().mean()) < 0.95                  # not trivially silent
    assert run.stats["block2.0"].spikes == run.stats["head.0"].input_events == int(seen["sn2"].sum())


class _Hand(nn.Module):
    """encoder (IF, θ 0.5: passes 0/1 inputs on) → fc1 [4→3] → IF θ 2 (soft reset) → fc2 [3→2] readout."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = EncoderSpikes(IF(v_threshold=0.5, v_reset=0.0))
        w1 = torch.tensor([[1, 0, 2, 0], [0, 3, 0, 0], [1, 1, 0, -1]])
        self.fc1 = TimeFold(IntegerSynapse("fc1", nn.Linear(4, 3), w1, torch.tensor([0, 0, 1]), 1.0))
        self.sn1 = IntegerLIF(2, None, lo=-7, hi=7)
        w2 = torch.tensor([[1, 0, -1], [0, 2, 1]])
        self.fc2 = TimeFold(IntegerSynapse("fc2", nn.Linear(3, 2), w2, None, 1.0))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.sn1(self.fc1(self.enc(x))))


def test_a_hand_computed_run_counts_events_updates_energy_and_the_decision() -> None:
    x = torch.tensor([[[1.0, 0, 1, 0]], [[0, 1, 0, 0]]])                 # [T=2, B=1, 4]
    mp = map_model(_Hand(), x)
    assert [r["cores"] for r in mp.table()] == [1, 1] and [r["synapses"] for r in mp.table()] == [6, 4]
    run = simulate(mp, x, record=True)
    # fc1, θ 2, soft reset: step 1, lines {0, 2}: I = [3, 0, 1] + b [0, 0, 1] → h [3, 0, 2] → spikes [1, 0, 1],
    # v [1, 0, 0]; step 2, line {1}: I = [0, 3, 1] + b → h [1, 3, 2] → spikes [0, 1, 1]
    assert run.spikes["sn1"].flatten(1).tolist() == [[1, 0, 1], [0, 1, 1]]
    assert run.outputs.flatten(1).tolist() == [[0, 1], [-1, 3]]
    s1, s2 = run.stats["fc1.0"], run.stats["fc2.0"]
    # fan-out of fc1's lines: 2, 2, 1, 1 → synops 2 + 1, then 2; fc2's: 1, 1, 2 → 1 + 2, then 1 + 2
    assert (s1.input_events, s1.line_events, s1.synops, s1.spikes) == (3, 3, 5, 4)
    assert (s2.input_events, s2.synops) == (4, 6)
    assert (s1.packets, s2.packets, s1.hops + s2.hops) == (3, 4, 0)          # one core each, both on tile 0
    # fc1 step 1: n0 input, n1 at rest with no input or bias, n2 input; step 2: n0 v = 1, n1 and n2 input
    assert (s1.updates_active, s1.updates_inactive) == (5, 1)
    assert (s2.updates_active, s2.updates_inactive) == (4, 0)
    total = summary(mp, run.stats, samples=1)["total"]
    want_pj = 11 * 23.6 + 9 * 81.0 + 1 * 52.0 + 7 * 1.7                      # 1,052.5 pJ (Loihi's table)
    assert total["energy_nJ"] == pytest.approx(want_pj / 1e3, rel=1e-12)
    assert run.decision.tolist() == [1]                # the cumulative output [0, 1], then [-1, 4]: class 1


def test_decision_step_is_the_first_after_which_the_cumulative_argmax_stays() -> None:
    out = torch.tensor([[[1, 0], [0, 1], [5, 0]],
                        [[0, 2], [0, 1], [0, 4]],
                        [[0, 1], [0, 1], [0, 2]]])                          # [T=3, B=3, K=2]
    # cumulative argmax: sample 0: 0, 1, 1; sample 1: 1, 1, 1; sample 2: 0, 0, 1
    assert decision_steps(out).tolist() == [2, 1, 3]


def test_crossbars_are_the_kernel_tiling_and_silent_neurons_take_no_core() -> None:
    m = quantised("w4u4", LIF(v_threshold=0.2))
    conv = m.block2[0]
    with torch.no_grad():                           # channels 0..7 of block2 pruned: weights and bias zero
        conv.parametrizations.weight.original[:8] = 0
        conv.parametrizations.bias.original[:8] = 0
    integer = to_integer(m)
    x = torch.rand(2, 1, 8, 8) * 4
    mp = map_model(integer, x, ChipConfig(crossbar=(64, 16), neurons_per_core=64))
    row = mp.table()[0]
    # kernel [16·3·3 = 144, 32] with 8 columns empty → 144 rows × 24 columns: 3 × 2 crossbars of 64 × 16
    assert row["crossbars"] == 6 and row["neurons"] == 32 * 16 and row["neurons_placed"] == 24 * 16
    assert row["cores"] == 6 and mp.cores == 7 and mp.layers[1].core0 == 6
    run = simulate(mp, x, record=True)
    assert torch.equal(run.outputs, spikes_of(integer, [], x)[1])
    assert int(run.spikes["sn2"][:, :, :8].sum()) == 0


def test_what_does_not_fit_is_refused_naming_the_layer_and_by_how_much() -> None:
    integer = to_integer(quantised("w4u4", LIF(v_threshold=0.2)))
    x = torch.rand(2, 1, 8, 8)
    with pytest.raises(ChipError, match=r"layer block2.0 does not fit: its 512 neurons need 8 cores of 64 neurons "
                                        r"and only 3 of the chip's 3 are left \(5 too many\); the model needs 9"):
        map_model(integer, x, ChipConfig(neurons_per_core=64, cores=3))
    with pytest.raises(ChipError, match=r"layer head.0 does not fit: .* 1 cores .* only 0 of the chip's 2"):
        map_model(integer, x, ChipConfig(cores=2))
    with pytest.raises(ChipError, match=r"layer block2.0: weights reach 7, beyond the core's int3 range \[-3, 3\]"):
        map_model(integer, x, ChipConfig(weight_bits=3))
    with pytest.raises(ChipError, match=r"layer head.0: .* quantise the readout to 4 bits too .*head_bits=4"):
        map_model(integer, x, ChipConfig(weight_bits=4))                   # w4u4's head has 8 bits
    wide = to_integer(quantised("w8u8", LIF(v_threshold=0.2)))
    with pytest.raises(ChipError, match=r"layer block2.0: the membrane spans \[-127, 127\], beyond the core's "
                                        r"int6 \[-32, 31\]"):
        map_model(wide, x, ChipConfig(membrane_bits=6))


class _Branchy(_Hand):
    def forward(self, x: Tensor) -> Tensor:
        e = self.enc(x)
        return self.fc2(torch.maximum(self.sn1(self.fc1(e)), e[..., :3]))       # a skip connection


class _Doubling(_Hand):
    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(2 * self.sn1(self.fc1(self.enc(x))))


def test_branches_and_layers_that_are_not_a_routing_are_refused() -> None:
    x = torch.zeros(2, 1, 4)
    with pytest.raises(ChipError, match=r"not a feed-forward chain: maximum joins sn1, getitem"):
        map_model(_Branchy(), x)
    with pytest.raises(ChipError, match=r"between sn1 and fc2.0 the layers do not route spikes"):
        map_model(_Doubling(), x)
    with pytest.raises(ChipError, match=r"one floating-point encoder first"):
        map_model(nn.Sequential(TimeFold(nn.Linear(4, 2))), x)
    for bad in ("64by64", "0x4", "64x", "1x2x3"):
        with pytest.raises(ChipError, match="--crossbar: expected ROWSxCOLUMNS"):
            parse_crossbar(bad)
    assert parse_crossbar("32X16") == (32, 16)
    with pytest.raises(ChipError, match=r"neurons_per_core \(--neurons-per-core\) must be a positive integer, got 0"):
        ChipConfig(neurons_per_core=0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny digits CNN (max pooling) trained one epoch, then 4-bit MINT (4-bit head) from it, one epoch."""
    from spikeforge.cli import main
    root = tmp_path_factory.mktemp("deploy")
    common = ["--dataset", "digits", "--model", "spiking_cnn_tiny", "--model-arg", "pool=max", "--T", "4",
              "--encoding", "direct", "--epochs", "1", "--limit-train", "256", "--v-threshold", "0.3", "--lr", "0.01",
              "--progress", "false"]
    assert main(["train", *common, "--run-dir", str(root / "fp")]) == 0
    init = root / "fp" / "checkpoints" / "last.safetensors"
    assert main(["train", *common, "--quantize", f"mint:weight_bits=4,state_bits=4,head_bits=4,init={init}",
                 "--run-dir", str(root / "q")]) == 0
    return {"q": root / "q", "fp": root / "fp"}


def test_deploy_runs_the_test_split_bit_exactly_and_matches_eval(runs: dict[str, Path], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    from spikeforge.app import evaluate_checkpoint
    out = tmp_path / "chip.json"
    from spikeforge.cli import main
    capsys.readouterr()
    code = main(["deploy", str(runs["q"]), "--crossbar", "64x32", "--neurons-per-core", "64", "--weight-bits", "4",
                 "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "outputs bit-exact: yes" in printed and "energy per sample" in printed
    res = json.loads(out.read_text())
    ev = evaluate_checkpoint(runs["q"] / "checkpoints" / "last.safetensors")
    assert res["samples"] == ev["test_samples"] and res["accuracy"] == pytest.approx(ev["test_accuracy"], abs=1e-12)
    assert res["accuracy"] == res["integer_accuracy"] and res["bit_exact"] is True
    assert res["cores"] == sum(r["cores"] for r in res["mapping"]) == 9
    assert 1 <= res["decision_step_median"] <= 4 and res["run"]["total"]["spikes"] > 1 and res["accuracy"] > 0.2
    before = out.read_text()
    code, err = main_in_process(capsys, "deploy", str(runs["q"]), "--weight-bits", "4", "--json", str(out))
    assert code == 2 and err == [f"spikeforge: error: {out} exists; pass --overwrite to replace it"]
    assert out.read_text() == before                                          # nothing the user owns is lost


def test_deploy_refusals_are_one_line_with_exit_2(runs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, err = main_in_process(capsys, "deploy", str(runs["fp"]))
    assert code == 2 and len(err) == 1 and "the model is not quantised; the chip runs integer models" in err[0]
    code, err = main_in_process(capsys, "deploy", str(runs["q"]), "--cores", "4", "--neurons-per-core", "64")
    assert code == 2 and len(err) == 1 and "layer block2.0 does not fit" in err[0] and "(4 too many)" in err[0]
    code, err = main_in_process(capsys, "deploy", str(runs["q"]), "--crossbar", "big")
    assert code == 2 and err == ["spikeforge: error: --crossbar: expected ROWSxCOLUMNS with positive integers "
                                 "(e.g. 256x256), got 'big'"]
    code, err = main_in_process(capsys, "deploy", str(runs["q"]), "--limit", "0")
    assert code == 2 and "--limit must be a positive number" in err[0]

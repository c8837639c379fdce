"""Crossbar tiling: counts after compaction, greedy pruning that frees whole tiles, masks that survive a
checkpoint, and the spec's bad inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikeforge.compress import (
    CompressionError,
    CrossbarPrune,
    applied,
    crossbar_counts,
    parse_spec,
    prune_crossbars,
    tile,
    unfold_weight,
)


def test_a_300x300_layer_needs_4_crossbars_and_1_after_44_rows_and_columns_go() -> None:
    w = torch.randn(300, 300)
    assert tile(w, 256, 256).crossbars == 4
    w[:44] = 0
    w[:, 100:144] = 0          # empty columns anywhere: compaction moves the rest together
    t = tile(w, 256, 256)
    assert t.crossbars == 1 and len(t.rows) == 256 and len(t.cols) == 256
    rows, cols = t.tile_of(0, 0)
    assert rows[0] == 44 and 100 not in cols.tolist()


def test_empty_tiles_are_not_counted() -> None:
    w = torch.zeros(8, 8)
    w[:4, :4] = w[4:, 4:] = 1.0      # block-diagonal: every row and column used, 2 of the 4 tiles
    assert tile(w, 4, 4).crossbars == 2
    w[:4, :4] = 0
    w[0, 0] = 1.0                    # compaction keeps the order: rows (0, 4, 5, 6 | 7) share tiles
    assert tile(w, 4, 4).crossbars == 4 and tile(w, 5, 5).crossbars == 1
    assert tile(torch.zeros(5, 5), 2, 2).crossbars == 0


def test_unfolded_conv_weight_is_inputs_by_outputs() -> None:
    conv = nn.Conv2d(3, 5, 3)
    u = unfold_weight(conv)
    assert u.shape == (27, 5) and torch.equal(u[:, 2], conv.weight[2].flatten())


def test_greedy_pruning_frees_the_cheapest_rows_and_keeps_the_rest() -> None:
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Linear(300, 300))
    with torch.no_grad():
        lin[0].weight[:, :44] *= 0.01            # 44 weak input lines: the cheapest cut
    dense = lin[0].weight.detach().clone()
    report = prune_crossbars(lin, 256, 256, 0.5)
    assert report == {"before": {"0": 4}, "after": {"0": 2}}
    w = lin[0].weight.detach()
    assert (w[:, :44] == 0).all() and torch.equal(w[:, 44:], dense[:, 44:])
    assert prune_crossbars(lin, 256, 256, 0.5)["after"] == {"0": 2}       # the same fraction again: no change


def test_pruned_column_masks_the_bias_through_training_and_masks_survive_a_state_dict() -> None:
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Linear(4, 6))
    prune_crossbars(lin, 4, 3, 0.5)                                       # 2 column tiles -> 1
    w, b = lin[0].weight.detach(), lin[0].bias.detach()
    dead = (w == 0).all(1)
    assert int(dead.sum()) == 3 and (b[dead] == 0).all() and (b[~dead] != 0).all()
    opt = torch.optim.SGD(lin.parameters(), lr=0.5)
    lin(torch.randn(8, 4)).sum().backward()                              # a step does not grow the bias back
    opt.step()
    assert (lin[0].bias.detach()[dead] == 0).all() and (lin[0].weight.detach()[dead] == 0).all()
    again = nn.Sequential(nn.Linear(4, 6))
    CrossbarPrune(R=4, C=3, first=True).apply(again)
    again.load_state_dict(lin.state_dict())
    assert torch.equal(again[0].weight, lin[0].weight) and crossbar_counts(again, 4, 3) == {"0": 1}


def test_pruning_callback_spreads_the_cuts_and_trains_through_them() -> None:
    from spikeforge.data import build_dataset
    from spikeforge.models import create_model
    from spikeforge.training import fit

    torch.manual_seed(0)
    data = build_dataset("digits", T=2, progress=False, limit_train=256)
    model = create_model("spiking_mlp_tiny", in_channels=1, img_size=8, num_classes=10, T=2, hidden=64)
    cp = CrossbarPrune(R=16, C=16, target=0.5, ramp=0.5, first=True)
    cp.apply(model)
    dense = sum(crossbar_counts(model, 16, 16).values())                  # 4·4 + 4·1 = 20
    seen = []

    from spikeforge.training import Callback

    class Count(Callback):
        def on_epoch_end(self, trainer, metrics):  # type: ignore[no-untyped-def]
            seen.append(sum(crossbar_counts(trainer.model, 16, 16).values()))

    fit(model, data, T=2, encoding="direct", epochs=4, progress=False, callbacks=[*cp.callbacks(), Count()],
        optimizer=lambda ps: torch.optim.Adam(ps, lr=5e-3))
    assert dense == 20 and seen[0] <= 15 and seen[1] == seen[2] == seen[3] <= 10
    assert applied(model) == {"prune": cp.spec()}
    with pytest.raises(CompressionError, match="already compressed"):
        CrossbarPrune(R=16, C=16).apply(model)


@pytest.mark.parametrize(("spec", "message"), [
    ("crossbar:R=0", "R must be an integer >= 1"), ("crossbar:C=2.5", "C must be an integer >= 1"),
    ("crossbar@1", "must be in [0, 1)"), ("crossbar@-0.1", "must be in [0, 1)"),
    ("crossbar:rows=3", "has no setting 'rows'"), ("nope", "unknown prune method 'nope'"),
    ("", "empty spec")])
def test_bad_crossbar_specs_are_one_clear_line(spec: str, message: str) -> None:
    with pytest.raises(CompressionError, match=message.replace("[", r"\[").replace(")", r"\)")) as e:
        parse_spec("prune", spec)
    assert "\n" not in str(e.value) and str(e.value).startswith("--prune")

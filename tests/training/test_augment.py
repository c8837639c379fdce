"""``--augment`` (``training.Augment``): each sample flipped and shifted the same way at every step, a static input
kept one step expanded, draws repeated by ``--resume``, and one clear line for what cannot take it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spikeforge.training import Augment
from spikeforge.training.augment import shift_each
from tests.training.conftest import final_state, main_in_process


def _candidates(img: torch.Tensor, s: int) -> list[torch.Tensor]:
    """Every flip × shift of one sample ``[C, H, W]`` within ``s`` pixels (zero fill)."""
    out = []
    H, W = img.shape[-2:]
    for flipped in (img, img.flip(-1)):
        p = torch.nn.functional.pad(flipped, (s, s, s, s))
        out += [p[:, s + dy:s + dy + H, s + dx:s + dx + W] for dy in range(-s, s + 1) for dx in range(-s, s + 1)]
    return out


def test_each_sample_is_one_flip_and_shift_of_itself_and_a_static_input_stays_static() -> None:
    torch.manual_seed(0)
    img = torch.rand(32, 2, 7, 6)
    x = img.unsqueeze(0).expand(4, *img.shape)
    y = Augment(flip=True, shift=2)(x)
    assert y.shape == x.shape and y.stride(0) == 0                # still one step expanded over time
    flips = 0
    for b in range(32):
        cands = _candidates(img[b], 2)
        hit = [k for k, c in enumerate(cands) if torch.equal(y[0, b], c)]
        assert hit, b
        flips += hit[0] >= len(cands) // 2
    assert 4 < flips < 28                                          # about half are mirrored
    assert not torch.equal(y[0], img)


def test_event_frames_get_the_same_draw_at_every_step() -> None:
    torch.manual_seed(1)
    img = torch.rand(8, 2, 10, 10)
    x = torch.stack([img * (t + 1) for t in range(5)])             # [T, B, C, H, W], steps differ
    y = Augment(flip=True, shift=None)(x)                          # shift=None: up to H // 8 = 1 pixel
    for t in range(5):
        torch.testing.assert_close(y[t], y[0] * (t + 1))
    assert any(torch.equal(y[0, b], c) for b in range(8) for c in _candidates(img[b], 1))


def test_shift_each_fills_with_zeros() -> None:
    torch.manual_seed(2)
    x = torch.ones(1, 64, 1, 4, 4)
    y = shift_each(x, 1)
    assert float(y.sum()) < float(x.sum()) and {float(v) for v in y.unique()} <= {0.0, 1.0}
    assert torch.equal(shift_each(x, 0), x)


@pytest.mark.parametrize("spec,message", [
    ("flop", "'flop': expected flip, shift or shift:N"), ("shift:-1", "expected shift:N with N a whole number"),
    ("flip,flip", "'flip' is given twice"), ("shift:two", "expected shift:N"),
    ("shift:0", "'shift:0' shifts nothing: expected shift:N with N >= 1")])
def test_parse_errors_name_the_part(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Augment.parse(spec)


def test_parse_reads_the_cli_form() -> None:
    a = Augment.parse("flip, shift:3")
    assert (a.flip, a.shift) == (True, 3)
    assert (Augment.parse("shift").flip, Augment.parse("shift").shift) == (False, None)


ARGS = ["train", "--dataset", "digits", "--model", "spiking_cnn_tiny", "--model-arg", "width=8", "--T", "2",
        "--encoding", "direct", "--epochs", "2", "--batch-size", "32", "--limit-train", "256", "--threads", "1",
        "--progress", "false", "--schedule", "constant", "--augment", "flip,shift:1"]


def test_an_augmented_run_resumes_to_the_same_weights(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main_in_process(capsys, *ARGS, "--run-dir", str(tmp_path / "ref"))[0] == 0
    want_w, want_rows = final_state(tmp_path / "ref")
    plain = tmp_path / "plain"
    assert main_in_process(capsys, *ARGS[:-2], "--run-dir", str(plain))[0] == 0
    assert not all(torch.equal(final_state(plain)[0][k], want_w[k]) for k in want_w)     # augmentation ran
    stopped = tmp_path / "stopped"
    assert main_in_process(capsys, *ARGS, "--max-steps", "11", "--run-dir", str(stopped))[0] == 0
    assert main_in_process(capsys, "train", "--resume", str(stopped), "--max-steps", "none")[0] == 0
    got_w, got_rows = final_state(stopped)
    assert all(torch.equal(got_w[k], want_w[k]) for k in want_w)
    assert got_rows == want_rows


@pytest.mark.parametrize("extra,message", [
    (["--method", "online"], "augment: method online does not augment its batches"),
    (["--loss", "stcl"], "augment: loss stcl makes its own augmented views"),
    (["--augment", "flop"], "augment: 'flop': expected flip, shift or shift:N"),
    (["--augment", "flip,shift:8"], "augment: shift:8 can move a 8x8 image of digits wholly out of view; "
                                    "expected N < 8")])
def test_what_cannot_augment_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
                                         message: str) -> None:
    code, err = main_in_process(capsys, *ARGS, *extra, "--run-dir", str(tmp_path / "run"))
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "run").exists()

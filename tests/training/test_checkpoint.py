"""Checkpoints: round trip of every part, and corruption detected on read."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spikeforge.training import CheckpointError, load_checkpoint, save_checkpoint


def _write(path: Path) -> dict:
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    save_checkpoint(path, model=model.state_dict(), optimizer=opt.state_dict(),
                    rng={"torch": torch.get_rng_state(), "numpy": [1, 2, 3]}, meta={"step": 7, "config": {"a": 1}})
    return {"model": model.state_dict(), "optimizer": opt.state_dict()}


def test_round_trip(tmp_path: Path) -> None:
    p = tmp_path / "c.safetensors"
    want = _write(p)
    got = load_checkpoint(p)
    assert all(torch.equal(got["model"][k], v) for k, v in want["model"].items())
    st_want, st_got = want["optimizer"]["state"], got["optimizer"]["state"]
    assert all(torch.equal(st_got[k]["exp_avg"], st_want[k]["exp_avg"]) for k in st_want)
    assert got["meta"] == {"step": 7, "config": {"a": 1}} and got["rng"]["numpy"] == [1, 2, 3]
    assert torch.equal(got["rng"]["torch"], torch.get_rng_state())
    assert not list(tmp_path.glob("*.tmp"))


def test_corruption_is_detected(tmp_path: Path) -> None:
    p = tmp_path / "c.safetensors"
    _write(p)
    raw = bytearray(p.read_bytes())
    p.write_bytes(bytes(raw[: len(raw) - 10]))
    with pytest.raises(CheckpointError, match="unreadable or truncated"):
        load_checkpoint(p)
    raw[-5] ^= 0xFF                                       # one flipped bit in a tensor
    p.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(p)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.safetensors")


def _rewrite_metadata(p: Path, edit) -> None:
    """Rewrite the file's spikeforge metadata text with ``edit(text)``, keeping the tensors as they are."""
    from safetensors import safe_open
    from safetensors.torch import save_file
    with safe_open(str(p), framework="pt") as f:
        text, tensors = f.metadata()["spikeforge"], {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, str(p), metadata={"spikeforge": edit(text)})


def test_edited_metadata_is_detected(tmp_path: Path) -> None:
    """The step, config, RNG and optimiser settings live in the JSON metadata: an edit is corruption too."""
    p = tmp_path / "c.safetensors"
    _write(p)
    _rewrite_metadata(p, lambda s: s.replace('"step": 7', '"step": 8'))
    with pytest.raises(CheckpointError, match="tensors or metadata do not match the stored sha256"):
        load_checkpoint(p)
    _write(p)
    _rewrite_metadata(p, lambda s: s[:40] + "XXXX" + s[44:])        # no longer JSON
    with pytest.raises(CheckpointError, match="its metadata is not a JSON object"):
        load_checkpoint(p)


def test_a_first_format_checkpoint_still_loads(tmp_path: Path) -> None:
    """Format 1 hashed the tensors only: such files load, with that check."""
    import json

    from safetensors.torch import load_file

    from spikeforge.training.checkpoint import _digest
    p = tmp_path / "c.safetensors"
    want = _write(p)
    tensor_hash = _digest(load_file(str(p)))

    def as_format_1(text: str) -> str:
        return json.dumps({**json.loads(text), "format": "spikeforge-ckpt-1", "sha256": tensor_hash})

    _rewrite_metadata(p, as_format_1)
    got = load_checkpoint(p)
    assert all(torch.equal(got["model"][k], v) for k, v in want["model"].items()) and got["meta"]["step"] == 7
    _rewrite_metadata(p, lambda s: s.replace('"step": 7', '"step": 8'))
    assert load_checkpoint(p)["meta"]["step"] == 8          # what format 1 could not protect

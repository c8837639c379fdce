"""``atomic_write``: whole or absent, durable, no temp left behind, never clobbering when told not to."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spikeforge.core import atomic_write, cache_root, temp_path, temp_writer_pid


def test_refuses_overwrite_keeps_umask_and_leaves_no_temp(tmp_path: Path) -> None:
    p = tmp_path / "a.bin"
    atomic_write(p, [b"abc"], overwrite=False)
    umask = os.umask(0o022)
    os.umask(umask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(FileExistsError, match="overwrite=True"):
        atomic_write(p, [b"xyz"], overwrite=False)
    assert p.read_bytes() == b"abc"
    atomic_write(p, [b"x", b"yz"])
    assert p.read_bytes() == b"xyz"
    atomic_write(p, "text é")
    assert p.read_text() == "text é"
    atomic_write(p, lambda tmp: tmp.write_bytes(b"by a writer"))
    assert p.read_bytes() == b"by a writer"

    def boom():
        yield b"partial"
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "b.bin", boom())
    with pytest.raises(ValueError):
        atomic_write(tmp_path / "c.bin", lambda tmp: (tmp.write_bytes(b"half"), int("x")))
    assert sorted(os.listdir(tmp_path)) == ["a.bin"]


def test_missing_folder_names_the_folder_not_the_temp_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=f"folder {tmp_path / 'nope'} does not exist") as e:
        atomic_write(tmp_path / "nope" / "x.bin", b"1")
    assert ".tmp" not in str(e.value)


def test_temp_names_carry_the_writer_pid(tmp_path: Path) -> None:
    t = temp_path(tmp_path / "entry.npy")
    assert t.parent == tmp_path and t.name.startswith(".entry.npy.") and t.name.endswith(".tmp")
    assert temp_writer_pid(t) == os.getpid()
    assert temp_writer_pid(tmp_path / "entry.npy") is None and temp_writer_pid(".x.abc.tmp") is None


def test_cache_root_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPIKEFORGE_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    monkeypatch.delenv("SPIKEFORGE_CACHE")
    assert cache_root() == Path.home() / ".cache" / "spikeforge"


def test_a_folder_is_never_replaced(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError, match="it is a folder"):
        atomic_write(tmp_path / "d", b"x")
    assert (tmp_path / "d").is_dir() and sorted(p.name for p in tmp_path.iterdir()) == ["d"]

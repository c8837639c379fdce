"""Files that are whole or absent, and where caches live.

``atomic_write`` is the one way spikeforge writes a file a user or a later run will read: the bytes go
to a temp file beside the target, are fsynced, renamed over the target, and the folder is fsynced — a
process killed at any instant leaves the old file or the new one, never a mix. Temp files are named
``.<name>.<pid>-<thread>.tmp`` so a reader can tell a live writer's file from a dead one's
(``temp_writer_pid``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["atomic_write", "fsync_dir", "temp_path", "temp_writer_pid", "cache_root"]

Payload = bytes | bytearray | memoryview | str | Iterable[bytes | bytearray | memoryview] | Callable[[Path], object]


def cache_root() -> Path:
    """``$SPIKEFORGE_CACHE``, else ``~/.cache/spikeforge``: compiled kernels go to ``kernels/``, dataset
    caches to ``datasets/`` under it."""
    root = os.environ.get("SPIKEFORGE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "spikeforge")
    return Path(root)


def temp_path(path: str | os.PathLike[str]) -> Path:
    """The temp file a write of ``path`` goes through: hidden, beside it, unique per process and thread."""
    p = Path(path)
    return p.with_name(f".{p.name}.{os.getpid()}-{threading.get_ident()}.tmp")


def temp_writer_pid(tmp: str | os.PathLike[str]) -> int | None:
    """The process id in a ``temp_path`` name, or ``None`` if the name is not one."""
    name = Path(tmp).name
    if not (name.startswith(".") and name.endswith(".tmp")):
        return None
    try:
        return int(name[:-4].rsplit(".", 1)[-1].split("-", 1)[0])
    except ValueError:
        return None


def fsync_dir(folder: str | os.PathLike[str]) -> None:
    """Make a rename inside ``folder`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: Payload, *, overwrite: bool = True,
                 sync_dir: bool = True) -> Path:
    """Write ``path`` atomically and durably; returns it.

    Args:
        path: the target; its folder must exist (an error names the folder, not the temp file).
        data: bytes, a str (UTF-8), an iterable of byte chunks, or a callable that writes the temp path it
            is given (e.g. ``lambda p: safetensors.torch.save_file(tensors, str(p))``).
        overwrite: replace an existing file. ``False`` refuses one — also one created by a concurrent
            writer meanwhile (the rename is a hard link, which fails if the name exists, where the file
            system has hard links).
        sync_dir: fsync the folder after the rename (makes the rename itself durable). Writers of many
            small files that fsync the folder once afterwards (the data cache's manifest) pass ``False``.

    Raises:
        FileExistsError: ``overwrite=False`` and the target exists.
        FileNotFoundError: the target's folder does not exist.
    """
    target = Path(os.fspath(path))
    if not target.parent.is_dir():
        raise FileNotFoundError(f"cannot write {target}: folder {target.parent} does not exist")
    if target.is_dir():
        raise IsADirectoryError(f"cannot write {target}: it is a folder, not a file")
    if not overwrite and target.exists():
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    tmp = temp_path(target)
    try:
        if callable(data):
            data(tmp)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        else:
            with open(tmp, "wb") as f:
                if isinstance(data, str):
                    f.write(data.encode())
                elif isinstance(data, (bytes, bytearray, memoryview)):
                    f.write(data)
                else:
                    for chunk in data:
                        f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise FileExistsError(f"{target} exists; pass overwrite=True to replace it") from None
            except OSError:          # no hard links here (some network / FAT file systems)
                os.replace(tmp, target)
            else:
                os.unlink(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync_dir:
        fsync_dir(target.parent)
    return target

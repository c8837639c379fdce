"""An exclusive lock on a folder, held by a process for as long as it works there.

``hold(folder, what)`` takes an OS-level lock (``flock``) on ``folder/.lock`` and writes the holder's pid
into it. The operating system releases the lock when the holder exits — also when it is killed — so a lock
is never stale; the file staying behind means nothing. A second process gets ``LockHeld`` at once, naming
the holder.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import UserError

__all__ = ["LockHeld", "FolderLock", "hold", "check_free", "LOCK_NAME"]

LOCK_NAME = ".lock"


class LockHeld(UserError):
    """Another process holds the lock; ``pid`` names it (``None`` if it could not be read)."""

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


class FolderLock:
    """The held lock of one folder; ``release()`` (or the process's end) lets it go."""

    def __init__(self, folder: str | os.PathLike[str], what: str = "folder", wait: bool = False) -> None:
        self.path = Path(folder) / LOCK_NAME
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            pid = _read_pid(self.fd)
            for _ in range(40):        # the holder writes its pid just after taking the lock: wait for it a little
                if pid is not None:
                    break
                time.sleep(0.025)
                pid = _read_pid(self.fd)
            os.close(self.fd)
            who = f"process {pid}" if pid is not None else "another process"
            raise LockHeld(f"{what} {Path(folder)} is in use by {who} (wait for it to finish, or choose "
                           "another folder)", pid) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)          # closing the descriptor releases the flock
            self.fd = -1


def check_free(folder: str | os.PathLike[str], what: str = "folder") -> None:
    """Raise ``LockHeld`` naming the holder if some process holds ``folder``'s lock (nothing is taken)."""
    if (Path(folder) / LOCK_NAME).is_file():
        FolderLock(folder, what).release()


def _read_pid(fd: int) -> int | None:
    try:
        return int(os.pread(fd, 32, 0).decode().strip() or "x")
    except (ValueError, OSError):
        return None


@contextmanager
def hold(folder: str | os.PathLike[str], what: str = "folder", wait: bool = False) -> Iterator[FolderLock]:
    """Hold ``folder``'s lock inside the ``with`` block; ``wait=True`` blocks until it is free instead of
    raising ``LockHeld``."""
    lock = FolderLock(folder, what, wait)
    try:
        yield lock
    finally:
        lock.release()

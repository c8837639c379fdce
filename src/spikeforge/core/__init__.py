"""The bottom layer every other package may use: nothing here imports another spikeforge package.

* ``backend``: the step-function types (``State``, ``StepFn``), the scan-backend protocol and registry;
* ``ste``: straight-through rounding (``round_ste``, ``floor_ste``) and the integer floor shift;
* ``io``: atomic file writes and the cache root (``$SPIKEFORGE_CACHE``); ``lock``: a folder held by one process;
* ``errors``: ``UserError``, the base of every error in what a user gave (the CLI's exit code 2);
* ``allocator``: ``keep_freed_memory``, glibc keeps a step's freed memory for the next step;
* ``mode``: ``eval_mode``, evaluation mode for a ``with`` block (the module's mode is put back);
* ``names``: registries by name with "did you mean" errors (models, datasets, neurons, losses, methods);
* ``hooks``: ``hooks_why_not``, whether hooks require a module's own call (the fast paths that bypass it ask).
"""

from .allocator import keep_freed_memory
from .backend import (
    Backend,
    BackendFallbackWarning,
    State,
    StepFn,
    available_backends,
    get_backend,
    register_backend,
    resolve_backend,
    state_like,
)
from .errors import UserError, first_line
from .hooks import hooks_why_not
from .io import atomic_write, cache_root, fsync_dir, temp_path, temp_writer_pid
from .lock import FolderLock, LockHeld, check_free, hold
from .mode import eval_mode
from .names import Registry, UnknownNameError, did_you_mean
from .ste import floor_ste, round_ste, shift_right

__all__ = ["State", "StepFn", "Backend", "BackendFallbackWarning", "register_backend", "get_backend",
           "resolve_backend", "available_backends", "state_like", "round_ste", "floor_ste", "shift_right",
           "atomic_write", "fsync_dir", "temp_path", "temp_writer_pid", "cache_root", "Registry", "UnknownNameError",
           "did_you_mean", "UserError", "first_line", "FolderLock", "LockHeld", "hold", "check_free",
           "eval_mode", "keep_freed_memory", "hooks_why_not"]

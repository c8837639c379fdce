"""A run folder belongs to one run: naming, checks before anything is written, the lock, starting over.

* Default names carry the time and a random suffix, so two runs started in the same second differ.
* Before any file is written: the target is not a file, its nearest existing folder is writable, and it
  does not already hold a run — a folder holding a run is one with ``config.json`` or ``checkpoints/``;
  unrelated files of the user's are left alone and do not count.
* While a run works in its folder it holds the folder's lock (``spikeforge.core.hold``): a second process
  aimed at the same folder stops at once with one line naming the first. The OS releases the lock when the
  holder exits, killed or not.
* ``--resume`` reads the run's ``config.json`` (or, if that is gone, the newest valid checkpoint's copy);
  a run killed before its first checkpoint starts over from that config. ``--overwrite`` removes the
  run's own files (never anything else) and starts over.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from ..core import UserError
from ..training import CheckpointError, load_checkpoint, newest_checkpoint
from .config import ConfigError, TrainConfig, load_config

__all__ = ["RUN_FILES", "default_run_dir", "check_target", "holds_run", "clear_run", "saved_config",
           "SAFE_ON_RESUME", "apply_changes", "run_checkpoint"]

RUN_FILES = ("config.json", "config.yaml", "checkpoints", "metrics.csv", "summary.json", "tb", "report")
MARKERS = ("config.json", "checkpoints")
# fields a resumed run may change: how long it runs, how often it checkpoints and evaluates, how it is shown
SAFE_ON_RESUME = ("epochs", "max_steps", "eval_every", "ckpt_every", "progress", "threads", "num_workers",
                  "skip_nonfinite", "max_skipped", "data_root")
"""The config fields ``--resume`` lets a flag change (they do not change what is learned); any other
different flag is refused."""


def default_run_dir(cfg: TrainConfig) -> Path:
    """``runs/<dataset>-<model>-seed<N>-<YYYYmmdd-HHMMSS>-<6 hex>``."""
    return Path("runs") / (f"{cfg.dataset}-{cfg.model}-seed{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}-"
                           f"{secrets.token_hex(3)}")


def check_target(run_dir: Path) -> None:
    """Raise ``ConfigError`` if ``run_dir`` cannot become a run folder (it is a file, or it cannot be
    created or written)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run_dir: {run_dir} is a file, not a folder")
    probe = run_dir
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"run_dir: cannot create {run_dir}: {probe} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"run_dir: cannot write in {probe} (permission denied)")


def holds_run(run_dir: Path) -> bool:
    return any((run_dir / m).exists() for m in MARKERS)


def clear_run(run_dir: Path) -> list[str]:
    """Remove the files a run writes (``RUN_FILES``) from ``run_dir``; anything else stays. Returns what went."""
    gone = []
    for name in RUN_FILES:
        p = run_dir / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        elif p.exists() or p.is_symlink():
            p.unlink()
        else:
            continue
        gone.append(name)
    return gone


def saved_config(run_dir: Path) -> dict[str, Any]:
    """The config a run was started with: ``config.json``, else the one stored in its newest valid checkpoint."""
    p = run_dir / "config.json"
    if p.is_file():
        try:
            saved = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"resume: {p} is unreadable ({e})") from None
        if not isinstance(saved, dict):
            raise ConfigError(f"resume: {p} does not hold a config (a JSON object of fields)")
        return saved
    ck = newest_checkpoint(run_dir / "checkpoints")
    if ck is None:
        raise ConfigError(f"resume: {run_dir} holds no run to continue (no config.json, no valid checkpoint)")
    saved = load_checkpoint(ck)["meta"].get("config")
    if not isinstance(saved, dict):
        raise CheckpointError(f"checkpoint {ck} stores no training config (meta.config)")
    return saved


def apply_changes(saved: dict[str, Any], changes: dict[str, Any], run_dir: Path) -> TrainConfig:
    """The saved config with ``changes`` applied where they are safe (``SAFE_ON_RESUME``); any other field
    that differs from the saved value raises ``ConfigError`` naming it (nothing is ignored silently)."""
    base = {k: v for k, v in saved.items() if k != "run_dir"}
    try:
        cfg = load_config(None, base)            # read as a config file is: types coerced, unknown fields named
    except ConfigError as e:
        raise ConfigError(f"resume: the saved config of {run_dir} is invalid ({e})") from None
    for k, v in changes.items():
        if k == "run_dir" or getattr(cfg, k) == v:
            continue
        if k not in SAFE_ON_RESUME:
            flag = "--" + k.replace("_", "-").removesuffix("s") if k.endswith("_args") else "--" + k.replace("_", "-")
            raise ConfigError(f"resume: {flag} cannot change when a run resumes (the run has {getattr(cfg, k)!r}, "
                              f"given {v!r}); what may change: {', '.join(SAFE_ON_RESUME)}")
        setattr(cfg, k, v)
    cfg.run_dir = str(run_dir)
    return cfg


def run_checkpoint(path: Path, hint: str = "") -> Path:
    """A run folder's best checkpoint, else its last; any other path as it is. A folder without either
    raises ``UserError`` (``hint`` is added to the message: what kind of run the caller takes)."""
    if path.is_dir():
        for name in ("best", "last"):
            p = path / "checkpoints" / f"{name}.safetensors"
            if p.is_file():
                return p
        raise UserError(f"{path}: a folder with no checkpoints/best.safetensors or last.safetensors{hint}")
    return path

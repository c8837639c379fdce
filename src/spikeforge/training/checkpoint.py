"""Checkpoints that survive a crash: one safetensors file, written atomically, verified when read.

A checkpoint holds the model weights, the optimiser's tensors, the torch / encoder RNG states (as
tensors) and, in the file's JSON metadata, everything else: the optimiser's hyper-parameters, numpy's
and Python's RNG states, the step, epoch and position in the epoch, the best validation score, the
number of metric rows written, the config, the train-step strategy's state (``extra``) — and a sha256
of all tensor bytes and of that metadata, checked on load (files of the first format, whose hash covers
the tensors only, still load).

Written with ``spikeforge.core.atomic_write`` (temp file, fsync, rename, fsync of the folder): a process
killed at any instant leaves either the previous checkpoint or the new one, never a half file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..core import UserError, atomic_write

__all__ = ["save_checkpoint", "load_checkpoint", "CheckpointError", "find_checkpoint", "newest_checkpoint",
           "CheckpointFallbackWarning"]

FORMAT = "spikeforge-ckpt-2"         # 2: the sha256 covers the JSON metadata as well as the tensors
READABLE = ("spikeforge-ckpt-1", FORMAT)


class CheckpointError(UserError, ValueError):
    """The file is missing, truncated, corrupt, or not a spikeforge checkpoint; the message says which."""


class CheckpointFallbackWarning(UserWarning):
    """A checkpoint was unreadable and an older valid one is used instead."""


def _digest(tensors: dict[str, Tensor], info: dict[str, Any] | None = None) -> str:
    """sha256 of the tensors and (format 2) of the metadata ``info``: its JSON as it reads back, keys sorted."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        t = tensors[k].contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(repr(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    if info is not None:
        h.update(b"\0meta\0" + json.dumps(json.loads(json.dumps(info)), sort_keys=True).encode())
    return h.hexdigest()


def _split_optimizer(state: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    tensors: dict[str, Tensor] = {}
    rest: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for pid, st in state["state"].items():
        rest["state"][str(pid)] = {}
        for k, v in st.items():
            if isinstance(v, Tensor):
                tensors[f"optim/{pid}/{k}"] = v.detach().cpu().contiguous()
                rest["state"][str(pid)][k] = {"tensor": f"optim/{pid}/{k}"}
            else:
                rest["state"][str(pid)][k] = {"value": v}
    return tensors, rest


def _join_optimizer(tensors: dict[str, Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for pid, st in rest["state"].items():
        state[int(pid)] = {k: (tensors[v["tensor"]] if "tensor" in v else v["value"]) for k, v in st.items()}
    return {"state": state, "param_groups": rest["param_groups"]}


def save_checkpoint(path: str | Path, *, model: dict[str, Tensor], optimizer: dict[str, Any] | None = None,
                    rng: dict[str, Any] | None = None, meta: dict[str, Any] | None = None,
                    extra: dict[str, dict[str, Any]] | None = None, overwrite: bool = True) -> Path:
    """Write atomically. ``rng`` values and the values of each ``extra`` section (e.g. ``{"method": state}``)
    that are tensors are stored as tensors, the rest as JSON. ``overwrite=False`` refuses an existing file,
    also one that appears while writing."""
    try:
        from safetensors.torch import save_file
    except ImportError as e:  # pragma: no cover
        raise ImportError("checkpoints need safetensors: pip install 'spikeforge[train]'") from e
    path = Path(path)
    tensors = {f"model/{k}": v.detach().cpu().contiguous() for k, v in model.items()}
    info: dict[str, Any] = {"format": FORMAT, "meta": meta or {}, "rng": {}}
    if optimizer is not None:
        ot, info["optimizer"] = _split_optimizer(optimizer)
        tensors.update(ot)
    sections = {"rng": rng or {}, **{f"extra/{name}": sec for name, sec in (extra or {}).items()}}
    for sec, values in sections.items():
        info.setdefault(sec, {})
        for k, v in values.items():
            if isinstance(v, Tensor):
                tensors[f"{sec}/{k}"] = v.detach().cpu().contiguous()
            else:
                info[sec][k] = v
    seen: set[int] = set()
    for k, v in tensors.items():       # tied parameters (one tensor under two names): safetensors stores copies
        ptr = v.untyped_storage().data_ptr()
        if v.numel() and ptr in seen:
            tensors[k] = v.clone()
        seen.add(ptr)
    info["sha256"] = _digest(tensors, info)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"spikeforge": json.dumps(info)}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=header), overwrite=overwrite)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """``{"model", "optimizer", "rng", "meta", "extra"}`` from a checkpoint, after checking its hash."""
    from safetensors import SafetensorError, safe_open
    path = Path(path)
    if path.is_dir():
        hint = path / "checkpoints" / "last.safetensors"
        raise CheckpointError(f"checkpoint {path} is a folder, not a checkpoint file"
                              + (f" (did you mean {hint}?)" if hint.is_file() else ""))
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint {path} is unreadable or truncated ({e})") from None
    if "spikeforge" not in header:
        raise CheckpointError(f"checkpoint {path} is a safetensors file but not a spikeforge checkpoint")
    try:
        info = json.loads(header["spikeforge"])
    except ValueError:
        info = None
    if not isinstance(info, dict):
        raise CheckpointError(f"checkpoint {path} is corrupt: its metadata is not a JSON object")
    if info.get("format") not in READABLE:
        raise CheckpointError(f"checkpoint {path} has format {info.get('format')!r}, expected one of {READABLE}")
    stored = info.pop("sha256", None)
    if _digest(tensors, info if info["format"] == FORMAT else None) != stored:
        raise CheckpointError(f"checkpoint {path} is corrupt: its tensors or metadata do not match the stored "
                              "sha256")
    model = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    rng = dict(info.get("rng", {}))
    rng.update({k[len("rng/"):]: v for k, v in tensors.items() if k.startswith("rng/")})
    optimizer = _join_optimizer(tensors, info["optimizer"]) if "optimizer" in info else None
    extra: dict[str, dict[str, Any]] = {}
    for sec in [k for k in info if k.startswith("extra/")]:
        name = sec[len("extra/"):]
        extra[name] = dict(info[sec])
        extra[name].update({k[len(sec) + 1:]: v for k, v in tensors.items() if k.startswith(sec + "/")})
    return {"model": model, "optimizer": optimizer, "rng": rng, "meta": info.get("meta", {}), "extra": extra}


def find_checkpoint(folder: str | Path, prefer: str = "last") -> tuple[Path | None, list[str]]:
    """The checkpoint to continue from in ``folder`` and what was unreadable on the way: ``<prefer>.safetensors``
    when it is valid, else the valid checkpoint with the highest step; ``None`` when there is no valid one."""
    folder = Path(folder)
    if not folder.is_dir():
        return None, []
    first = folder / f"{prefer}.safetensors"
    bad: list[str] = []
    if first.is_file():
        try:
            load_checkpoint(first)
            return first, []
        except CheckpointError as e:
            bad.append(str(e))
    best: tuple[int, Path] | None = None
    for p in sorted(folder.glob("*.safetensors")):
        if p == first:
            continue
        try:
            step = int(load_checkpoint(p)["meta"].get("step", -1))
        except (CheckpointError, TypeError, ValueError) as e:
            bad.append(str(e))
            continue
        if best is None or step > best[0]:
            best = (step, p)
    if bad:
        bad.append(f"continuing from {best[1].name} (step {best[0]})" if best else "no valid checkpoint is left")
    return (best[1] if best else None), bad


def newest_checkpoint(folder: str | Path, prefer: str = "last") -> Path | None:
    """``find_checkpoint``'s choice, with a ``CheckpointFallbackWarning`` naming what was unreadable."""
    path, bad = find_checkpoint(folder, prefer)
    if bad:
        import warnings
        warnings.warn("; ".join(bad), CheckpointFallbackWarning, stacklevel=2)
    return path

"""A disk cache of pre-processed tensors that cannot lie.

Peers trust a cache because its folder exists: an interrupted run leaves truncated files that fail
much later (``fangwei123456/spikingjelly#94``, ``#97``), and a changed transform silently reuses the
old tensors (Tonic's ``DiskCachedDataset`` docs). Here:

* **Key.** ``<cache_dir>/<key>/`` where ``key = sha256(json(material))[:20]`` and ``material`` holds
  the dataset's identity (``dataset.cache_identity()`` or ``dataset_id=``), a description of the
  transform's *parameters* (:func:`describe`: dataclass fields, attributes, the bytecode of plain
  functions), ``version`` and the cache format. Any parameter change is a new key.
* **Atomic entries.** Each sample is one ``NNNNNNNN.npy`` written with ``spikeforge.core.atomic_write``
  (temp file in the same folder, fsync, rename). Its record (sha256, size, shape, stored and original dtype, label)
  goes to ``manifest.json`` (also atomic, flushed every second during :meth:`CachedDataset.build`),
  or to a ``NNNNNNNN.json`` sidecar when the entry was made lazily by ``__getitem__`` (so DataLoader
  workers never race on the manifest); :meth:`CachedDataset.build` folds sidecars in.
* **Checked on read.** Every read verifies size and sha256 against the record, and the record itself
  (label, shape, dtypes, size, hash) against its own checksum, so nothing the cache returns is unchecked.
  A missing, truncated, corrupt, altered or unrecorded entry, or a leftover temp file, is rebuilt (or
  removed) and reported with a :class:`CacheRepairWarning` — one per read repair, one summary with counts
  per :meth:`CachedDataset.build`; counts are in :attr:`CachedDataset.report`.
* **One builder at a time.** :meth:`CachedDataset.build` holds the cache folder's lock
  (``spikeforge.core.hold``): a second builder waits, then finds the work done. Pool workers die with the
  process that started them.
* **Compact.** Integer-valued tensors are stored as the smallest of uint8/uint16/int8/int16 that
  holds them *losslessly*, and given back in their original dtype (or ``load_dtype``).
* **Parallel.** :meth:`CachedDataset.build` pre-processes missing entries in chunks with a process
  pool (2 workers by default; a dataset's ``__getitems__`` is used for whole chunks) and a tqdm bar.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import multiprocessing as mp
import os
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..core import atomic_write, hold, temp_writer_pid
from .cache_key import cache_key, describe, qualname

__all__ = ["CachedDataset", "CacheRepairWarning", "CacheReport", "describe", "cache_key", "CACHE_FORMAT"]

CACHE_FORMAT = 2          # 2: every record carries a checksum of itself ("check")
_COMPACT = (np.uint8, np.uint16, np.int8, np.int16)


class CacheRepairWarning(UserWarning):
    """A cache entry was found partial, corrupt or unrecorded, and was rebuilt or removed."""


@dataclasses.dataclass
class CacheReport:
    """What a :class:`CachedDataset` found and did since it was opened."""

    removed_partial: int = 0  # leftover temp files of interrupted writers, deleted
    rebuilt_corrupt: list[int] = dataclasses.field(default_factory=list)  # bad size/hash/shape
    rebuilt_unrecorded: list[int] = dataclasses.field(default_factory=list)  # file, no record
    built: int = 0  # entries computed and written


def _writer_alive(tmp: Path) -> bool:
    """Whether the process named in a temp file (``spikeforge.core.temp_path``) still runs (its write may
    be in flight)."""
    pid = temp_writer_pid(tmp)
    if pid is None:
        return False
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _compact(a: np.ndarray) -> np.ndarray:
    """The smallest integer dtype that holds ``a`` exactly, or ``a`` unchanged."""
    if a.size == 0 or a.dtype.kind not in "biuf" or a.dtype in _COMPACT:
        return a
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        return a
    lo, hi = a.min(), a.max()
    for dt in _COMPACT:
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            c = a.astype(dt)
            return c if np.array_equal(c.astype(a.dtype), a) else a
    return a


def _jsonable_label(label: Any) -> Any:
    if isinstance(label, torch.Tensor):
        label = label.tolist()
    if isinstance(label, (np.generic, np.ndarray)):
        label = label.tolist()
    json.dumps(label)  # raises TypeError naming the type if it is not storable
    return label


def _to_numpy(out: Any, index: int) -> np.ndarray:
    if isinstance(out, torch.Tensor):
        return out.detach().cpu().numpy()
    if isinstance(out, np.ndarray):
        return out
    raise TypeError(f"cache: the transform must return a tensor or ndarray, got {type(out).__name__} "
                    f"for sample {index}")


def _record_check(index: int, rec: dict[str, Any]) -> str:
    """sha256 of an entry's record (every field but the check itself) and its index."""
    body = {k: rec[k] for k in rec if k != "check"}
    return hashlib.sha256(json.dumps([index, body], sort_keys=True).encode()).hexdigest()[:32]


def _make_entries(spec: tuple[Any, ...], indices: Sequence[int]) -> list[tuple[int, dict[str, Any]]]:
    """Compute, store and describe entries ``indices`` (runs in workers and inline)."""
    dataset, transform, folder = spec
    items = (dataset.__getitems__(list(indices)) if hasattr(dataset, "__getitems__")
             else [dataset[i] for i in indices])
    out = []
    for i, (sample, label) in zip(indices, items):
        arr = _to_numpy(transform(sample) if transform is not None else sample, i)
        stored = _compact(np.ascontiguousarray(arr))
        buf = io.BytesIO()
        np.save(buf, stored, allow_pickle=False)
        data = buf.getvalue()
        atomic_write(Path(folder) / f"{i:08d}.npy", data, sync_dir=False)    # flush() syncs the folder
        rec = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "shape": list(arr.shape),
               "dtype": str(stored.dtype), "orig_dtype": str(arr.dtype), "label": _jsonable_label(label)}
        rec["check"] = _record_check(i, rec)
        out.append((i, rec))
    return out


_WORKER_SPEC: tuple[Any, ...] = ()


def _init_worker(spec: tuple[Any, ...], parent: int) -> None:
    global _WORKER_SPEC
    _WORKER_SPEC = spec
    torch.set_num_threads(1)
    _die_with(parent)


def _die_with(parent: int) -> None:
    """End this process when ``parent`` does (killed or not): the kernel's parent-death signal on Linux, and a
    watchdog thread everywhere (a pool worker must not outlive the build that started it)."""
    try:
        import ctypes
        import signal
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)          # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:                          # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="spikeforge-cache-watchdog").start()


def _worker(indices: list[int]) -> list[tuple[int, dict[str, Any]]]:
    return _make_entries(_WORKER_SPEC, indices)


class CachedDataset(Dataset):
    """``(transform(sample), label)`` of ``dataset``, stored once on disk and verified on every read.

    Args:
        dataset: a map-style dataset of ``(sample, label)``; labels must be JSON-able.
        transform: the (deterministic) pre-processing to cache; it must return a tensor or array.
        cache_dir: the cache root; this cache lives in ``cache_dir/<key>/``.
        dataset_id: identity of the dataset's content; default ``dataset.cache_identity()``.
        key: extra key material, or a replacement for a transform with no stable description.
        version: bump it when code that the description cannot see changes.
        workers: processes for :meth:`build` (≤ 1 builds in this process).
        progress: show a tqdm bar in :meth:`build`.
        load_dtype: cast loaded tensors to this dtype (default: the transform's original dtype).
        chunk_size: samples per task in :meth:`build` (batched by ``__getitems__`` when present).
    """

    def __init__(self, dataset: Any, transform: Callable[[Any], Any] | None,
                 cache_dir: str | os.PathLike, *, dataset_id: Any = None, key: Any = None,
                 version: str = "1", workers: int = 2, progress: bool = True,
                 load_dtype: torch.dtype | None = None, chunk_size: int = 64) -> None:
        self.dataset, self.transform = dataset, transform
        self.workers, self.progress, self.load_dtype = workers, progress, load_dtype
        self.chunk_size = max(1, int(chunk_size))
        if dataset_id is None:
            if not hasattr(dataset, "cache_identity"):
                raise ValueError(f"CachedDataset: {type(dataset).__name__} has no cache_identity(); "
                                 "pass dataset_id= naming its content (source, split, parameters)")
            dataset_id = dataset.cache_identity()
        try:
            t_desc = describe(transform)
        except ValueError:
            if key is None:
                raise
            t_desc = {"type": qualname(type(transform)), "described_by": "key"}
        self.material = {"format": CACHE_FORMAT, "dataset": describe(dataset_id),
                         "transform": t_desc, "key": describe(key), "version": str(version)}
        self.key = cache_key(self.material)
        self.dir = Path(cache_dir) / self.key
        self.dir.mkdir(parents=True, exist_ok=True)
        self.report = CacheReport()
        self.entries: dict[int, dict[str, Any]] = {}
        self._open()

    # ---------------------------------------------------------------- manifest
    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    def _warn(self, msg: str) -> None:
        warnings.warn(f"cache {self.dir}: {msg}", CacheRepairWarning, stacklevel=3)

    def _open(self) -> None:
        """Load the manifest and sidecars; remove leftover temp files."""
        if self.manifest_path.is_file():
            try:
                self.entries = self._read_manifest()
            except (ValueError, KeyError, TypeError, OSError) as e:
                self._warn(f"manifest unreadable ({e}); every entry will be re-checked and rebuilt")
                self.entries = {}
        temps = [p for p in sorted(self.dir.glob(".*.tmp")) if not _writer_alive(p)]
        for p in temps:
            p.unlink(missing_ok=True)
        if temps:
            self.report.removed_partial += len(temps)
            self._warn(f"removed {len(temps)} partial write(s) left by an interrupted run: "
                       f"{', '.join(p.name for p in temps[:5])}")
        self._load_sidecars()

    def _load_sidecars(self) -> None:
        """Records of entries made lazily (possibly by other processes); newer than the manifest."""
        for side in sorted(self.dir.glob("[0-9]*.json")):
            rec = self._sidecar(int(side.stem))
            if rec is not None:
                self.entries[int(side.stem)] = rec

    def _sidecar(self, index: int) -> dict[str, Any] | None:
        side = self.dir / f"{index:08d}.json"
        try:
            rec = json.loads(side.read_text())
        except (OSError, ValueError):
            return None
        return rec if isinstance(rec, dict) and {"sha256", "size"} <= set(rec) else None

    def flush(self) -> None:
        """Write the manifest atomically and drop the sidecars it now covers."""
        doc = {"material": self.material, "key": self.key, "length": len(self.dataset),
               "entries": {str(k): self.entries[k] for k in sorted(self.entries)}}
        atomic_write(self.manifest_path, json.dumps(doc, indent=0))        # and fsyncs the folder
        for side in self.dir.glob("[0-9]*.json"):
            side.unlink(missing_ok=True)

    # ---------------------------------------------------------------- entries
    def _path(self, index: int) -> Path:
        return self.dir / f"{index:08d}.npy"

    def _check(self, index: int) -> tuple[np.ndarray | None, str]:
        """The stored array if entry ``index`` is intact, else ``(None, reason)``."""
        rec, path = self.entries.get(index), self._path(index)
        if rec is None and path.exists():
            rec = self._sidecar(index)  # made by another process (e.g. a DataLoader worker)
            if rec is not None:
                self.entries[index] = rec
        if rec is None:
            return None, ("unrecorded" if path.exists() else "missing")
        try:
            data = path.read_bytes()
        except OSError:
            return None, "file missing"
        if len(data) != rec["size"]:
            return None, f"truncated or resized: {len(data)} bytes, manifest says {rec['size']}"
        if rec.get("check") != _record_check(index, rec):
            return None, "record altered (its label, shape or dtypes no longer match its checksum)"
        if hashlib.sha256(data).hexdigest() != rec["sha256"]:
            return None, "sha256 mismatch (corrupt)"
        arr = np.load(io.BytesIO(data), allow_pickle=False)
        if list(arr.shape) != rec["shape"] or str(arr.dtype) != rec["dtype"]:
            return None, f"shape/dtype {arr.shape}/{arr.dtype} differ from the manifest"
        return arr, "ok"

    def _record(self, made: list[tuple[int, dict[str, Any]]], sidecar: bool) -> None:
        for i, rec in made:
            self.entries[i] = rec
            if sidecar:
                atomic_write(self.dir / f"{i:08d}.json", json.dumps(rec), sync_dir=False)
        self.report.built += len(made)

    def _note_rebuild(self, index: int, reason: str, warn: bool = True) -> None:
        if reason != "missing":
            kind = self.report.rebuilt_unrecorded if reason == "unrecorded" else \
                self.report.rebuilt_corrupt
            kind.append(index)
            if warn:
                self._warn(f"entry {index} ({self._path(index).name}): {reason}; rebuilt")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"CachedDataset: index {index} out of range for {n} samples")
        index = int(index) % n
        arr, reason = self._check(index)
        if arr is None:
            self._note_rebuild(index, reason)
            spec = (self.dataset, self.transform, str(self.dir))
            self._record(_make_entries(spec, [index]), sidecar=True)
            arr, reason = self._check(index)
            if arr is None:
                raise OSError(f"cache {self.dir}: entry {index} unreadable right after writing it "
                              f"({reason}); is the disk full or the folder shared?")
        rec = self.entries[index]
        t = torch.from_numpy(arr.astype(np.dtype(rec["orig_dtype"]), copy=False))
        return (t.to(self.load_dtype) if self.load_dtype is not None else t), rec["label"]

    def build(self, workers: int | None = None, progress: bool | None = None) -> CacheReport:
        """Pre-process every missing, unrecorded or damaged entry; returns :attr:`report`.

        Recorded entries are checked by size here (cheap) and by sha256 when read.
        """
        workers = self.workers if workers is None else workers
        progress = self.progress if progress is None else progress
        with hold(self.dir, "cache", wait=True):     # another builder of this cache finishes first
            return self._build(workers, progress)

    def _read_manifest(self) -> dict[int, dict[str, Any]]:
        """The manifest's entry records; raises (``ValueError`` …) if it is unreadable or of another key."""
        m = json.loads(self.manifest_path.read_text())
        if m.get("material") != json.loads(json.dumps(self.material)):
            raise ValueError("key material differs")
        return {int(k): v for k, v in m["entries"].items()}

    def _reload(self) -> None:
        """The manifest and sidecars as they are now (another builder may have written them meanwhile; what
        cannot be read is checked entry by entry by the build, as at opening)."""
        if self.manifest_path.is_file():
            with contextlib.suppress(ValueError, KeyError, TypeError, OSError):
                self.entries.update(self._read_manifest())
        self._load_sidecars()

    def _stale(self, index: int) -> str | None:
        """Why entry ``index`` must be built before use (cheap: its record and its file's size, not its hash),
        or ``None`` when it looks intact."""
        rec, path = self.entries.get(index), self._path(index)
        if rec is None:
            return "unrecorded" if path.exists() else "missing"
        if not path.exists():
            return "file missing"
        if rec.get("check") != _record_check(index, rec):
            return "record altered"
        if not path.is_file() or path.stat().st_size != rec.get("size"):
            return "truncated or resized"
        return None

    def _build(self, workers: int, progress: bool) -> CacheReport:
        self._reload()
        todo, reasons = [], []
        for i in range(len(self)):
            reason = self._stale(i)
            if reason is None:
                continue
            self.entries.pop(i, None)
            self._note_rebuild(i, reason, warn=False)
            if reason != "missing":
                reasons.append(reason)
            todo.append(i)
        if reasons:
            counts = ", ".join(f"{reasons.count(r)} {r}" for r in sorted(set(reasons)))
            which = sorted([*self.report.rebuilt_corrupt, *self.report.rebuilt_unrecorded])
            shown = ", ".join(str(i) for i in which[:8]) + (" …" if len(which) > 8 else "")
            self._warn(f"rebuilding {len(reasons)} damaged or unrecorded entries ({counts}): {shown}")
        chunks = [todo[k:k + self.chunk_size] for k in range(0, len(todo), self.chunk_size)]
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"caching {self.key}", disable=not progress or not todo)
        spec = (self.dataset, self.transform, str(self.dir))
        last = time.monotonic()
        try:
            if workers <= 1 or len(chunks) <= 1:
                for c in chunks:
                    self._record(_make_entries(spec, c), sidecar=False)
                    bar.update(len(c))
                    if time.monotonic() - last > 1.0:
                        self.flush()
                        last = time.monotonic()
            else:
                ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
                with ProcessPoolExecutor(min(workers, len(chunks)), mp_context=ctx,
                                         initializer=_init_worker, initargs=(spec, os.getpid())) as pool:
                    for fut in as_completed([pool.submit(_worker, c) for c in chunks]):
                        made = fut.result()
                        self._record(made, sidecar=False)
                        bar.update(len(made))
                        if time.monotonic() - last > 1.0:
                            self.flush()
                            last = time.monotonic()
        finally:
            bar.close()
            self.flush()
        return self.report

    def __repr__(self) -> str:
        return (f"CachedDataset(key={self.key}, n={len(self)}, stored={len(self.entries)}, "
                f"dir={str(self.dir)!r})")

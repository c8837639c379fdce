"""Cache keys: a deterministic, JSON-able description of a transform's parameters, and its hash.

Used by :mod:`spikeforge.data.cache`: a change of any parameter is a change of key, and an object
that cannot be described stably is refused rather than keyed by its memory address.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import json
import marshal
import types
from typing import Any

import numpy as np
import torch

__all__ = ["describe", "cache_key", "qualname"]


def qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"


def describe(obj: Any) -> Any:
    """A JSON-able, deterministic description of ``obj``'s parameters (for cache keys).

    Dataclasses give their type and fields; ``cache_params()`` is used when defined; containers,
    ``functools.partial`` and ``Compose``-like ``.transforms`` recurse; arrays give shape, dtype and
    sha256; functions give their name, a hash of their bytecode and constants (so editing a function body
    changes the key), their defaults, the values their closure captured and the module-level values they
    read (so two closures over different values, or a changed global, differ); other objects give their
    type and ``vars()``.

    Raises:
        ValueError: the object — or a value a function captured or reads — has no stable description
            (e.g. a repr with a memory address); make the transform a class (a dataclass of its
            parameters), give it a ``cache_params()`` method, or pass ``key=`` to :class:`CachedDataset`.
    """
    return _describe(obj, set())


def _describe(obj: Any, seen: set[int]) -> Any:
    describe = functools.partial(_describe, seen=seen)  # noqa: F811  (recursion keeps the guard)
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else repr(obj)
    if isinstance(obj, enum.Enum):
        return f"{qualname(type(obj))}.{obj.name}"
    if isinstance(obj, (list, tuple)):
        return [describe(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): describe(obj[k]) for k in sorted(obj, key=str)}
    if isinstance(obj, (np.generic,)):
        return describe(obj.item())
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        a = obj.detach().cpu().numpy() if isinstance(obj, torch.Tensor) else obj
        a = np.ascontiguousarray(a)
        return {"array": hashlib.sha256(a.tobytes()).hexdigest(), "shape": list(a.shape),
                "dtype": str(a.dtype)}
    if isinstance(obj, (np.dtype, torch.dtype)):
        return str(obj)
    if isinstance(obj, type):
        return qualname(obj)
    if hasattr(obj, "cache_params") and callable(obj.cache_params):
        return {"type": qualname(type(obj)), "params": describe(obj.cache_params())}
    if dataclasses.is_dataclass(obj):
        return {"type": qualname(type(obj)),
                "fields": {f.name: describe(getattr(obj, f.name)) for f in dataclasses.fields(obj)}}
    if isinstance(obj, functools.partial):
        return {"partial": describe(obj.func), "args": describe(obj.args),
                "kwargs": describe(obj.keywords)}
    code = getattr(obj, "__code__", None)
    if code is not None:
        return _describe_function(obj, code, seen)
    if isinstance(getattr(obj, "transforms", None), (list, tuple)):
        return {"type": qualname(type(obj)), "transforms": describe(list(obj.transforms))}
    if hasattr(obj, "__dict__"):
        return {"type": qualname(type(obj)), "attrs": describe(vars(obj))}
    text = repr(obj)
    if " at 0x" in text:
        raise ValueError(f"cache: cannot derive a stable key from {text}: make it a dataclass, give "
                         "it a cache_params() method returning its parameters, or pass key=")
    return {"type": qualname(type(obj)), "repr": text}


def _describe_function(fn: Any, code: Any, seen: set[int]) -> Any:
    if id(fn) in seen:                     # recursion (a function calling itself or its caller)
        return {"function": qualname(fn)}
    seen.add(id(fn))
    d: dict[str, Any] = {"function": qualname(fn), "code": _code_hash(code),
                         "defaults": _describe(getattr(fn, "__defaults__", None), seen),
                         "kwdefaults": _describe(getattr(fn, "__kwdefaults__", None), seen)}
    captured = {}
    for name, cell in zip(code.co_freevars, getattr(fn, "__closure__", None) or ()):
        try:
            value = cell.cell_contents
        except ValueError:                 # an empty cell (not yet assigned)
            continue
        captured[name] = _described(value, seen, f"variable {name!r} captured by {qualname(fn)}")
    if captured:
        d["closure"] = captured
    env = getattr(fn, "__globals__", {})
    read = {}
    for name in sorted(_names(code)):
        if name not in env or isinstance(env[name], types.ModuleType):
            continue
        read[name] = _described(env[name], seen, f"global {name!r} read by {qualname(fn)}")
    if read:
        d["globals"] = read
    return d


def _described(value: Any, seen: set[int], what: str) -> Any:
    try:
        return _describe(value, seen)
    except ValueError as e:
        raise ValueError(f"cache: cannot derive a stable key from the {what} ({e}); make the transform a "
                         "class holding its parameters (a dataclass), or pass key=") from None


def _names(code: Any) -> set[str]:
    """Every global name a code object (and the functions nested in it) reads."""
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _names(c)
    return names


def _code_hash(code: Any) -> str:
    return hashlib.sha256(marshal.dumps(code.co_code) + repr(code.co_consts).encode()
                          + repr(code.co_names).encode()).hexdigest()[:16]


def cache_key(material: dict[str, Any]) -> str:
    """The folder name for key ``material`` (sha256 of its canonical JSON, 20 hex digits)."""
    text = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]

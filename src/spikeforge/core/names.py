"""Things chosen by name at the config/CLI edge: one registry type, one "did you mean" error.

Models, datasets, neurons, surrogates, losses and learning methods each keep a ``Registry`` next to the
things it names. A registry is a read-only mapping ``name -> object`` with a one-line summary per entry
(what ``spikeforge list`` prints) and optional metadata (e.g. a neuron's kind). Looking up an unknown
name raises ``UnknownNameError``: the closest names first, then every choice.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar, overload

from .errors import UserError

__all__ = ["Registry", "UnknownNameError", "did_you_mean"]

T = TypeVar("T")


def did_you_mean(name: str, choices: list[str] | tuple[str, ...]) -> list[str]:
    """Up to three registered names close to ``name`` (case-insensitive), best first."""
    lowered = {c.lower(): c for c in choices}
    return [lowered[m] for m in difflib.get_close_matches(str(name).lower(), list(lowered), n=3, cutoff=0.5)]


class UnknownNameError(UserError, ValueError):
    """A name that is not registered; the message suggests close names and lists every choice."""

    def __init__(self, kind: str, name: object, choices: list[str]) -> None:
        self.kind, self.name, self.choices = kind, name, sorted(choices)
        close = did_you_mean(str(name), self.choices)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        super().__init__(f"unknown {kind} {name!r}{hint} (choose from: {', '.join(self.choices)})")


def _first_sentence(obj: object) -> str:
    """The docstring's first sentence (its first paragraph, up to the first full stop)."""
    doc = (getattr(obj, "__doc__", None) or "").strip()
    para = " ".join(line.strip() for line in doc.split("\n\n", 1)[0].splitlines())
    for m in re.finditer(r"\. ", para):
        if not re.search(r"\b(al|e\.g|i\.e|cf|vs|Fig|Eq)$", para[:m.start()]):
            return para[:m.start() + 1]
    return para


class Registry(Mapping[str, T], Generic[T]):
    """``name -> object`` with a summary line and metadata per name.

    Args:
        kind: what the names are ("model", "dataset", ...), used in error messages.
        normalize: maps a user's spelling to the key (e.g. lower case, ``-`` → ``_``).
    """

    def __init__(self, kind: str, normalize: Callable[[str], str] | None = None) -> None:
        self.kind = kind
        self._normalize = normalize or (lambda s: s)
        self._items: dict[str, T] = {}
        self._summary: dict[str, str] = {}
        self._info: dict[str, dict[str, Any]] = {}

    @overload
    def register(self, name: str, obj: T, *, summary: str | None = ..., **info: Any) -> T: ...

    @overload
    def register(self, name: str, obj: None = ..., *, summary: str | None = ...,
                 **info: Any) -> Callable[[T], T]: ...

    def register(self, name: str, obj: T | None = None, *, summary: str | None = None,
                 **info: Any) -> T | Callable[[T], T]:
        """Add ``obj`` under ``name`` (or use as a decorator). ``summary`` defaults to the first sentence of
        ``obj.__doc__``; ``info`` is free metadata, read back with ``info(name)``. Registering another
        object under a taken name raises."""
        def add(o: T) -> T:
            key = self._normalize(name)
            if key in self._items and self._items[key] is not o:
                raise ValueError(f"a {self.kind} named {name!r} is already registered ({self._items[key]!r})")
            self._items[key] = o
            self._summary[key] = summary if summary is not None else _first_sentence(o)
            self._info[key] = dict(info)
            return o
        return add if obj is None else add(obj)

    def key(self, name: str) -> str:
        """The registered key for ``name``; raises ``UnknownNameError`` if there is none."""
        key = self._normalize(name) if isinstance(name, str) else name
        if key not in self._items:
            raise UnknownNameError(self.kind, name, list(self._items))
        return key

    def __getitem__(self, name: str) -> T:
        return self._items[self.key(name)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._normalize(name) in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def summary(self, name: str) -> str:
        return self._summary[self.key(name)]

    def info(self, name: str) -> dict[str, Any]:
        return self._info[self.key(name)]

    def names(self, **where: Any) -> list[str]:
        """Sorted names whose metadata matches every ``key=value`` in ``where``."""
        return sorted(k for k in self._items if all(self._info[k].get(a) == v for a, v in where.items()))

"""The one error every event-file reader raises on bad bytes, and the missing-extra error.

A reader never lets an ``IndexError``, a ``struct.error`` or a library-specific exception escape on
malformed input: it raises :class:`EventFormatError` (a ``ValueError``) that names the file, the
byte offset where decoding failed and what it expected there, e.g.::

    EventFormatError: data/x.aedat: byte 1040: truncated polarity packet: expected 800 bytes of
    events (capacity 100 × size 8), got 312 [aedat3]
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from ...core import UserError

__all__ = ["EventFormatError", "require_extra"]


class EventFormatError(UserError, ValueError):
    """Malformed event file: names ``source`` (the path), ``offset`` (byte) and ``expected``.

    Attributes:
        source: the path (or ``"<bytes>"``) that was being decoded.
        offset: byte offset in the file where the problem is, or ``None`` where a container format
            (HDF5, MAT) hides byte offsets; ``where`` then names the dataset / key instead.
        expected: what the reader expected to find there.
        got: what it found (optional, short).
        fmt: the format name of the reader that raised.
    """

    def __init__(self, source: str, offset: int | None, expected: str, got: Any = None,
                 fmt: str | None = None, where: str | None = None) -> None:
        self.source, self.offset, self.expected, self.got = source, offset, expected, got
        self.fmt, self.where = fmt, where
        loc = f"byte {offset}" if offset is not None else (where or "?")
        if offset is not None and where:
            loc += f" ({where})"
        msg = f"{source}: {loc}: expected {expected}"
        if got is not None:
            msg += f", got {got}"
        if fmt:
            msg += f" [{fmt}]"
        super().__init__(msg)

    def __reduce__(self) -> tuple[Any, ...]:  # picklable across DataLoader workers
        args = (self.source, self.offset, self.expected, self.got, self.fmt, self.where)
        return (type(self), args)


def require_extra(module: str, feature: str) -> ModuleType:
    """Import ``module`` on use; a missing ``[data]`` extra is an ``ImportError`` naming the fix."""
    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - the dev environment has the extra
        raise ImportError(f"{feature} needs the '{module}' package, which is not installed: "
                          f"pip install 'spikeforge[data]'") from e

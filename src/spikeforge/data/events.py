"""The one event record every reader returns and every transform takes.

An event stream is a numpy structured array of ``EVENT_DTYPE``:

    t  int64   timestamp in microseconds
    x  uint16  column, 0 = left,  x < W
    y  uint16  row,    0 = top,   y < H
    p  uint8   polarity, 1 = ON (brighter), 0 = OFF

plus the sensor size ``(W, H, 2)``. The field names are Tonic's, so arrays pass between the two.
Conventions are converted in the readers only (a format that stores y bottom-up, or polarity as
−1/+1, is flipped there); nothing downstream re-interprets them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["EVENT_DTYPE", "Events", "make_events", "check_events"]

EVENT_DTYPE = np.dtype([("t", "<i8"), ("x", "<u2"), ("y", "<u2"), ("p", "u1")])
"""The structured dtype of an event record: ``t`` (µs, int64), ``x``, ``y`` (uint16; x right, y down
from the top-left pixel), ``p`` (uint8; 1 = ON)."""


@dataclass
class Events:
    """A decoded recording: ``events`` (structured ``EVENT_DTYPE`` array) and ``sensor_size (W, H, 2)``.

    ``meta`` carries what the file said beyond the events (format, header fields, packet counts …).
    """

    events: np.ndarray
    sensor_size: tuple[int, int, int]
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.events.shape[0])

    def __repr__(self) -> str:
        span = (f", t {self.events['t'][0]}..{self.events['t'][-1]} µs" if len(self) else "")
        return f"Events(n={len(self)}, sensor_size={self.sensor_size}{span})"


def make_events(t: Any, x: Any, y: Any, p: Any) -> np.ndarray:
    """Pack four equal-length columns into an ``EVENT_DTYPE`` array (values are cast, not checked)."""
    t, x, y, p = (np.asarray(a) for a in (t, x, y, p))
    n = t.shape[0]
    if not (x.shape[0] == y.shape[0] == p.shape[0] == n):
        raise ValueError(f"make_events: columns differ in length: t {n}, x {x.shape[0]}, y {y.shape[0]}, "
                         f"p {p.shape[0]}")
    out = np.empty(n, dtype=EVENT_DTYPE)
    out["t"], out["x"], out["y"], out["p"] = t, x, y, p
    return out


def check_events(events: np.ndarray, sensor_size: tuple[int, int, int], source: str = "events") -> None:
    """Raise ``ValueError`` naming ``source`` if the array is not a valid stream for ``sensor_size``.

    Checks the dtype's fields, ``x < W``, ``y < H`` and ``p`` in {0, 1}. Timestamps may be unsorted only
    if the format says so; callers check order themselves where it matters.
    """
    if events.dtype.names is None or not {"t", "x", "y", "p"} <= set(events.dtype.names):
        raise ValueError(f"{source}: expected a structured array with fields t, x, y, p, got dtype {events.dtype}")
    W, H = int(sensor_size[0]), int(sensor_size[1])
    if len(events) == 0:
        return
    for name, limit in (("x", W), ("y", H)):
        col = events[name]
        bad = np.flatnonzero(col >= limit)
        if bad.size:
            raise ValueError(f"{source}: event {bad[0]} has {name}={col[bad[0]]}, outside the sensor "
                             f"(expected {name} < {limit} for sensor_size {tuple(sensor_size)})")
    badp = np.flatnonzero(events["p"] > 1)
    if badp.size:
        raise ValueError(f"{source}: event {badp[0]} has polarity {events['p'][badp[0]]}, expected 0 or 1")

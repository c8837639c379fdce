"""Events → frames throughput: spikeforge beside SpikingJelly and Tonic, from one run.

A synthetic stream of N events (default 1M) on a 128×128 sensor over 1 s, framed into T bins
(default 16) by event count, by time, and by fixed windows. Prints events/s (median of ``--reps``
repetitions, at least 11) and each peer's ratio to spikeforge on the same split.

Peers are used as installed, never re-implemented: SpikingJelly's
``integrate_events_by_fixed_frames_number`` lives in ``spikingjelly.datasets.utils``, which imports
torchvision and matplotlib; where that fails the row says "not importable". Tonic's package
``__init__`` imports its datasets (which need ``importRosbag``); if ``import tonic`` fails, its pure
``tonic.transforms`` / ``tonic.functional`` modules are loaded without running that ``__init__``,
and the row says so.

    python benchmarks/transforms.py [--n 1000000] [--T 16] [--reps 11]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
import types
from collections.abc import Callable

import numpy as np

from spikeforge.data.events import make_events
from spikeforge.data.transforms import to_frames, to_frames_by_duration

SENSOR = (128, 128, 2)


def stream(n: int, seed: int = 0) -> np.ndarray:
    g = np.random.default_rng(seed)
    W, H, _ = SENSOR
    t = np.sort(g.integers(0, 1_000_000, n))
    return make_events(t, g.integers(0, W, n), g.integers(0, H, n), g.integers(0, 2, n))


def median_time(fn: Callable[[], object], reps: int) -> float:
    fn()  # warm-up: JIT compilation, caches
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load_spikingjelly() -> tuple[Callable | None, str]:
    try:
        from spikingjelly.datasets.utils import integrate_events_by_fixed_frames_number
    except Exception as exc:  # noqa: BLE001 - any import failure means "not importable"
        return None, f"not importable ({type(exc).__name__}: {exc})"
    return integrate_events_by_fixed_frames_number, "spikingjelly.datasets.utils"


def load_tonic() -> tuple[types.ModuleType | None, str]:
    try:
        import tonic.transforms as tt
        return tt, "tonic"
    except ModuleNotFoundError as exc:
        if exc.name == "tonic":
            return None, "not installed"
        reason = f"import tonic fails ({exc.name} missing)"
    spec = importlib.util.find_spec("tonic")
    if spec is None or spec.submodule_search_locations is None:
        return None, "not installed"
    saved = {k: v for k, v in sys.modules.items() if k == "tonic" or k.startswith("tonic.")}
    for k in saved:
        del sys.modules[k]
    pkg = types.ModuleType("tonic")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["tonic"] = pkg
    try:
        import tonic.transforms as tt
    except Exception as exc:  # noqa: BLE001
        return None, f"not importable ({reason}; transforms: {exc})"
    return tt, f"tonic.transforms loaded without tonic/__init__ ({reason})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--T", type=int, default=16)
    ap.add_argument("--reps", type=int, default=11)
    args = ap.parse_args()
    n, T, reps = args.n, args.T, max(args.reps, 11)
    ev = stream(n)
    W, H, _ = SENSOR
    window = int(ev["t"][-1] - ev["t"][0]) // T + 1

    sj, sj_note = load_spikingjelly()
    tt, tonic_note = load_tonic()
    ev_dict = {k: np.ascontiguousarray(ev[k]) for k in "txyp"}

    rows: list[tuple[str, str, float | None, str]] = []  # split, library, seconds, note

    def add(split: str, lib: str, fn: Callable[[], np.ndarray] | None, note: str = "",
            expect_total: int | None = n) -> None:
        if fn is None:
            rows.append((split, lib, None, note))
            return
        total = int(np.asarray(fn()).sum(dtype=np.int64))
        if expect_total is not None and total != expect_total:
            note = (note + "; " if note else "") + f"counts {total} of {expect_total} events"
        rows.append((split, lib, median_time(fn, reps), note))

    add("by number", "spikeforge", lambda: to_frames(ev, SENSOR, T, "number"))
    add("by number", "spikingjelly",
        (lambda: sj(ev_dict, "number", T, H, W)) if sj else None, "" if sj else sj_note)
    add("by number", "tonic",
        (lambda: tt.ToFrame(SENSOR, n_event_bins=T)(ev)) if tt else None,
        "ToFrame(n_event_bins)" if tt else tonic_note)
    add("by time", "spikeforge", lambda: to_frames(ev, SENSOR, T, "time"))
    add("by time", "spikingjelly",
        (lambda: sj(ev_dict, "time", T, H, W)) if sj else None, "" if sj else sj_note)
    add("by time", "tonic",
        (lambda: tt.ToFrame(SENSOR, n_time_bins=T)(ev)) if tt else None,
        "ToFrame(n_time_bins)" if tt else tonic_note)
    add("window", "spikeforge", lambda: to_frames_by_duration(ev, SENSOR, window))
    add("window", "tonic",
        (lambda: tt.ToFrame(SENSOR, time_window=window, include_incomplete=True)(ev))
        if tt else None, "ToFrame(time_window, include_incomplete)" if tt else tonic_note)

    print(f"events -> frames [T={T}, 2, {H}, {W}] from {n:,} events, median of {reps} reps")
    print(f"peers: spikingjelly: {sj_note}; tonic: {tonic_note}")
    print(f"{'split':<10} {'library':<13} {'ms':>9} {'M events/s':>11} {'speed ratio':>14}  note")
    ours = {split: sec for split, lib, sec, _ in rows if lib == "spikeforge"}
    for split, lib, sec, note in rows:
        if sec is None:
            print(f"{split:<10} {lib:<13} {'-':>9} {'-':>11} {'-':>14}  {note}")
            continue
        ratio = ours[split] / sec  # this library's speed / spikeforge's (> 1: faster)
        rate = n / sec / 1e6
        print(f"{split:<10} {lib:<13} {sec * 1e3:9.2f} {rate:11.1f} {ratio:13.3f}x  {note}")


if __name__ == "__main__":
    main()

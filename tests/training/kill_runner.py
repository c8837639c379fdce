"""Run ``spikeforge`` until a chosen point, print a marker there and wait to be killed (SIGKILL tests).

    python -m tests.training.kill_runner step:N ARGS...           after training step N: "PAUSED-AT-STEP N"
    python -m tests.training.kill_runner before-rename:N ARGS...  the N-th checkpoint write, between its
                                                                  fsynced temp file and the rename: "CKPT-PAUSED"

The pause is patched in here, so the library carries no test hooks; then the CLI's ``main`` runs ARGS.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any


def _wait(marker: str) -> None:
    print(marker, flush=True)
    time.sleep(3600)


def pause_after_step(n: int) -> None:
    from spikeforge.training import Callback, Trainer

    class Pause(Callback):
        def on_step_end(self, trainer: Any, info: Any) -> None:
            if info.step == n:
                _wait(f"PAUSED-AT-STEP {n}")

    init = Trainer.__init__

    def patched(self: Any, *a: Any, **k: Any) -> None:
        init(self, *a, **k)
        self.callbacks.append(Pause())

    Trainer.__init__ = patched  # type: ignore[method-assign]


def pause_before_rename(n: int) -> None:
    replace, seen = os.replace, [0]

    def patched(src: Any, dst: Any, *a: Any, **k: Any) -> None:
        if str(dst).endswith(".safetensors"):
            seen[0] += 1
            if seen[0] == n:
                _wait(f"CKPT-PAUSED before-rename {src}")
        replace(src, dst, *a, **k)

    os.replace = patched


def main() -> int:
    point, _, n = sys.argv[1].partition(":")
    {"step": pause_after_step, "before-rename": pause_before_rename}[point](int(n))
    from spikeforge.cli import main as cli
    return cli(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())

"""Run benchmark scripts and keep their latest output, with the machine, for the documentation site.

Each script's output streams to the terminal as it runs and, once the script has finished successfully,
replaces ``docs/benchmarks/<script>.txt`` atomically (a failed or interrupted run keeps the previous
record). The site's Benchmarks page includes these files.

    python benchmarks/record.py neurons transforms data models      # what `make bench` runs
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "benchmarks"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu_model()}, {cores} cores available, {gpu}; Python {platform.python_version()}, "
            f"torch {torch.__version__}, {platform.system()} {platform.release()}")


def record(name: str) -> int:
    script = ROOT / "benchmarks" / f"{name}.py"
    if not script.is_file():
        print(f"record.py: no benchmark script {script}", file=sys.stderr)
        return 2
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"$ python benchmarks/{name}.py", f"# {started} on {machine()}", ""]
    with subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, cwd=ROOT) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            lines.append(line.rstrip("\n"))
    if proc.returncode != 0:
        print(f"record.py: benchmarks/{name}.py exited with {proc.returncode}; "
              f"{OUT / (name + '.txt')} left as it was", file=sys.stderr)
        return proc.returncode
    sys.path.insert(0, str(ROOT / "src"))
    from spikeforge.core import atomic_write

    OUT.mkdir(parents=True, exist_ok=True)
    atomic_write(OUT / f"{name}.txt", "\n".join(lines) + "\n")
    return 0


def main(names: list[str]) -> int:
    worst = 0
    for name in names:
        worst = max(worst, record(name))
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``spikeforge report CHECKPOINT --dataset NAME``: the command-line face of ``run_report``.

Wired into ``spikeforge.cli`` with two lines::

    from .analysis.cli_report import add_report_parser, run as run_report_cmd   # in _parser / main
    add_report_parser(sub)                       # then: if args.command == "report": return run_report_cmd(args)
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_report_parser", "run"]


def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``report`` subcommand to an ``argparse`` subparsers object; returns its parser."""
    p = subparsers.add_parser("report", help="accuracy, speed, memory, firing rates, ACs/MACs, energy and the "
                                             "spike-driven audit of a checkpoint")
    p.add_argument("checkpoint")
    p.add_argument("--dataset", default=None, help="test dataset (default: the one the checkpoint was trained on)")
    p.add_argument("--data-root", dest="data_root", default=None)
    p.add_argument("--out-dir", dest="out_dir", default=None,
                   help="folder for report.json and the PNG plots (default: <run>/report)")
    p.add_argument("--convention", default="spikingformer", choices=("spikingformer", "spikformer", "neurobench"),
                   help="operation counting convention (default: spikingformer, strict 0/1 spikes)")
    p.add_argument("--e-ac", dest="e_ac", type=float, default=0.9, help="pJ per accumulate (default 0.9)")
    p.add_argument("--e-mac", dest="e_mac", type=float, default=4.6, help="pJ per multiply-accumulate (default 4.6)")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=64)
    p.add_argument("--count-batches", dest="count_batches", type=int, default=4,
                   help="test batches counted, recorded and audited (default 4)")
    p.add_argument("--max-samples", dest="max_samples", type=int, default=None,
                   help="evaluate accuracy on the first N test samples")
    p.add_argument("--no-plots", dest="plots", action="store_false")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(report_cmd=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the ``report`` subcommand; prints the table and returns the exit code (2 on a bad input)."""
    from ..config import ConfigError
    from ..training.checkpoint import CheckpointError
    from .energy import EnergyModel
    from .report import format_report, run_report
    if args.batch_size < 1 or args.count_batches < 1:
        print("spikeforge: error: --batch-size and --count-batches must be >= 1", file=sys.stderr)
        return 2
    try:
        rep = run_report(args.checkpoint, args.dataset, args.out_dir, data_root=args.data_root,
                         convention=args.convention, energy_model=EnergyModel(args.e_ac, args.e_mac),
                         batch_size=args.batch_size, count_batches=args.count_batches,
                         max_samples=args.max_samples, progress=args.progress, plots=args.plots)
    except (CheckpointError, ConfigError, ValueError, RuntimeError, ImportError) as e:
        print(f"spikeforge: error: {e}", file=sys.stderr)
        return 2
    print(format_report(rep))
    return 0

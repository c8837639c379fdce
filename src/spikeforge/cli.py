"""``spikeforge train | eval``: the command line. It parses, then calls the Python API; no logic here.

    spikeforge train --dataset digits --model spiking_cnn_tiny --T 8 --epochs 5
    spikeforge train --config run.yaml --lr 3e-3            # flags override the file
    spikeforge train --resume runs/digits-...               # continue exactly where a run stopped
    spikeforge eval runs/digits-.../checkpoints/best.safetensors --dataset digits
    spikeforge report runs/digits-.../checkpoints/best.safetensors --dataset digits   # energy, audit, plots
    torchrun --nproc_per_node=2 -m spikeforge train ...     # data-parallel (DDP, gloo on CPU)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from .config import ConfigError, TrainConfig, load_config

__all__ = ["main"]


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("extra", "model_args"):
            continue
        flag = "--" + f.name.replace("_", "-")
        help_ = f"(default: {f.default!r})" if f.default is not dataclasses.MISSING else ""
        p.add_argument(flag, dest=f.name, default=None, help=help_, metavar=f.name.upper())
    p.add_argument("--source", dest="source", default=None,
                   help="emulated-nmnist only: digit source digits | mnist5k | fashion (default mnist5k)")
    p.add_argument("--model-arg", dest="model_arg", action="append", default=None, metavar="KEY=VALUE",
                   help="a keyword argument of the model factory, e.g. --model-arg width=32 (repeatable)")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="spikeforge", description="Train and evaluate spiking neural networks.")
    sub = ap.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train a model")
    tr.add_argument("--config", default=None, help="YAML file with any of the fields below")
    tr.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a run from its last checkpoint")
    _add_config_flags(tr)
    ev = sub.add_parser("eval", help="evaluate a checkpoint on a dataset's test split")
    ev.add_argument("checkpoint")
    ev.add_argument("--dataset", default=None)
    ev.add_argument("--data-root", dest="data_root", default=None)
    from .analysis.cli_report import add_report_parser
    add_report_parser(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "report":
            return int(args.report_cmd(args))
        if args.command == "train":
            return _train(args)
        return _eval(args)
    except ConfigError as e:
        print(f"spikeforge: error: {e}", file=sys.stderr)
        return 2


def _train(args: argparse.Namespace) -> int:
    from .training.run import layer_firing_rates, train
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    overrides: dict[str, Any] = {k: v for k, v in vars(args).items() if k in names and v is not None}
    if args.source:
        overrides["extra"] = {"source": args.source}
    if args.model_arg:
        overrides["model_args"] = _model_args(args.model_arg)
    cfg = load_config(args.config, overrides) if args.resume is None else TrainConfig()
    result, model, data = train(cfg, resume=args.resume)
    last = result.history[-1] if result.history else {}
    if last:
        print(f"last epoch {last['epoch']}: test accuracy {100 * last['test_accuracy']:.2f}%, "
              f"val accuracy {100 * last.get('val_accuracy', float('nan')):.2f}%")
    rates = layer_firing_rates(model, data, TrainConfig(**{**cfg.to_dict(), "run_dir": None}))
    print("firing rates per layer: " + ", ".join(f"{k} {v:.3f}" for k, v in rates.items()))
    print(f"run folder: {result.run_dir}")
    return 0


def _model_args(items: list[str]) -> dict[str, Any]:
    """``["width=32", "drop=0.1"]`` → ``{"width": 32, "drop": 0.1}`` (values read as JSON, else strings)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ConfigError(f"model_args: {item!r} is not KEY=VALUE with KEY a Python name")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _eval(args: argparse.Namespace) -> int:
    from .training.checkpoint import CheckpointError
    from .training.run import evaluate_checkpoint
    try:
        res = evaluate_checkpoint(args.checkpoint, args.dataset, args.data_root)
    except CheckpointError as e:
        print(f"spikeforge: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``spikeforge train | eval | report | convert | export | import | deploy | search | list``: the command line. It
parses arguments and calls ``spikeforge.app``; nothing else happens here.

Flags follow one rule (printed by ``spikeforge train --help``): ``--method`` picks how the model learns,
``--loss`` the loss, ``--memory`` how the backward pass stores state; compression flags (``--quantize``,
``--prune``, ``--rewire``) are hooks that compose with any method. Every flag
that takes a name lists its choices; an unknown name gets "did you mean" and the list, exit code 2, and
nothing is written. Every error in what the user gave (a ``UserError``) is one line and exit code 2; a run
that fails (non-finite or diverging loss, too many skipped steps) is one line and exit code 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any, NoReturn

from .app import FIELD_HELP, LISTS, SAFE_ON_RESUME, ConfigError, TrainConfig, load_config, read_config_file, registries
from .core import UnknownNameError, UserError

__all__ = ["main"]

RULE = ("Flags: --method picks how the model learns (bptt by default), --loss picks the loss, --memory picks\n"
        "how the backward pass stores state; compression flags (--quantize, --prune, --rewire) are hooks that\n"
        "compose with any method. `spikeforge list KIND` describes every choice (methods, compressors, ...).")

EXAMPLES = {
    "train": ["spikeforge train --dataset digits --model spiking_mlp_tiny --T 8 --epochs 20 --lr 0.005",
              "spikeforge train --dataset emulated-nmnist --model spiking_cnn_tiny --method bptt --loss tet",
              "spikeforge train --resume runs/digits-spiking_mlp_tiny-seed0-20261206-101500"],
    "eval": ["spikeforge eval runs/RUN/checkpoints/best.safetensors",
             "spikeforge eval runs/RUN/checkpoints/last.safetensors --dataset digits"],
    "report": ["spikeforge report runs/RUN/checkpoints/best.safetensors",
               "spikeforge report runs/RUN/checkpoints/best.safetensors --convention spikformer --no-plots"],
    "list": ["spikeforge list models", "spikeforge list methods"],
    "import": ["spikeforge import model.nir -o imported.safetensors --dataset digits --T 8",
               "spikeforge eval imported.safetensors"],
    "convert": ["spikeforge convert runs/qcfs --T 4 8 16 32 64",
                "spikeforge convert runs/ann --norm percentile --percentile 99.9 --out runs/ann/p99.9",
                "spikeforge eval runs/qcfs/convert-clip/T8.safetensors"],
    "deploy": ["spikeforge deploy runs/RUN",
               "spikeforge deploy runs/RUN --crossbar 64x64 --neurons-per-core 64 --weight-bits 4 --json chip.json"],
    "search": ["spikeforge search --space spenser --dataset digits --generations 8 --population 4 "
               "--epochs-per-candidate 3 --workers 2 --seed 0 --run-dir runs/spenser --space-arg img_size=8",
               "spikeforge search --resume --space spenser --dataset digits --generations 8 --population 4 "
               "--epochs-per-candidate 3 --workers 2 --seed 0 --run-dir runs/spenser --space-arg img_size=8",
               "spikeforge search --space autospikformer --dataset digits --T 2 --address 10.0.0.5:6379 ..."],
    "export": ["spikeforge export runs/RUN -o model.nir",
               "spikeforge export runs/RUN/checkpoints/last.safetensors --format nir --dt 1e-3 -o model.nir"],
}


def _epilog(cmd: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[cmd])


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    names = registries()
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("extra", "model_args", "method_args"):
            continue
        flag = "--" + f.name.replace("_", "-")
        choices = names.get(f.name) or TrainConfig.CHOICES.get(f.name)
        default = f"default {f.default!r}" if f.default is not dataclasses.MISSING else ""
        what = FIELD_HELP.get(f.name, "")
        help_ = f"{what}: {', '.join(choices)} ({default})" if choices else f"{what} ({default})"
        meta = "NAME" if f.name in names else f.name.upper()
        p.add_argument(flag, dest=f.name, default=None, help=help_, metavar=meta)
    p.add_argument("--source", dest="source", default=None,
                   help="emulated-nmnist only: digit source digits | mnist5k | fashion (default mnist5k)")
    p.add_argument("--model-arg", dest="model_arg", action="append", default=None, metavar="KEY=VALUE",
                   help="a keyword argument of the model factory, e.g. --model-arg width=32 (repeatable)")
    p.add_argument("--method-arg", dest="method_arg", action="append", default=None, metavar="KEY=VALUE",
                   help="a setting of the learning method, e.g. --method-arg alpha=0.5 (repeatable; "
                        "`spikeforge list methods` names them)")
    p.add_argument("--max-spikes", dest="max_spikes", default=None, metavar="K",
                   help="--method ttfs: spikes per neuron, 1 = time to first spike (default), K > 1 = the relaxed "
                        "multi-spike form (the same as --method-arg max_spikes=K)")


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (``spikeforge: error: …``) instead of usage + error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    ap = _Parser(prog="spikeforge", description="Train, evaluate and analyse spiking neural networks.",
                                 epilog=RULE, formatter_class=fmt)
    sub = ap.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train a model", description=f"Train a model.\n\n{RULE}",
                        epilog=_epilog("train"), formatter_class=fmt)
    tr.add_argument("--config", default=None, help="YAML file with any of the fields below (flags win)")
    tr.add_argument("--resume", default=None, metavar="RUN_DIR",
                    help="continue a run from its newest checkpoint (flags may change only "
                         f"{', '.join('--' + k.replace('_', '-') for k in SAFE_ON_RESUME)})")
    tr.add_argument("--overwrite", action="store_true",
                    help="start over in --run-dir even if it holds a run (removes only the run's own files)")
    _add_config_flags(tr)
    ev = sub.add_parser("eval", help="evaluate a checkpoint on a dataset's test split", epilog=_epilog("eval"),
                        formatter_class=fmt)
    ev.add_argument("checkpoint")
    ev.add_argument("--dataset", default=None, help="test dataset (default: the one the checkpoint was trained on)")
    ev.add_argument("--data-root", dest="data_root", default=None, help="folder of the dataset's files")
    rp = sub.add_parser("report", help="accuracy, speed, memory, firing rates, ACs/MACs, energy and the "
                                       "spike-driven audit of a checkpoint", epilog=_epilog("report"),
                        formatter_class=fmt)
    rp.add_argument("checkpoint")
    rp.add_argument("--dataset", default=None, help="test dataset (default: the one the checkpoint was trained on)")
    rp.add_argument("--data-root", dest="data_root", default=None, help="folder of the dataset's files")
    rp.add_argument("--out-dir", dest="out_dir", default=None,
                    help="folder for report.json and the PNG plots (default: <run>/report, or <name>-report beside "
                         "a checkpoint outside a run)")
    rp.add_argument("--convention", default="spikingformer", choices=("spikingformer", "spikformer", "neurobench"),
                    help="operation counting convention (default: spikingformer, strict 0/1 spikes)")
    rp.add_argument("--e-ac", dest="e_ac", type=float, default=0.9, help="pJ per accumulate (default 0.9)")
    rp.add_argument("--e-mac", dest="e_mac", type=float, default=4.6, help="pJ per multiply-accumulate (default 4.6)")
    rp.add_argument("--batch-size", dest="batch_size", type=int, default=64, help="batch size (default 64)")
    rp.add_argument("--count-batches", dest="count_batches", type=int, default=4,
                    help="test batches counted, recorded and audited (default 4)")
    rp.add_argument("--max-samples", dest="max_samples", type=int, default=None,
                    help="evaluate accuracy on the first N test samples")
    rp.add_argument("--no-plots", dest="plots", action="store_false", help="write no PNG plots")
    rp.add_argument("--no-progress", dest="progress", action="store_false", help="show no progress bar")
    ex = sub.add_parser("export", help="write a checkpoint's model as a NIR graph (checked before it is written)",
                        epilog=_epilog("export"), formatter_class=fmt)
    ex.add_argument("checkpoint", metavar="RUN_DIR_OR_CHECKPOINT",
                    help="a checkpoint, or a run folder (its best checkpoint, else its last)")
    ex.add_argument("-o", "--out", required=True, help="the file to write (refused if it exists, see --overwrite)")
    ex.add_argument("--format", default="nir", help=f"exporter, one of: {', '.join(LISTS['exporters'])} (default nir)")
    ex.add_argument("--dt", type=float, default=1e-3, help="seconds per time step (default 1e-3): time constants "
                                                          "are written as tau * dt")
    ex.add_argument("--r-mode", dest="r_mode", default="keep", choices=("keep", "fold"),
                    help="keep: each LIF's r as mapped (default); fold: r = tau/dt with dt/tau folded into the "
                         "weights feeding it (snnTorch's importer needs this, with --dt 1e-4)")
    ex.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    ex.add_argument("--data-root", dest="data_root", default=None,
                    help="folder of the dataset's files, if it moved since training (for the check sample)")
    cv = sub.add_parser("convert", help="an ANN twin's run (--method ann or qcfs) as SNN checkpoints, one per --T",
                        description="Convert the run of an ANN twin into SNNs of IF neurons with reset by\n"
                                    "subtraction: batch norms folded, thresholds from training activations (or\n"
                                    "QCFS's trained clip), one checkpoint per T, and conversion.json with the\n"
                                    "accuracy at each T.",
                        epilog=_epilog("convert"), formatter_class=fmt)
    cv.add_argument("run", metavar="RUN_DIR",
                    help="a run folder of --method ann or qcfs (its best checkpoint, else its last), or a checkpoint")
    cv.add_argument("--T", dest="T", type=int, nargs="+", default=[4, 8, 16, 32, 64],
                    help="time steps to convert for (default 4 8 16 32 64)")
    cv.add_argument("--norm", default=None, help="thresholds: max (largest activation), percentile (of the positive "
                                                 "activations) or clip (QCFS's trained clip); default clip for a qcfs "
                                                 "run, max for an ann run")
    cv.add_argument("--percentile", type=float, default=None, help="with --norm percentile: in (0, 100] "
                                                                   "(default 99.99)")
    cv.add_argument("--shift", type=float, default=None,
                    help="initial membrane as a fraction of the threshold, in [0, 1) (default: the qcfs run's shift, "
                         "0.5; 0 for an ann run)")
    cv.add_argument("--batches", type=int, default=10, help="training batches the thresholds are measured on "
                                                            "(default 10)")
    cv.add_argument("-o", "--out", default=None, help="output folder (default RUN_DIR/convert-NORM)")
    cv.add_argument("--overwrite", action="store_true", help="replace an existing conversion in the output folder")
    cv.add_argument("--val", action="store_true", help="also measure the accuracy on the validation split (to choose "
                                                       "settings such as --percentile without the test split)")
    cv.add_argument("--data-root", dest="data_root", default=None, help="folder of the dataset's files")
    im = sub.add_parser("import", help="a NIR file as a checkpoint that eval and report take",
                        epilog=_epilog("import"), formatter_class=fmt)
    im.add_argument("file", metavar="NIR_FILE")
    im.add_argument("-o", "--out", required=True,
                    help="the checkpoint to write (refused if it exists, see --overwrite)")
    im.add_argument("--dataset", required=True, help="the dataset the graph classifies (its input shape and classes "
                                                     "are checked against the graph)")
    im.add_argument("--T", type=int, default=8, help="time steps per sample (default 8)")
    im.add_argument("--encoding", default=None,
                    help="how static inputs become spikes: direct, rate or latency (default: train's, rate)")
    im.add_argument("--data-root", dest="data_root", default=None, help="folder of the dataset's files")
    im.add_argument("--dt", type=float, default=1e-3, help="seconds per time step the graph is simulated with "
                                                          "(default 1e-3)")
    im.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    dp = sub.add_parser("deploy", help="run a quantised run's integer model on a simulated neuromorphic chip",
                        description="Map the integer model of a run trained with --quantize w<b>u<b> onto the cores\n"
                                    "and crossbars of a simulated chip, run the test split on it event by event\n"
                                    "(integers only, checked equal to the integer model), and print the mapping,\n"
                                    "accuracy, synaptic operations, spikes routed, decision step and energy.\n"
                                    "Defaults: TrueNorth's 256-neuron cores and 256x256 crossbars, Speck's int8\n"
                                    "weights and int16 membrane, Loihi's 128 cores and per-event energies.",
                        epilog=_epilog("deploy"), formatter_class=fmt)
    dp.add_argument("run", metavar="RUN_DIR_OR_CHECKPOINT",
                    help="a run folder (its best checkpoint, else its last) or a checkpoint")
    dp.add_argument("--crossbar", default=None, help="crossbar ROWSxCOLUMNS (default 256x256)")
    dp.add_argument("--neurons-per-core", dest="neurons_per_core", type=int, default=None,
                    help="neurons one core holds (default 256)")
    dp.add_argument("--cores", type=int, default=None, help="cores on the chip (default 128)")
    dp.add_argument("--weight-bits", dest="weight_bits", type=int, default=None,
                    help="signed weight bits of a synapse (default 8)")
    dp.add_argument("--membrane-bits", dest="membrane_bits", type=int, default=None,
                    help="signed bits of the saturating membrane (default 16)")
    dp.add_argument("--batch-size", dest="batch_size", type=int, default=256, help="test samples per batch")
    dp.add_argument("--limit", type=int, default=None, help="run the first N test samples only")
    dp.add_argument("--json", dest="json_out", default=None,
                    help="also write the full result as JSON (refused if it exists, see --overwrite)")
    dp.add_argument("--overwrite", action="store_true", help="replace --json if it exists")
    dp.add_argument("--data-root", dest="data_root", default=None, help="folder of the dataset's files")
    se = sub.add_parser("search", help="architecture search, each candidate a Ray task (local or on a cluster)",
                        description="Evolve architectures of a search space (spikeforge list searches): every\n"
                                    "candidate is trained and scored in a Ray task; candidates.jsonl, pareto.json\n"
                                    "and generation.json in --run-dir; --resume submits only what is missing.",
                        epilog=_epilog("search"), formatter_class=fmt)
    se.add_argument("--space", required=True, help=f"search space, one of: {', '.join(LISTS['searches'])}")
    se.add_argument("--dataset", required=True, help="dataset the candidates train on")
    se.add_argument("--generations", type=int, required=True, help="generations after the random one")
    se.add_argument("--population", type=int, required=True, help="candidates per generation (λ)")
    se.add_argument("--epochs-per-candidate", dest="epochs", type=int, required=True,
                    help="training epochs of each candidate")
    se.add_argument("--workers", type=int, default=1, help="candidates at once (CPUs of the local Ray instance)")
    se.add_argument("--address", default=None, help="HOST:PORT of a running Ray cluster (default: a local one)")
    se.add_argument("--seed", type=int, default=0, help="the search's seed (default 0)")
    se.add_argument("--run-dir", dest="run_dir", required=True, help="folder of the search's files")
    se.add_argument("--resume", action="store_true", help="continue the search in --run-dir")
    se.add_argument("--T", type=int, default=4, help="time steps (default 4)")
    se.add_argument("--threads", type=int, default=1, help="torch threads per candidate (default 1)")
    se.add_argument("--limit-train", dest="limit_train", type=int, default=None,
                    help="train candidates on the first N samples")
    se.add_argument("--space-arg", dest="space_arg", action="append", default=None, metavar="KEY=VALUE",
                    help="a setting of the search space (repeatable), e.g. --space-arg img_size=8")
    se.add_argument("--data-root", dest="data_root", default=None, help="folder of the dataset's files")
    ls = sub.add_parser("list", help="list the registered names of a kind with a short description",
                        epilog=_epilog("list"), formatter_class=fmt)
    ls.add_argument("kind", metavar="KIND", help=f"one of: {', '.join(LISTS)}")
    return ap


def _one_line(e: BaseException) -> str:
    return " ".join(line.strip() for line in str(e).splitlines() if line.strip())


def main(argv: list[str] | None = None) -> int:
    """The ``spikeforge`` command: parse ``argv`` (default ``sys.argv[1:]``), run it, return the exit code
    (0 done, 1 the run failed, 2 bad input: one line on stderr, nothing written)."""
    args = _parser().parse_args(argv)
    from .training import RunFailed
    try:
        return int({"train": _train, "eval": _eval, "report": _report, "convert": _convert, "export": _export,
                    "import": _import, "deploy": _deploy, "search": _search, "list": _list}[args.command](args))
    except UserError as e:
        print(f"spikeforge: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except RunFailed as e:
        print(f"spikeforge: the run failed: {_one_line(e)}", file=sys.stderr)
        return 1


def _train(args: argparse.Namespace) -> int:
    from .app import layer_firing_rates, train
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    overrides: dict[str, Any] = {k: v for k, v in vars(args).items() if k in names and v is not None}
    if args.source:
        overrides["extra"] = {"source": args.source}
    if args.model_arg:
        overrides["model_args"] = _model_args(args.model_arg)
    if args.method_arg:
        overrides["method_args"] = _model_args(args.method_arg, "method_args")
    if args.max_spikes is not None:
        overrides.setdefault("method_args", {})
        if "max_spikes" in overrides["method_args"]:
            raise ConfigError("max_spikes: given twice, by --max-spikes and by --method-arg max_spikes=...")
        overrides["method_args"].update(_model_args([f"max_spikes={args.max_spikes}"], "method_args"))
    if args.resume is None:
        result, model, data = train(load_config(args.config, overrides), overwrite=args.overwrite)
    else:
        if args.overwrite:
            raise ConfigError("overwrite: --overwrite and --resume exclude each other")
        changes = load_config(args.config, overrides).to_dict()      # what the flags and the file set
        in_file = read_config_file(args.config) if args.config else {}
        given = {k: changes[k] for k in (*overrides, *in_file)}
        result, model, data = train(resume=args.resume, changes=given)
    last = result.history[-1] if result.history else {}
    if last:
        print(f"last epoch {last['epoch']}: test accuracy {100 * last['test_accuracy']:.2f}%, "
              f"val accuracy {100 * last.get('val_accuracy', float('nan')):.2f}%")
    rates = layer_firing_rates(model, data, TrainConfig(**{**result.config, "run_dir": None}))
    if rates:                        # an ANN twin (--method ann/qcfs) has no spiking layer
        print("firing rates per layer: " + ", ".join(f"{k} {v:.3f}" for k, v in rates.items()))
    print(f"run folder: {result.run_dir}")
    return 0


def _model_args(items: list[str], field: str = "model_args") -> dict[str, Any]:
    """``["width=32", "drop=0.1"]`` → ``{"width": 32, "drop": 0.1}`` (values read as JSON, else strings)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ConfigError(f"{field}: {item!r} is not KEY=VALUE with KEY a Python name")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _eval(args: argparse.Namespace) -> int:
    from .app import evaluate_checkpoint
    print(json.dumps(evaluate_checkpoint(args.checkpoint, args.dataset, args.data_root), indent=2))
    return 0


def _report(args: argparse.Namespace) -> int:
    from .analysis import EnergyModel, format_report
    from .app import run_report
    for flag, value in (("--batch-size", args.batch_size), ("--count-batches", args.count_batches),
                        ("--max-samples", args.max_samples)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag}: must be >= 1, got {value}")
    for flag, value in (("--e-ac", args.e_ac), ("--e-mac", args.e_mac)):
        if not (value >= 0 and value < float("inf")):
            raise ConfigError(f"{flag}: an energy per operation must be a finite number >= 0 (pJ), got {value}")
    try:
        rep = run_report(args.checkpoint, args.dataset, args.out_dir, data_root=args.data_root,
                         convention=args.convention, energy_model=EnergyModel(args.e_ac, args.e_mac),
                         batch_size=args.batch_size, count_batches=args.count_batches,
                         max_samples=args.max_samples, progress=args.progress, plots=args.plots)
    except (ValueError, RuntimeError, ImportError) as e:
        raise ConfigError(str(e)) from None
    print(format_report(rep))
    return 0


def _convert(args: argparse.Namespace) -> int:
    from .app import convert_run
    res = convert_run(args.run, args.T, args.norm, args.percentile, shift=args.shift, batches=args.batches,
                      out_dir=args.out, overwrite=args.overwrite, data_root=args.data_root, val=args.val)
    what = res["norm"] + (f" {res['percentile']:g}" if res["percentile"] is not None else "")
    print(f"{res['method']} twin of {res['model']} on {res['dataset']}: ANN test accuracy "
          f"{100 * res['ann_test_accuracy']:.2f}%; SNN ({what}, shift {res['shift']:g}):")
    for t in res["T"]:
        worst = max(res["layer_error"][str(t)].values(), default=float("nan"))
        val = f", val {100 * res['val_accuracy'][str(t)]:6.2f}%" if "val_accuracy" in res else ""
        print(f"  T = {t:4d}: test accuracy {100 * res['test_accuracy'][str(t)]:6.2f}%{val}  "
              f"(largest layer error {worst:.4f} θ)  {res['checkpoints'][str(t)]}")
    print(f"conversion.json: {res['file']}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .app import export_checkpoint
    print(json.dumps(export_checkpoint(args.checkpoint, args.out, args.format, args.dt, args.overwrite,
                                       args.r_mode, args.data_root), indent=2))
    return 0


def _import(args: argparse.Namespace) -> int:
    from .app import import_nir
    print(json.dumps(import_nir(args.file, args.out, args.dataset, args.T, args.encoding, args.dt, args.overwrite,
                                args.data_root), indent=2))
    return 0


def _deploy(args: argparse.Namespace) -> int:
    from .app.deploy import chip_config, deploy_run
    from .export.chip import parse_crossbar
    cfg = chip_config(None if args.crossbar is None else parse_crossbar(args.crossbar),
                      neurons_per_core=args.neurons_per_core, cores=args.cores, weight_bits=args.weight_bits,
                      membrane_bits=args.membrane_bits)
    res = deploy_run(args.run, cfg, args.batch_size, args.limit, args.data_root, args.json_out, args.overwrite)
    print(f"chip: {res['config']}")
    print(f"{'layer':12s} {'neuron':8s} {'inputs':>11s} {'neurons':>11s} {'synapses':>9s} {'crossbars':>9s} "
          f"{'cores':>5s}")
    for r in res["mapping"]:
        print(f"{r['layer']:12s} {r['neuron']:8s} {r['inputs_used']:>5d}/{r['inputs']:<5d} "
              f"{r['neurons_placed']:>5d}/{r['neurons']:<5d} {r['synapses']:>9d} {r['crossbars']:>9d} {r['cores']:>5d}")
    print(f"{'total':12s} {'':8s} {'':>11s} {'':>11s} {'':>9s} {res['crossbars']:>9d} {res['cores']:>5d}")
    print(f"\n{res['samples']} test samples of {res['dataset']} at T={res['T']}: accuracy {res['accuracy']:.2%} "
          f"(integer model {res['integer_accuracy']:.2%}; outputs bit-exact: {'yes' if res['bit_exact'] else 'NO'})")
    print(f"decision step: median {res['decision_step_median']:g}, mean {res['decision_step_mean']:.2f} of {res['T']}")
    print(f"per sample    {'synops':>10s} {'packets':>9s} {'hops':>8s} {'spikes':>8s} {'updates':>9s} "
          f"{'energy nJ':>10s}")
    for r in [*res["run"]["layers"], res["run"]["total"]]:
        print(f"{r['layer']:12s}  {r['synops']:>10.1f} {r['packets']:>9.1f} {r['hops']:>8.1f} {r['spikes']:>8.1f} "
              f"{r['updates_active'] + r['updates_inactive']:>9.1f} {r['energy_nJ']:>10.2f}")
    e = res["run"]["total"]["energy_by_kind_nJ"]
    print(f"energy per sample: {res['run']['total']['energy_nJ']:.2f} nJ (synops {e['synops']:.2f}, neuron updates "
          f"{e['neurons']:.2f}, routing {e['routing']:.2f}); per-event costs: {res['run']['energy_source']}")
    if args.json_out:
        print(f"written: {args.json_out}")
    return 0


def _search(args: argparse.Namespace) -> int:
    from .app.search import search
    space_args = _model_args(args.space_arg, "space_args") if args.space_arg else {}
    res = search(args.space, args.dataset, args.generations, args.population, args.epochs, args.workers, args.seed,
                 args.run_dir, T=args.T, address=args.address, threads=args.threads, limit_train=args.limit_train,
                 data_root=args.data_root, space_args=space_args, resume=args.resume)
    print(json.dumps(res, indent=2))
    return 0


def _list(args: argparse.Namespace) -> int:
    from .app import list_names
    if args.kind not in LISTS:
        raise UnknownNameError("list", args.kind, list(LISTS))
    rows = list_names(args.kind)
    width = max(len(n) for n, _ in rows)
    for name, summary in rows:
        print(f"{name:{width}s}  {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

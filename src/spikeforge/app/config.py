"""The training configuration: one dataclass, loaded from YAML and overridden from the command line.

Validation happens here, before anything is written: a bad value raises ``ConfigError`` naming the
field, the value and the valid choices (the CLI prints that one line and exits with code 2). Names
(model, dataset, neuron, surrogate, loss, method) are checked against their registries, with the closest
registered names suggested.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core import UnknownNameError, UserError

__all__ = ["TrainConfig", "ConfigError", "load_config", "read_config_file"]


class ConfigError(UserError, ValueError):
    """A configuration value is invalid; the message names the field and what is allowed."""


@dataclass
class TrainConfig:
    """Everything a run needs. Field names are the CLI's flags (``--ckpt-every`` → ``ckpt_every``)."""

    dataset: str = "digits"
    model: str = "spiking_cnn_tiny"
    data_root: str | None = None
    neuron: str = "lif"
    tau: float = 2.0
    v_threshold: float = 1.0
    surrogate: str = "atan"
    alpha: float = 2.0
    detach_reset: bool = True
    T: int = 8
    encoding: str = "rate"          # static images: direct | rate | latency
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adamw"        # sgd | adamw
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"        # cosine | constant
    warmup_epochs: float = 0.0
    grad_clip: float | None = None
    loss: str = "ce"                # a registered loss: ce (mean output over T) | mse_rate | tet
    method: str = "bptt"            # a registered learning method (train-step strategy)
    memory: str = "default"         # what the neurons keep for backward: default | lean
    channels_last: bool = False     # the model's 4-d weights (and so its conv activations) channels-last
    augment: str | None = None      # training batches flipped / shifted, e.g. flip,shift:2 (training.Augment)
    quantize: str | None = None     # e.g. w2u2 (compression hooks: compose with any method)
    prune: str | None = None        # e.g. lats:D=0.02, lats@0.9, crossbar:R=64,C=64@0.5
    rewire: str | None = None       # e.g. gradr:s=0.9,alpha=1e-3
    amp: str = "off"                # off | bf16 | fp16
    val_fraction: float = 0.1
    seed: int = 0
    num_workers: int = 0
    run_dir: str | None = None
    ckpt_every: int | None = None
    skip_nonfinite: bool = False
    max_skipped: float = 0.1        # a run that skips more than this share of its steps fails
    max_steps: int | None = None
    limit_train: int | None = None  # use the first N training samples (debugging, overfit tests)
    threads: int | None = None
    progress: bool = True
    eval_every: int = 1             # evaluate val/test every N epochs (and always after the last)
    model_args: dict[str, Any] = field(default_factory=dict)  # extra keyword arguments of the model factory
    method_args: dict[str, Any] = field(default_factory=dict)  # the learning method's own settings
    extra: dict[str, Any] = field(default_factory=dict)

    CHOICES = {
        "encoding": ("direct", "rate", "latency"), "optimizer": ("sgd", "adamw"),
        "schedule": ("cosine", "constant"), "amp": ("off", "bf16", "fp16"), "memory": ("default", "lean"),
    }

    def validate(self, registries: dict[str, list[str]] | None = None) -> TrainConfig:
        """Check every field. ``registries`` maps a field (``model``, ``dataset``, ``neuron``, ``surrogate``,
        ``loss``, ``method``) to its valid names; an unknown name gets the closest ones suggested."""
        for name, valid in [*self.CHOICES.items(), *(registries or {}).items()]:
            if getattr(self, name) not in valid:
                raise ConfigError(f"{name}: {UnknownNameError(name, getattr(self, name), list(valid))}")
        positive_ints = ("T", "epochs", "batch_size")
        for name in positive_ints:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name}: must be an integer >= 1, got {v!r}")
        if not isinstance(self.eval_every, int) or self.eval_every < 1:
            raise ConfigError(f"eval_every: must be an integer >= 1, got {self.eval_every!r}")
        for name in ("ckpt_every", "max_steps", "limit_train", "threads"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ConfigError(f"{name}: must be an integer >= 1 or unset, got {v!r}")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{f.name}: must be a finite number, got {v!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr: must be > 0, got {self.lr!r}")
        if not 0 <= self.max_skipped <= 1:
            raise ConfigError(f"max_skipped: must be a share in [0, 1], got {self.max_skipped!r}")
        for name in ("v_threshold", "alpha", "warmup_epochs", "weight_decay", "momentum"):
            if getattr(self, name) < 0 or (name in ("v_threshold", "alpha") and getattr(self, name) == 0):
                raise ConfigError(f"{name}: must be {'> 0' if name in ('v_threshold', 'alpha') else '>= 0'}, "
                                  f"got {getattr(self, name)!r}")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction: must be in [0, 1), got {self.val_fraction!r}")
        if not self.tau > 0:
            raise ConfigError(f"tau: must be > 0, got {self.tau!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"grad_clip: must be > 0 or unset, got {self.grad_clip!r}")
        if self.num_workers < 0:
            raise ConfigError(f"num_workers: must be >= 0, got {self.num_workers!r}")
        if self.augment is not None:
            from ..training.augment import Augment
            try:
                Augment.parse(self.augment)
            except ValueError as e:
                raise ConfigError(f"augment: {e}") from None
        return self

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}

# one line per field: the CLI's --help reads these
FIELD_HELP: dict[str, str] = {
    "dataset": "dataset by name", "model": "model from the zoo by name", "data_root": "folder of a dataset's files",
    "neuron": "spiking neuron of every layer", "tau": "membrane time constant, in steps",
    "v_threshold": "firing threshold", "surrogate": "surrogate gradient of the spike",
    "alpha": "surrogate sharpness (where the surrogate has one)",
    "detach_reset": "stop the gradient through the reset", "T": "time steps per sample",
    "encoding": "how static images become spikes", "epochs": "training epochs", "batch_size": "samples per step",
    "lr": "peak learning rate", "optimizer": "optimiser", "momentum": "SGD momentum",
    "weight_decay": "decoupled weight decay", "schedule": "learning-rate schedule",
    "warmup_epochs": "linear warm-up, in epochs", "grad_clip": "clip the gradient norm to this",
    "loss": "loss over the outputs [T, B, K]", "method": "how the model learns (train-step strategy)",
    "memory": "what the neurons keep for backward (lean: recompute more, store less)",
    "augment": "flip and shift each training sample, e.g. flip,shift:2 (flip: left-right with probability 1/2; "
               "shift:N: up to N pixels, zero fill; shift: up to H/8)",
    "channels_last": "run the convolutions channels-last (faster on the CPU for conv models; differs from NCHW by "
                     "float rounding)",
    "amp": "automatic mixed precision", "val_fraction": "share of the training split held out for validation",
    "seed": "seed of weights, split, order and encoding", "num_workers": "DataLoader worker processes",
    "run_dir": "the run folder (default runs/<dataset>-<model>-seed<N>-<time>)",
    "ckpt_every": "also checkpoint every N steps (always at each epoch end)",
    "skip_nonfinite": "skip and count steps with a NaN/Inf loss or gradient instead of stopping",
    "max_skipped": "the run fails if it skips more than this share of its steps",
    "max_steps": "stop after N steps", "limit_train": "train on the first N samples only",
    "threads": "torch threads (restored when the run ends)", "progress": "show the progress bar",
    "eval_every": "evaluate val/test every N epochs (and after the last)",
    "quantize": "quantize weights and membrane, e.g. w2u2 (`spikeforge list compressors`)",
    "prune": "prune while training, e.g. crossbar:R=64,C=64@0.5 (`spikeforge list compressors`)",
    "rewire": "rewire while training, e.g. gradr:s=0.9 (`spikeforge list compressors`)",
    "method_args": "the learning method's own settings (--method-arg KEY=VALUE)",
}
"""One line of help per config field, shown by ``spikeforge train --help`` and in config errors."""


def _coerce(name: str, value: Any) -> Any:
    """Turn a YAML / command-line value into the field's type, or raise naming the field."""
    f = _FIELDS[name]
    t = str(f.type)
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and "None" in t):
        return None
    try:
        if t.startswith("bool"):
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if t.startswith("int"):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if t.startswith("float"):
            return float(value)
        if t.startswith("dict"):
            return dict(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}: cannot read {value!r} as {t}") from None


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The ``field: value`` pairs of a YAML config file, field names with ``-`` read as ``_`` (values as
    written: ``load_config`` coerces and checks them)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config: file {p} does not exist")
    try:
        import yaml
    except ImportError as e:  # pragma: no cover
        raise ConfigError("config: reading YAML needs PyYAML: pip install 'spikeforge[train]'") from e
    try:
        loaded = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config: {p} is not valid YAML ({e})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"config: {p} must hold a mapping of field: value, got {type(loaded).__name__}")
    return {str(k).replace("-", "_"): v for k, v in loaded.items()}


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """A ``TrainConfig`` from an optional YAML file, then ``overrides`` (CLI flags win over the file)."""
    values: dict[str, Any] = read_config_file(path) if path is not None else {}
    values.update({k.replace("-", "_"): v for k, v in (overrides or {}).items() if v is not None})
    unknown = sorted(set(values) - set(_FIELDS) - {"CHOICES"})
    if unknown:
        raise ConfigError(f"{unknown[0]}: {UnknownNameError('field', unknown[0], list(_FIELDS))}")
    return TrainConfig(**{k: _coerce(k, v) for k, v in values.items()})

"""From a config (or a checkpoint's saved config) to the objects of a run: data, neuron, model.

The one place names from a config meet the registries, and the one place a model is rebuilt from a
checkpoint (``rebuild``), for ``eval``, ``report`` and every later workflow (convert, export, deploy).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from torch import nn

from ..data import DATASETS, DataBundle, build_dataset
from ..models import MODELS, create_model
from ..neurons import NEURONS
from ..surrogate import SURROGATES, get_surrogate
from ..training import LOSSES, METHODS, CheckpointError, load_checkpoint
from .config import ConfigError, TrainConfig

__all__ = ["registries", "validate", "neuron_from_config", "model_from_config", "data_from_config", "Rebuilt",
           "rebuild"]


def registries() -> dict[str, list[str]]:
    """Valid names per config field. Only scan neurons are offered by name: the PSN family needs ``T`` and
    its order at build time (pass a factory through the Python API)."""
    return {"model": list(MODELS), "dataset": list(DATASETS), "neuron": NEURONS.names(kind="scan"),
            "surrogate": list(SURROGATES), "loss": list(LOSSES), "method": list(METHODS)}


def validate(cfg: TrainConfig) -> TrainConfig:
    """Every check that can fail before any file is written."""
    cfg.validate(registries())
    if DATASETS.info(cfg.dataset).get("needs_root"):
        if not cfg.data_root:
            raise ConfigError(f"data_root: dataset {cfg.dataset!r} reads the original release from --data-root")
        if not Path(cfg.data_root).is_dir():
            raise ConfigError(f"data_root: {cfg.data_root} is not a folder")
    return cfg


def neuron_from_config(cfg: TrainConfig) -> nn.Module:
    """The neuron template every layer copies, from the config's neuron name and options."""
    info = NEURONS.info(cfg.neuron)
    cls = SURROGATES[cfg.surrogate]
    has_alpha = "alpha" in {f.name for f in fields(cls)}
    sg = get_surrogate(cfg.surrogate, alpha=cfg.alpha) if has_alpha else get_surrogate(cfg.surrogate)
    kw: dict[str, Any] = {"surrogate": sg, "detach_reset": cfg.detach_reset, "v_threshold": cfg.v_threshold,
                          "memory": cfg.memory}
    if info["tau_arg"] is not None:
        kw[info["tau_arg"]] = cfg.tau
    return NEURONS[cfg.neuron](**kw)


def data_from_config(cfg: TrainConfig) -> DataBundle:
    return build_dataset(cfg.dataset, T=cfg.T, root=cfg.data_root, val_fraction=cfg.val_fraction, seed=cfg.seed,
                         limit_train=cfg.limit_train, progress=cfg.progress, options=dict(cfg.extra))


def model_from_config(cfg: TrainConfig, data: DataBundle) -> nn.Module:
    base = dict(in_channels=data.in_channels, num_classes=data.num_classes, img_size=data.img_size, T=cfg.T,
                neuron=neuron_from_config(cfg))
    try:
        return create_model(cfg.model, **{**base, **cfg.model_args})
    except TypeError as e:
        if cfg.model_args and "argument" in str(e):
            raise ConfigError(f"model_args: {cfg.model_args} not accepted by model {cfg.model!r} ({e})") from None
        raise


@dataclass
class Rebuilt:
    """A checkpoint's run, rebuilt: its config, data, model (weights loaded) and the checkpoint itself."""

    cfg: TrainConfig
    data: DataBundle
    model: nn.Module
    checkpoint: dict[str, Any]


def rebuild(checkpoint: str | Path, **overrides: Any) -> Rebuilt:
    """Load a checkpoint, rebuild the model it was trained with and load its weights.

    ``overrides`` replace fields of the saved config (``dataset``, ``data_root``, ...) when not ``None``.
    Raises ``CheckpointError`` for a file that is not a valid spikeforge checkpoint or stores no config.
    """
    ck = load_checkpoint(checkpoint)
    saved = dict(ck["meta"].get("config") or {})
    if not saved:
        raise CheckpointError(f"checkpoint {checkpoint} stores no training config (meta.config)")
    saved.update({k: v for k, v in overrides.items() if v is not None})
    saved.pop("run_dir", None)
    try:
        cfg = validate(TrainConfig(**saved))
    except TypeError as e:
        raise CheckpointError(f"checkpoint {checkpoint}: its saved config does not match this version ({e})") from None
    data = data_from_config(cfg)
    model = model_from_config(cfg, data)
    model.load_state_dict(ck["model"])
    return Rebuilt(cfg, data, model, ck)

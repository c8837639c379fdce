"""From a config (or a checkpoint's saved config) to the objects of a run: data, neuron, model.

The one place names from a config meet the registries, and the one place a model is rebuilt from a
checkpoint (``rebuild``), for ``eval``, ``report`` and every later workflow (convert, export, deploy).
"""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..compress import FLAGS, CompressionError, Compressor, parse_spec
from ..core import UserError, eval_mode, first_line
from ..data import DATASETS, DataBundle, batch_loader, build_dataset, to_time_first
from ..export import NIRNet
from ..learning import METHODS, convert
from ..models import MODELS, create_model
from ..neurons import NEURONS
from ..surrogate import SURROGATES, get_surrogate
from ..training import (
    LOSSES,
    CheckpointError,
    TrainStep,
    get_loss,
    get_method,
    load_checkpoint,
    without_contrastive_head,
)
from .config import ConfigError, TrainConfig, load_config

__all__ = ["registries", "validate", "neuron_from_config", "method_from_config", "model_from_config",
           "compressors_from_config", "compressors_of",
           "data_from_config", "Rebuilt", "rebuild", "first_input", "check_input"]

# what the data and the config decide; --model-arg may not override them
DERIVED = {"in_channels": "the dataset", "num_classes": "the dataset", "img_size": "the dataset", "T": "--T",
           "neuron": "--neuron"}


def registries() -> dict[str, list[str]]:
    """Valid names per config field. Only scan neurons are offered by name: the PSN family needs ``T`` and
    its order at build time (pass a factory through the Python API)."""
    return {"model": list(MODELS), "dataset": list(DATASETS), "neuron": NEURONS.names(kind="scan"),
            "surrogate": list(SURROGATES), "loss": list(LOSSES), "method": list(METHODS)}


IMPORTED_NIR = "nir-import"
"""The ``model`` of a checkpoint written by ``spikeforge import``: rebuilt from the NIR file it stores."""


def validate(cfg: TrainConfig, imported: bool = False) -> TrainConfig:
    """Every check that can fail before any file is written (``imported``: the model may be an imported NIR
    graph, which only a checkpoint can rebuild)."""
    names = registries()
    if imported:
        names["model"] = [*names["model"], IMPORTED_NIR]
    cfg.validate(names)
    compressors_from_config(cfg)
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
    """The named dataset's bundle; a missing or malformed data folder raises a ``UserError`` naming it."""
    try:
        return build_dataset(cfg.dataset, T=cfg.T, root=cfg.data_root, val_fraction=cfg.val_fraction, seed=cfg.seed,
                             limit_train=cfg.limit_train, progress=cfg.progress, options=dict(cfg.extra))
    except UserError:
        raise
    except (RuntimeError, OSError) as e:
        raise ConfigError(f"dataset: {e}") from None


def _factory_params(name: str) -> dict[str, inspect.Parameter]:
    """The keywords a registered model takes: the factory's own, and — where it passes ``**kwargs`` on to the
    class it returns — that class's."""
    factory = MODELS[name]
    params = dict(inspect.signature(factory).parameters)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        try:
            cls = typing.get_type_hints(factory).get("return")
        except (NameError, TypeError):
            cls = None
        if isinstance(cls, type):
            params = {k: v for k, v in params.items() if v.kind is not inspect.Parameter.VAR_KEYWORD}
            params.update((k, v) for k, v in inspect.signature(cls).parameters.items() if k not in params)
    return params


def _check_kind(field: str, owner: str, key: str, value: Any, default: Any) -> None:
    """``value`` has the kind of value ``default`` has (bool, integer, number, string), or ``ConfigError``."""
    if default is None or default is inspect.Parameter.empty:
        return
    flag = "--" + field.replace("_", "-").removesuffix("s")
    what = (("true or false", isinstance(value, bool)) if isinstance(default, bool) else
            ("an integer", isinstance(value, int) and not isinstance(value, bool)) if isinstance(default, int) else
            ("a number", isinstance(value, (int, float)) and not isinstance(value, bool))
            if isinstance(default, float) else
            ("a string", isinstance(value, str)) if isinstance(default, str) else ("", True))
    if not what[1]:
        raise ConfigError(f"{field}: {key}={value!r}: {owner} expects {what[0]} (default {default!r}; "
                          f"{flag} {key}=VALUE reads VALUE as JSON)")


def _check_model_args(name: str, args: dict[str, Any]) -> None:
    """Each ``--model-arg`` is a keyword of the model's factory and has the kind of value its default has."""
    params = _factory_params(name)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for key, value in args.items():
        if key in DERIVED:
            raise ConfigError(f"model_args: {key} is set by {DERIVED[key]}, not by --model-arg")
        if key not in params:
            if takes_any:
                continue
            raise ConfigError(f"model_args: {name} has no argument {key!r} (its arguments: "
                              f"{', '.join(k for k in params if k not in DERIVED)})")
        default = params[key].default
        _check_kind("model_args", name, key, value, default)
        if isinstance(default, (int, float)) and not isinstance(default, bool) and default > 0 and not value > 0:
            raise ConfigError(f"model_args: {key}={value!r}: {name} expects a value > 0 (default {default})")


def compressors_from_config(cfg: TrainConfig) -> list[Compressor]:
    """The config's ``--quantize`` / ``--prune`` / ``--rewire`` compressions, in the order they apply; a bad
    spec raises ``ConfigError`` naming the flag and what is expected."""
    out = []
    for flag in FLAGS:
        text = getattr(cfg, flag)
        if text:
            try:
                comp = parse_spec(flag, str(text))
            except CompressionError as e:
                raise ConfigError(str(e)) from None
            check_config = getattr(comp, "check_config", None)
            why = check_config(cfg) if check_config is not None else None
            if why is not None:
                raise ConfigError(f"--{flag} {text}: {why}")
            out.append(comp)
    return out


def compressors_of(model: nn.Module) -> list[Compressor]:
    """The compressions ``model_from_config`` applied to ``model`` (their training hooks, their report)."""
    return list(getattr(model, "_spikeforge_compressors", []))


def method_from_config(cfg: TrainConfig) -> TrainStep:
    """The config's learning method with its ``method_args``; a setting it does not take, or a bad value,
    raises ``ConfigError`` naming it and the method's settings."""
    factory = METHODS[cfg.method]
    params = {k: v for k, v in inspect.signature(factory).parameters.items() if k != "self"}
    for key, value in cfg.method_args.items():
        if key not in params:
            raise ConfigError(f"method_args: method {cfg.method} has no setting {key!r} (its settings: "
                              f"{', '.join(params) or 'none'})")
        _check_kind("method_args", f"method {cfg.method}", key, value, params[key].default)
    try:
        return get_method(cfg.method, **cfg.method_args)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"method_args: {cfg.method}: {first_line(e)}") from None


def model_from_config(cfg: TrainConfig, data: DataBundle, method: TrainStep | None = None) -> nn.Module:
    """The zoo model of the config, built for the dataset and prepared for the config's learning method
    (``method``, or one built from the config); bad ``--model-arg`` values and a model the method cannot
    train raise ``ConfigError``."""
    if cfg.model == IMPORTED_NIR:
        raise ConfigError(f"model: {IMPORTED_NIR} is a NIR graph brought in by `spikeforge import`; it is rebuilt "
                          "from that checkpoint, not built from a name")
    _check_model_args(cfg.model, cfg.model_args)
    base = dict(in_channels=data.in_channels, num_classes=data.num_classes, img_size=data.img_size, T=cfg.T,
                neuron=neuron_from_config(cfg))
    if MODELS.info(cfg.model).get("fixed_neuron"):       # the PSN nets: their neuron is the point of the variant
        base.pop("neuron")
    try:
        model = create_model(cfg.model, **{**base, **cfg.model_args})
    except (TypeError, ValueError, RuntimeError) as e:
        what = f" with model_args {cfg.model_args}" if cfg.model_args else ""
        raise ConfigError(f"model: {cfg.model} cannot be built for {data.name}{what} ({first_line(e)})") from None
    method = method or method_from_config(cfg)
    reason = method.check(model)
    if reason is not None:
        raise ConfigError(f"method: {cfg.method} cannot train {cfg.model}: {reason}")
    loss_check = getattr(get_loss(cfg.loss), "check", None)
    reason = loss_check(model) if callable(loss_check) else None
    if reason is not None:
        raise ConfigError(f"loss: {cfg.loss} cannot train {cfg.model}: {reason}")
    model = method.prepare(model)
    done = []
    for comp in compressors_from_config(cfg):
        why = comp.check(model)
        if why is not None:
            raise ConfigError(f"{comp.flag}: {comp.spec()} cannot compress {cfg.model}: {why}")
        try:
            model = comp.apply(model)
        except CompressionError as e:
            raise ConfigError(f"{comp.flag}: {e}") from None
        done.append(comp)
    model._spikeforge_compressors = done  # type: ignore[assignment]
    if cfg.channels_last:     # 4-d weights and buffers only: the convs then compute and hand on channels-last
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    return model


def first_input(data: DataBundle, cfg: TrainConfig) -> Tensor:
    """The first test sample as the model sees it: a batch of one, time-first ``[T, 1, ...]``, encoded with
    the config's encoding and a generator seeded 0."""
    x = next(iter(batch_loader(data.test, data.kind, batch_size=1)))[0]       # collated as in training
    return to_time_first(x, data.kind, cfg.T, cfg.encoding, torch.Generator().manual_seed(0))


def check_input(model: nn.Module, data: DataBundle, cfg: TrainConfig) -> None:
    """Run one sample through the model (evaluation mode, no gradient, nothing changed) and check that the
    output is ``[T, 1, num_classes]``; a shape the model cannot take raises ``ConfigError`` naming it."""
    x = first_input(data, cfg)
    try:
        with eval_mode(model), torch.no_grad():
            out = model(x)
    except (RuntimeError, ValueError, IndexError, TypeError) as e:
        raise ConfigError(f"model: {cfg.model} cannot take {data.name}'s input of shape {tuple(x.shape)} "
                          f"[T, B, C, H, W] ({first_line(e)})") from None
    if not isinstance(out, Tensor) or out.dim() != 3 or out.shape[1] != 1 or out.shape[2] != data.num_classes:
        shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ConfigError(f"model: {cfg.model} returns {shape} for one sample of {data.name}; expected "
                          f"[T, 1, {data.num_classes}]")


def graph_from_bytes(data: Tensor, dt: float, where: str) -> NIRNet:
    """The ``NIRNet`` of a NIR file held as bytes (a ``uint8`` tensor); errors name ``where``."""
    import tempfile

    from ..export import NIRImportError, from_nir
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "graph.nir"
        path.write_bytes(data.numpy().tobytes())
        try:
            return from_nir(path, dt=dt)
        except NIRImportError as e:
            raise NIRImportError(str(e).replace(str(path), where)) from None


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
    saved = ck["meta"].get("config") if isinstance(ck["meta"], dict) else None
    if not isinstance(saved, dict) or not saved:
        raise CheckpointError(f"checkpoint {checkpoint} stores no training config (meta.config)")
    saved = {k: v for k, v in saved.items() if k != "run_dir"}
    nir_file = ck["extra"].get("nir", {}).get("file")
    try:
        cfg = validate(load_config(None, saved), imported=nir_file is not None)
    except ConfigError as e:
        raise CheckpointError(f"checkpoint {checkpoint}: its saved config is invalid ({e})") from None
    for k, v in overrides.items():
        if v is not None:
            setattr(cfg, k, v)
    validate(cfg, imported=nir_file is not None)
    data = data_from_config(cfg)
    if cfg.model == IMPORTED_NIR:
        if nir_file is None:
            raise CheckpointError(f"checkpoint {checkpoint}: its model is an imported NIR graph, but it stores none")
        try:
            model: nn.Module = graph_from_bytes(nir_file, float(ck["extra"]["nir"]["dt"]), "its stored NIR graph")
        except UserError as e:
            raise CheckpointError(f"checkpoint {checkpoint}: {e}") from None
    else:
        model = model_from_config(cfg, data)
        conversion = ck["extra"].get("conversion")
        if conversion is not None:      # `spikeforge convert`: the ANN twin, converted; the weights fill it in
            try:
                model = convert(model, alpha=float(conversion["alpha"]), T=cfg.T)
            except (KeyError, TypeError, ValueError) as e:
                raise CheckpointError(f"checkpoint {checkpoint}: its conversion record does not rebuild "
                                      f"({first_line(e)})") from None
    try:     # a contrastive loss's projection head trains beside the model; evaluation has no use for it
        model.load_state_dict(without_contrastive_head(ck["model"]))
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {checkpoint}: its weights do not fit {cfg.model} on {cfg.dataset} "
                              f"({first_line(e)})") from None
    check_input(model, data, cfg)
    return Rebuilt(cfg, data, model, ck)

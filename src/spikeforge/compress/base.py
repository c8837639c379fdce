"""What every compression is: a ``Compressor`` applied to a model in place, with the training hooks it
needs, chosen on the command line by a spec string and recorded in the run's config.

Three flags compose with any ``--method``::

    --quantize w2u2            # MINT: 2-bit weights and 2-bit membrane, one shared scale per layer
    --prune lats:D=0.02        # LATS soft-threshold pruning to the final threshold D
    --prune lats@0.9           # ... with D calibrated for 90% sparsity on the training split
    --rewire gradr:s=0.9,alpha=1e-3

A spec is ``NAME[:KEY=VALUE,...][@TARGET]`` (``--quantize`` also takes the short ``w<b>[u<b>]`` form);
``parse_spec(flag, text)`` turns it into a ``Compressor`` through the ``COMPRESSORS`` registry, whose
factories take the keys as keyword arguments (``target`` for ``@TARGET``). ``Compressor.apply(model)``
changes the model with PyTorch's own mechanisms (``torch.nn.utils.parametrize``, the neurons' state
quantiser) and refuses a model it already compressed; ``callbacks()`` are the engine hooks it trains with.
``app`` applies the config's compressors wherever it builds a run's model, so ``eval``, ``report``,
``--resume`` and export rebuild them.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from typing import Any, ClassVar

from torch import nn

from ..core import Registry, UserError

__all__ = ["Compressor", "COMPRESSORS", "CompressionError", "parse_spec", "FLAGS", "applied", "log_epoch_value"]

FLAGS = ("quantize", "prune", "rewire")
"""The config fields (and CLI flags) that pick a compression, in the order they are applied."""


class CompressionError(UserError, ValueError):
    """A compression spec or setting is invalid, or cannot be applied to this model; the message says which."""


class Compressor:
    """One compression. Subclasses set ``name`` and ``flag`` and implement ``apply``.

    ``check(model)`` returns why it cannot compress ``model`` (or ``None``); ``apply(model)`` changes it in
    place and records itself on the model (``applied``); ``callbacks()`` are the training hooks
    (``spikeforge.training.Callback``) it needs; ``spec()`` is the canonical spec string saved in the config;
    ``describe(model)`` the numbers a report shows (bits, sparsity, crossbars).
    """

    name: ClassVar[str] = "compressor"
    flag: ClassVar[str] = "prune"

    def check(self, model: nn.Module) -> str | None:
        return None

    def apply(self, model: nn.Module) -> nn.Module:
        raise NotImplementedError

    def callbacks(self) -> list[Any]:
        return []

    def spec(self) -> str:
        return self.name

    def describe(self, model: nn.Module) -> dict[str, Any]:
        return {}

    def mark(self, model: nn.Module) -> nn.Module:
        """Record this compression on ``model`` (``apply`` calls it last); a second one of the same flag raises."""
        done = applied(model)
        if self.flag in done:
            raise CompressionError(f"--{self.flag}: the model is already compressed by {done[self.flag]!r}; "
                                   f"a second {self.flag} ({self.spec()!r}) is refused")
        model._spikeforge_compression = {**done, self.flag: self.spec()}  # type: ignore[assignment]
        return model


def log_epoch_value(trainer: Any, name: str, value: float) -> None:
    """Put a compressor's ``value`` in this epoch's ``metrics.csv`` row as ``train_<name>`` (the engine logs
    the mean of a step's numbers over the epoch; a one-element list makes it the value at the latest step)."""
    extra = getattr(getattr(trainer, "state", None), "ep_extra", None)
    if isinstance(extra, dict):
        extra[name] = [float(value)]


def applied(model: nn.Module) -> dict[str, str]:
    """``{flag: spec}`` of the compressions applied to ``model``."""
    return dict(getattr(model, "_spikeforge_compression", {}))


COMPRESSORS: Registry[Callable[..., Compressor]] = Registry("compressor", lambda s: s.lower())
"""Compressions by name (``spikeforge list compressors``): factories of ``Compressor`` whose keyword
arguments are a spec's ``KEY=VALUE`` settings (and ``target`` for ``@TARGET``); ``info(name)["flag"]`` is the
flag that takes it."""


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_spec(flag: str, text: str) -> Compressor:
    """A ``Compressor`` from ``--FLAG TEXT`` (see the module docstring); a bad spec raises
    ``CompressionError`` naming the flag, the text and what is expected."""
    if flag not in FLAGS:
        raise CompressionError(f"unknown compression flag {flag!r}; choose one of {FLAGS}")
    raw = text.strip()
    if not raw:
        raise CompressionError(f"--{flag}: empty spec; expected NAME[:KEY=VALUE,...][@TARGET]")
    kwargs: dict[str, Any] = {}
    if flag == "quantize" and re.match(r"[wW]\d", raw):
        name, kwargs = "mint", _short_quantize(raw)
    else:
        head, _, target = raw.partition("@")
        name, _, opts = head.partition(":")
        if target:
            kwargs["target"] = _value(target)
        for item in filter(None, opts.split(",")):
            key, sep, value = item.partition("=")
            if not sep or not key.strip().isidentifier():
                raise CompressionError(f"--{flag} {text}: {item!r} is not KEY=VALUE")
            if key.strip() in kwargs:
                raise CompressionError(f"--{flag} {text}: {key.strip()} is given twice")
            kwargs[key.strip()] = _value(value.strip())
    if name.lower() not in COMPRESSORS:
        names = [n for n in COMPRESSORS if COMPRESSORS.info(n).get("flag") == flag]
        raise CompressionError(f"--{flag} {text}: unknown {flag} method {name!r}; choose one of "
                               f"{names or 'none (none is installed)'}")
    if COMPRESSORS.info(name).get("flag") != flag:
        raise CompressionError(f"--{flag} {text}: {name} is chosen with --{COMPRESSORS.info(name)['flag']}")
    factory = COMPRESSORS[name]
    known = [k for k in inspect.signature(factory).parameters if k != "self"]
    for key in kwargs:
        if key not in known:
            what = "@TARGET" if key == "target" else f"setting {key!r}"
            raise CompressionError(f"--{flag} {text}: {name} has no {what} (its settings: {', '.join(known)})")
    try:
        return factory(**kwargs)
    except TypeError as e:
        raise CompressionError(f"--{flag} {text}: {e}") from None
    except ValueError as e:
        raise CompressionError(f"--{flag} {text}: {e}") from None


def _short_quantize(raw: str) -> dict[str, Any]:
    """``w2u2`` → ``{weight_bits: 2, state_bits: 2}``; ``w4`` → weights only; ``:separate`` / ``:shared``."""
    body, _, mode = raw.partition(":")
    m = re.fullmatch(r"[wW](\d+)(?:[uU](\d+))?", body)
    if not m:
        raise CompressionError(f"--quantize {raw}: expected w<bits>[u<bits>][:shared|:separate], e.g. w2u2")
    out: dict[str, Any] = {"weight_bits": int(m.group(1))}
    if m.group(2):
        out["state_bits"] = int(m.group(2))
    if mode:
        if mode not in ("shared", "separate"):
            raise CompressionError(f"--quantize {raw}: after ':' expected shared or separate, got {mode!r}")
        out["shared_scale"] = mode == "shared"
    return out

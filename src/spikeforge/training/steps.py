"""How one batch becomes gradients: the train-step strategy (``--method``), and what it is handed.

The engine owns the loop, the optimiser step, checkpoints and hooks; a ``TrainStep`` owns the forward
and the backward of one batch::

    out = step(model, (x_seq, y), ctx)      # forward, loss, backward (once or several times)

and returns a ``StepOutput``. The engine then unscales (AMP), checks the gradients, calls the
``on_after_backward`` hooks, clips and steps the optimiser. ``model`` is what to call for the forward (the
DDP wrapper under ``torchrun``), ``ctx.module`` the bare model. A step that calls backward more than once
per batch wraps all but the last in ``ctx.no_sync()``, so DDP all-reduces once. ``state_dict()`` goes into
every checkpoint, so ``--resume`` is exact for any strategy.

Methods by name (``METHODS``): ``bptt`` here; ``spikeforge.learning`` registers the others (DSR, tandem,
spike count, the ANN twins for conversion). A method may change the model it trains: ``prepare(model)``
swaps its neurons in place (once; a prepared model is left as it is), and ``check(model)`` says why it
cannot train a model at all. The engine calls both before the first step, ``app`` when it builds a run's
model, so ``eval``, ``report`` and ``--resume`` see the model the method trained.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..core import Registry

__all__ = ["TrainStep", "BPTT", "StepContext", "StepOutput", "NonFiniteLoss", "METHODS", "get_method", "autocast",
           "prepared_by", "mark_prepared"]

LossFn = Callable[[Tensor, Tensor, dict[str, Any]], Tensor]


def autocast(amp: str, device_type: str) -> Any:
    """The autocast context of an AMP mode: ``"off"`` (disabled), ``"bf16"`` or ``"fp16"``."""
    if amp == "off":
        return torch.autocast(device_type, enabled=False)
    return torch.autocast(device_type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


class NonFiniteLoss(FloatingPointError):
    """Raised by ``StepContext.backward`` instead of backpropagating a NaN/Inf loss."""

    def __init__(self, value: float) -> None:
        super().__init__(f"loss is {value}")
        self.value = value


@dataclass
class StepOutput:
    """What a step produced: the (detached) scalar loss and the outputs ``[T, B, K]`` accuracy is read from."""

    loss: Tensor
    outputs: Tensor
    extra: dict[str, float] = field(default_factory=dict)   # per-step numbers a method wants logged


@dataclass
class StepContext:
    """Everything a step may use besides the model and the batch.

    Attributes:
        loss: ``loss(outputs [T, B, K], targets [B], aux) -> scalar``.
        optimizer: the optimiser (the engine zeroes it before and steps it after the strategy).
        scaler: AMP's ``GradScaler`` (disabled unless fp16): use ``ctx.backward(loss)``, which scales.
        hooks: ``hooks(name, *args)`` calls every callback's ``name`` method.
        ddp: the ``DistributedDataParallel`` wrapper, or ``None`` in a single process.
        module: the bare model (``ddp.module`` under DDP).
        amp: ``"off"``, ``"bf16"`` or ``"fp16"``; ``autocast()`` enters it.
        step: the global step being computed.
        batch_transform: optional ``(x_seq, y) -> view | [views]`` (augmented views; the first is the output).
    """

    loss: LossFn
    optimizer: torch.optim.Optimizer
    scaler: Any
    hooks: Callable[..., None]
    ddp: nn.Module | None
    module: nn.Module
    amp: str = "off"
    step: int = 0
    batch_transform: Callable[..., Any] | None = None

    def autocast(self) -> Any:
        return autocast(self.amp, next(self.module.parameters()).device.type)

    def no_sync(self) -> contextlib.AbstractContextManager[Any]:
        """DDP's ``no_sync()`` (gradients accumulate locally, no all-reduce), or nothing in one process."""
        return self.ddp.no_sync() if self.ddp is not None else contextlib.nullcontext()  # type: ignore[operator]

    def backward(self, loss: Tensor) -> None:
        """Backpropagate ``loss`` (scaled under fp16); a non-finite loss raises ``NonFiniteLoss`` instead."""
        if not bool(torch.isfinite(loss.detach())):
            raise NonFiniteLoss(float(loss.detach()))
        self.scaler.scale(loss).backward()


class TrainStep:
    """A learning method's step. Subclasses implement ``__call__``; stateful ones ``state_dict`` too.

    ``check(model)`` returns ``None`` when the method can train ``model``, else the reason (the CLI
    prints it before anything is written). ``prepare(model)`` turns a zoo model into the one the method
    trains, in place (swapping neurons, tying thresholds into weights) and marks it, so a second call does
    nothing. ``config`` lists the run settings the method fixes (the ANN twins train at ``T = 1``);
    ``replaces_neurons`` says that ``prepare`` puts the method's own neurons in place of the model's.
    ``options()`` are the method's own settings (``--method-arg``), saved in the run's config.
    ``takes_batch_transform`` says that the step applies ``ctx.batch_transform`` (``--augment``) to its batch.
    """

    name = "step"
    config: ClassVar[dict[str, Any]] = {}
    replaces_neurons: ClassVar[bool] = False       # prepare() swaps the model's neurons for the method's own
    takes_batch_transform: ClassVar[bool] = False

    def check(self, model: nn.Module) -> str | None:
        return None

    def prepare(self, model: nn.Module) -> nn.Module:
        """The model this method trains (``model`` itself, changed in place); the default changes nothing."""
        return model

    def options(self) -> dict[str, Any]:
        """The method's settings, as ``--method-arg`` takes them."""
        return {}

    def __call__(self, model: nn.Module, batch: tuple[Tensor, Tensor], ctx: StepContext) -> StepOutput:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"method {self.name!r} keeps no state, but the checkpoint holds {sorted(state)}")


def forward_views(model: nn.Module, x_seq: Tensor, y: Tensor, ctx: StepContext,
                  aux: dict[str, Any]) -> Tensor:
    """The model's output on the batch, or on each view of ``ctx.batch_transform`` (all kept in
    ``aux["views"]``; the first is returned)."""
    if ctx.batch_transform is None:
        return model(x_seq)  # type: ignore[no-any-return]
    views = ctx.batch_transform(x_seq, y)
    views = views if isinstance(views, (list, tuple)) else [views]
    outs = [model(v) for v in views]
    aux["views"] = outs
    return outs[0]  # type: ignore[no-any-return]


class BPTT(TrainStep):
    """Backpropagation through time: one forward over the whole sequence, one backward through it
    (surrogate gradients at every spike)."""

    name = "bptt"
    takes_batch_transform = True

    def __call__(self, model: nn.Module, batch: tuple[Tensor, Tensor], ctx: StepContext) -> StepOutput:
        x_seq, y = batch
        aux: dict[str, Any] = {"inputs": x_seq, "model": ctx.module, "step": ctx.step}
        with ctx.autocast():
            out = forward_views(model, x_seq, y, ctx, aux)
            loss = ctx.loss(out, y, aux)
        ctx.backward(loss)
        return StepOutput(loss.detach(), out.detach())


METHODS: Registry[Callable[[], TrainStep]] = Registry("method", lambda s: s.lower())
"""Training methods by name for ``--method``: factories of ``TrainStep`` (``bptt`` is the default)."""
METHODS.register("bptt", BPTT, summary="backpropagation through time with surrogate gradients (the default)")


def prepared_by(model: nn.Module) -> str | None:
    """The name of the method whose ``prepare`` changed ``model``, or ``None``."""
    return getattr(model, "_spikeforge_method", None)


def mark_prepared(model: nn.Module, name: str) -> nn.Module:
    """Record that method ``name`` prepared ``model`` (``prepare`` calls this last); returns ``model``."""
    model._spikeforge_method = name  # type: ignore[assignment]
    return model


def get_method(spec: str | TrainStep, **options: Any) -> TrainStep:
    """A fresh step strategy from a registered name and its options, or the object itself. An option the
    method does not take raises ``TypeError``; a bad value ``ValueError``."""
    if isinstance(spec, TrainStep):
        if options:
            raise TypeError(f"options {sorted(options)} given with a TrainStep object; set them on the object")
        return spec
    return METHODS[spec](**options)

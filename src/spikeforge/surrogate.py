"""Surrogate gradients: a Heaviside step forward, the derivative of a smooth primitive backward.

Every surrogate is a small frozen dataclass. ``surrogate(x)`` returns ``Θ(x) = 1[x >= 0]`` (the
spike condition of spikeforge, see docs/guide/conventions.md) in ``x``'s dtype; its backward multiplies
the incoming gradient by ``grad_fn(x)``, the derivative of ``primitive_fn(x)``. With
``spiking=False`` the forward returns the primitive itself, which makes a whole neuron smooth: that is
how ``torch.autograd.gradcheck`` checks every backward chain end to end.

Where SpikingJelly has the same surrogate, the class name, the argument names, their defaults and their
meaning are SpikingJelly's (``Sigmoid(alpha=4.0)`` here has exactly the gradient of SpikingJelly's
``surrogate.Sigmoid(alpha=4.0)``; a test pins each one).

``primitive_fn`` and ``grad_fn`` are static functions of ``x`` and the dataclass fields. ``grad_fn``
uses only the elementwise ops the kernel generator supports (+ − × ÷, exp, log, abs, sigmoid, pow by a
scalar, min/max/clamp, where, comparisons), so fused kernels derive from the same code.

Example:
    >>> import torch
    >>> from spikeforge.surrogate import ATan
    >>> x = torch.tensor([-1.0, 0.0, 0.5], requires_grad=True)
    >>> s = ATan(alpha=2.0)(x)
    >>> s.tolist()
    [0.0, 1.0, 1.0]
    >>> s.sum().backward(); round(x.grad[1].item(), 4)   # alpha / 2 at x = 0
    1.0
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from .core import Registry

__all__ = [
    "Surrogate",
    "Sigmoid",
    "ATan",
    "SuperSpike",
    "FastSigmoid",
    "PiecewiseQuadratic",
    "Triangle",
    "Rectangle",
    "Rect",
    "Erf",
    "SoftSign",
    "PiecewiseExp",
    "LogTailedReLU",
    "S2NN",
    "QPseudoSpike",
    "StraightThrough",
    "heaviside",
    "get_surrogate",
    "SURROGATES",
]


def heaviside(x: Tensor) -> Tensor:
    """The spike condition ``Θ(x) = 1[x >= 0]``, in ``x``'s dtype (bool for integer inputs is avoided)."""
    return (x >= 0).to(x.dtype if x.is_floating_point() else torch.float32)


class _SpikeFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, sg: Surrogate) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.sg = sg
        return heaviside(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * ctx.sg.grad(x), None


class _SmoothFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, sg: Surrogate) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.sg = sg
        return sg.primitive(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * ctx.sg.grad(x), None


@dataclass(frozen=True)
class Surrogate:
    """Base class. Subclasses set ``name`` and define ``primitive_fn`` / ``grad_fn``.

    The dataclass fields (``alpha`` and friends) are the surrogate's numeric parameters; fused kernels
    take them as runtime arguments, so changing ``alpha`` never recompiles anything.
    """

    name: ClassVar[str] = "surrogate"
    spiking: bool = dataclasses.field(default=True, kw_only=True)

    @staticmethod
    def primitive_fn(x: Tensor, **params: float) -> Tensor:
        raise NotImplementedError

    @staticmethod
    def grad_fn(x: Tensor, **params: float) -> Tensor:
        raise NotImplementedError

    def params(self) -> dict[str, float]:
        """The numeric parameters passed to ``primitive_fn`` and ``grad_fn``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "spiking"}

    def primitive(self, x: Tensor) -> Tensor:
        return self.primitive_fn(x, **self.params())

    def grad(self, x: Tensor) -> Tensor:
        return self.grad_fn(x, **self.params())

    def __call__(self, x: Tensor) -> Tensor:
        fn = _SpikeFn if self.spiking else _SmoothFn
        out: Tensor = fn.apply(x, self)  # type: ignore[no-untyped-call]
        return out


@dataclass(frozen=True)
class Sigmoid(Surrogate):
    """``g(x) = sigmoid(αx)``;  ``g'(x) = α·sigmoid(αx)·(1 − sigmoid(αx))``. SpikingJelly's default."""

    name: ClassVar[str] = "sigmoid"
    alpha: float = 4.0

    @staticmethod
    def primitive_fn(x: Tensor, alpha: float) -> Tensor:  # type: ignore[override]
        return torch.sigmoid(alpha * x)

    @staticmethod
    def grad_fn(x: Tensor, alpha: float) -> Tensor:  # type: ignore[override]
        s = torch.sigmoid(alpha * x)
        return alpha * s * (1.0 - s)


@dataclass(frozen=True)
class ATan(Surrogate):
    """``g(x) = arctan(π/2·αx)/π + 1/2``;  ``g'(x) = (α/2) / (1 + (π/2·αx)²)``.

    The default of the Fang / Zhou papers (Spikformer, SEW ResNet, PSN) with ``alpha=2``.
    """

    name: ClassVar[str] = "atan"
    alpha: float = 2.0

    @staticmethod
    def primitive_fn(x: Tensor, alpha: float) -> Tensor:  # type: ignore[override]
        return torch.atan(math.pi / 2 * alpha * x) / math.pi + 0.5

    @staticmethod
    def grad_fn(x: Tensor, alpha: float) -> Tensor:  # type: ignore[override]
        ax = (math.pi / 2 * alpha) * x
        return (alpha / 2) / (1.0 + ax * ax)


@dataclass(frozen=True)
class SuperSpike(Surrogate):
    """SpikingJelly's SuperSpike: ``g'(x) = α / (|x| + 1)²``, ``g(x) = 1/2 + α·x/(1 + |x|)``.

    SpikingJelly defines only the derivative; ``g`` is its integral. Zenke & Ganguli 2018, Neural
    Computation 30(6).
    """

    name: ClassVar[str] = "superspike"
    alpha: float = 1.0

    @staticmethod
    def primitive_fn(x: Tensor, alpha: float) -> Tensor:  # type: ignore[override]
        return 0.5 + alpha * x / (1.0 + torch.abs(x))

    @staticmethod
    def grad_fn(x: Tensor, alpha: float) -> Tensor:  # type: ignore[override]
        d = torch.abs(x) + 1.0
        return alpha / (d * d)


@dataclass(frozen=True)
class FastSigmoid(Surrogate):
    """snnTorch's fast sigmoid: ``g'(x) = 1 / (slope·|x| + 1)²``, ``g(x) = 1/2 + x/(1 + slope·|x|)``.

    Argument name and default as ``snntorch.surrogate.fast_sigmoid(slope=25)``.
    """

    name: ClassVar[str] = "fast_sigmoid"
    slope: float = 25.0

    @staticmethod
    def primitive_fn(x: Tensor, slope: float) -> Tensor:  # type: ignore[override]
        return 0.5 + x / (1.0 + slope * torch.abs(x))

    @staticmethod
    def grad_fn(x: Tensor, slope: float) -> Tensor:  # type: ignore[override]
        d = slope * torch.abs(x) + 1.0
        return 1.0 / (d * d)


@dataclass(frozen=True)
class PiecewiseQuadratic(Surrogate):
    """``g'(x) = max(0, α − α²|x|)`` (zero for ``|x| > 1/α``); ``g`` is its piecewise-quadratic integral.

    Esser et al. 2016, PNAS; Bellec et al. 2018. SpikingJelly's ``PiecewiseQuadratic(alpha=1)``.
    """

    name: ClassVar[str] = "piecewise_quadratic"
    alpha: float = 1.0

    @staticmethod
    def primitive_fn(x: Tensor, alpha: float) -> Tensor:  # type: ignore[override]
        inner = -(alpha**2) / 2 * x * torch.abs(x) + alpha * x + 0.5
        return torch.where(x > 1.0 / alpha, torch.ones_like(x),
                           torch.where(x < -1.0 / alpha, torch.zeros_like(x), inner))

    @staticmethod
    def grad_fn(x: Tensor, alpha: float) -> Tensor:  # type: ignore[override]
        return torch.clamp(alpha - alpha**2 * torch.abs(x), min=0.0)


@dataclass(frozen=True)
class Triangle(Surrogate):
    """Bellec et al.'s dampened pseudo-derivative: ``g'(x) = γ·max(0, 1 − |x|/w)``.

    ``gamma`` damps the peak (0.3 in LSNN, NeurIPS 2018), ``width`` is the half-width of the support.
    ``g`` is the integral: ``γ·w·(1/2 + x/w − x|x|/(2w²))`` inside the support, ``0`` / ``γ·w`` outside.
    """

    name: ClassVar[str] = "triangle"
    gamma: float = 0.3
    width: float = 1.0

    @staticmethod
    def primitive_fn(x: Tensor, gamma: float, width: float) -> Tensor:  # type: ignore[override]
        u = torch.clamp(x / width, -1.0, 1.0)
        return gamma * width * (0.5 + u - u * torch.abs(u) / 2)

    @staticmethod
    def grad_fn(x: Tensor, gamma: float, width: float) -> Tensor:  # type: ignore[override]
        return gamma * torch.clamp(1.0 - torch.abs(x) / width, min=0.0)


@dataclass(frozen=True)
class Rectangle(Surrogate):
    """Box window of unit area: ``g'(x) = α·1[|x| < 1/(2α)]``, ``g(x) = clamp(αx + 1/2, 0, 1)``.

    SpikingJelly's ``Rect(alpha=1)``; Zheng et al. 2021 (tdBN) use the same window.
    """

    name: ClassVar[str] = "rectangle"
    alpha: float = 1.0

    @staticmethod
    def primitive_fn(x: Tensor, alpha: float) -> Tensor:  # type: ignore[override]
        return torch.clamp(alpha * x + 0.5, 0.0, 1.0)

    @staticmethod
    def grad_fn(x: Tensor, alpha: float) -> Tensor:  # type: ignore[override]
        return alpha * (torch.abs(x) < 0.5 / alpha).to(x.dtype)


Rect = Rectangle
"""Alias of ``Rectangle``."""


@dataclass(frozen=True)
class Erf(Surrogate):
    """Gaussian CDF: ``g(x) = erfc(−αx)/2``, ``g'(x) = (α/√π)·exp(−(αx)²)``. SpikingJelly's ``Erf(alpha=2)``."""

    name: ClassVar[str] = "erf"
    alpha: float = 2.0

    @staticmethod
    def primitive_fn(x: Tensor, alpha: float) -> Tensor:  # type: ignore[override]
        return torch.special.erfc(-alpha * x) / 2

    @staticmethod
    def grad_fn(x: Tensor, alpha: float) -> Tensor:  # type: ignore[override]
        ax = alpha * x
        return (alpha / math.sqrt(math.pi)) * torch.exp(-(ax * ax))


@dataclass(frozen=True)
class SoftSign(Surrogate):
    """``g(x) = (softsign(αx) + 1)/2``, ``g'(x) = 1 / (2α·(1/α + |x|)²)``. SpikingJelly's ``SoftSign(alpha=2)``."""

    name: ClassVar[str] = "softsign"
    alpha: float = 2.0

    @staticmethod
    def primitive_fn(x: Tensor, alpha: float) -> Tensor:  # type: ignore[override]
        ax = alpha * x
        return (ax / (1.0 + torch.abs(ax)) + 1.0) / 2

    @staticmethod
    def grad_fn(x: Tensor, alpha: float) -> Tensor:  # type: ignore[override]
        d = 1.0 / alpha + torch.abs(x)
        return 1.0 / (2 * alpha * d * d)


@dataclass(frozen=True)
class PiecewiseExp(Surrogate):
    """``g'(x) = (α/2)·exp(−α|x|)``; ``g(x) = Θ(x) − sign(x)·exp(−α|x|)/2``.

    SpikingJelly's ``PiecewiseExp(alpha=1)``.
    """

    name: ClassVar[str] = "piecewise_exp"
    alpha: float = 1.0

    @staticmethod
    def primitive_fn(x: Tensor, alpha: float) -> Tensor:  # type: ignore[override]
        e = torch.exp(-alpha * torch.abs(x)) / 2
        return torch.where(x >= 0, 1.0 - e, e)

    @staticmethod
    def grad_fn(x: Tensor, alpha: float) -> Tensor:  # type: ignore[override]
        return (alpha / 2) * torch.exp(-alpha * torch.abs(x))


@dataclass(frozen=True)
class LogTailedReLU(Surrogate):
    """Log-tailed ReLU (Cai et al. 2017): ``g(x) = αx`` for x ≤ 0, ``x`` on (0, 1], ``log(x) + 1`` above.

    ``g'(x) = α`` for x ≤ 0, ``1`` on (0, 1], ``1/x`` above. SpikingJelly's ``LogTailedReLU(alpha=0)``.
    """

    name: ClassVar[str] = "log_tailed_relu"
    alpha: float = 0.0

    @staticmethod
    def primitive_fn(x: Tensor, alpha: float) -> Tensor:  # type: ignore[override]
        tail = torch.log(torch.clamp(x, min=1.0)) + 1.0
        return torch.where(x > 1.0, tail, torch.where(x > 0, x, alpha * x))

    @staticmethod
    def grad_fn(x: Tensor, alpha: float) -> Tensor:  # type: ignore[override]
        one = torch.ones_like(x)
        tail = one / torch.clamp(x, min=1.0)
        return torch.where(x > 1.0, tail, torch.where(x <= 0, alpha * one, one))


@dataclass(frozen=True)
class S2NN(Surrogate):
    """S2NN (Suetake et al. 2023): sigmoid below zero, a log tail above.

    ``g(x) = sigmoid(αx)`` for x < 0, ``β·log(x + 1) + 1/2`` for x ≥ 0;
    ``g'(x) = α·sigmoid(αx)(1 − sigmoid(αx))`` for x < 0, ``β/(x + 1)`` for x ≥ 0.
    SpikingJelly's ``S2NN(alpha=4, beta=1)``.
    """

    name: ClassVar[str] = "s2nn"
    alpha: float = 4.0
    beta: float = 1.0

    @staticmethod
    def primitive_fn(x: Tensor, alpha: float, beta: float) -> Tensor:  # type: ignore[override]
        pos = beta * torch.log(torch.clamp(x, min=0.0) + 1.0) + 0.5
        return torch.where(x < 0, torch.sigmoid(alpha * x), pos)

    @staticmethod
    def grad_fn(x: Tensor, alpha: float, beta: float) -> Tensor:  # type: ignore[override]
        s = torch.sigmoid(alpha * x)
        return torch.where(x < 0, alpha * s * (1.0 - s), beta / (torch.clamp(x, min=0.0) + 1.0))


@dataclass(frozen=True)
class QPseudoSpike(Surrogate):
    """q-PseudoSpike (Herranz-Celotti & Rouat 2022): heavy-tailed, ``g'(x) = (1 + 2|x|/(α − 1))^(−α)``.

    ``g(x) = Θ(x) − sign(x)·(1 + 2|x|/(α − 1))^(1 − α)/2``. SpikingJelly's ``QPseudoSpike(alpha=2)``;
    requires ``alpha > 1``.
    """

    name: ClassVar[str] = "q_pseudo_spike"
    alpha: float = 2.0

    def __post_init__(self) -> None:
        if not self.alpha > 1:
            raise ValueError(f"QPseudoSpike needs alpha > 1, got alpha={self.alpha}")

    @staticmethod
    def primitive_fn(x: Tensor, alpha: float) -> Tensor:  # type: ignore[override]
        tail = torch.pow(1.0 + 2.0 / (alpha - 1.0) * torch.abs(x), 1.0 - alpha) / 2
        return torch.where(x >= 0, 1.0 - tail, tail)

    @staticmethod
    def grad_fn(x: Tensor, alpha: float) -> Tensor:  # type: ignore[override]
        return torch.pow(1.0 + 2.0 / (alpha - 1.0) * torch.abs(x), -alpha)


@dataclass(frozen=True)
class StraightThrough(Surrogate):
    """Straight-through estimator: ``g(x) = x + 1/2``, ``g'(x) = 1`` (Bengio et al. 2013)."""

    name: ClassVar[str] = "straight_through"

    @staticmethod
    def primitive_fn(x: Tensor) -> Tensor:  # type: ignore[override]
        return x + 0.5

    @staticmethod
    def grad_fn(x: Tensor) -> Tensor:  # type: ignore[override]
        return torch.ones_like(x)


SURROGATES: Registry[type[Surrogate]] = Registry("surrogate", lambda s: s.lower().replace("-", "_"))
"""Surrogate classes by name (case and ``-`` insensitive); ``get_surrogate`` resolves names through it."""
for _cls in (Sigmoid, ATan, SuperSpike, FastSigmoid, PiecewiseQuadratic, Triangle, Rectangle, Erf, SoftSign,
             PiecewiseExp, LogTailedReLU, S2NN, QPseudoSpike, StraightThrough):
    SURROGATES.register(_cls.name, _cls)


def get_surrogate(spec: str | Surrogate | Callable[[Tensor], Tensor], **params: float) -> Surrogate:
    """The one factory for the config/CLI edge: a name (``"atan"``, ``"sigmoid"``…) or an instance.

    Args:
        spec: a registered name (see ``SURROGATES``) or a ``Surrogate`` object, returned as is.
        **params: constructor arguments when ``spec`` is a name, e.g. ``alpha=2.0``.
    """
    if isinstance(spec, Surrogate):
        if params:
            raise TypeError("get_surrogate: pass parameters either to the object or by name, not both")
        return spec
    if isinstance(spec, str):
        cls: Any = SURROGATES[spec]        # UnknownNameError (a ValueError) suggests the closest names
        return cls(**params)  # type: ignore[no-any-return]
    raise TypeError(f"surrogate must be a name or a spikeforge.surrogate.Surrogate, got {type(spec).__name__}")

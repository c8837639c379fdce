"""Residual connections of spiking networks, one class per form.

======================  =========================================  ===========================================
form                    output                                     paper
======================  =========================================  ===========================================
``SpikingResidual``     ``SN(F(S) + S)``                           Spiking ResNet (Hu et al.; Zheng et al.)
``SEWResidual``         ``g(SN(F(S)), S)``, g = ADD / AND / IAND   SEW ResNet (Fang et al., NeurIPS 2021)
``Residual``            ``X + F(X)``, ``F`` ends with SN           Spikformer (Zhou et al., ICLR 2023)
``SpikeDrivenResidual`` ``X + F(X)``, ``F`` *starts* with SN       Spikingformer (Zhou et al., arXiv 2304.11954)
======================  =========================================  ===========================================

``S`` are spikes and ``X`` a real-valued stream. In the last form every synaptic layer inside ``F`` sees
binary spikes, which is what makes Spikingformer spike-driven; Spikformer's sum of spikes is an integer
tensor that the next block's convs multiply (a MAC, not an AC).
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["SEW_FUNCTIONS", "sew_function", "SEWResidual", "SpikingResidual", "Residual", "SpikeDrivenResidual",
           "starts_with_neuron"]

SEW_FUNCTIONS = ("ADD", "AND", "IAND")
"""SEW ResNet's connect functions ``g(S, A)``: ``ADD`` ``S + A``, ``AND`` ``S·A``, ``IAND`` ``(1 − S)·A``."""


def sew_function(a: Tensor, s: Tensor, cnf: str) -> Tensor:
    """The spike-element-wise function ``g(A, S)``: ADD ``A + S``; AND ``A ⊙ S``; IAND ``(1 − A) ⊙ S``.

    ``A`` is the residual branch's output spikes and ``S`` the shortcut's. ADD and IAND are the identity
    when ``A ≡ 0``, AND when ``A ≡ 1``.
    """
    if cnf == "ADD":
        return a + s
    if cnf == "AND":
        return a * s
    if cnf == "IAND":
        return (1.0 - a) * s
    raise ValueError(f"unknown SEW function cnf={cnf!r}; choose one of {SEW_FUNCTIONS}")


def _check_cnf(cnf: str) -> str:
    if cnf not in SEW_FUNCTIONS:
        raise ValueError(f"unknown SEW function cnf={cnf!r}; choose one of {SEW_FUNCTIONS}")
    return cnf


class SEWResidual(nn.Module):
    """Spike-element-wise residual: ``O = g(F(S), shortcut(S))`` (Fang et al., NeurIPS 2021, arXiv 2102.04159).

    Args:
        branch: ``F``, ending with a spiking neuron (``SN(BN(Conv(SN(BN(Conv(S))))))`` in a basic block).
        cnf: ``"ADD"``, ``"AND"`` or ``"IAND"`` (see ``sew_function``).
        shortcut: identity when ``None``; otherwise a downsampling path that also ends with a neuron,
            ``SN(BN(Conv1×1(S)))``, so both operands of ``g`` are spikes.

    Shapes: ``[T, B, ...] -> [T, B, ...']``.
    """

    def __init__(self, branch: nn.Module, cnf: str = "ADD", shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.branch, self.cnf = branch, _check_cnf(cnf)
        self.shortcut = nn.Identity() if shortcut is None else shortcut

    def forward(self, s: Tensor) -> Tensor:
        return sew_function(self.branch(s), self.shortcut(s), self.cnf)

    def extra_repr(self) -> str:
        return f"cnf={self.cnf!r}"


class SpikingResidual(nn.Module):
    """Plain Spiking ResNet residual: ``O = SN(F(S) + shortcut(S))``, the neuron after the sum.

    Args:
        branch: ``F``, ending with a norm (no neuron): ``BN(Conv(SN(BN(Conv(S)))))``.
        neuron: the neuron applied to the sum.
        shortcut: identity when ``None``, else ``BN(Conv1×1(S))``.
    """

    def __init__(self, branch: nn.Module, neuron: nn.Module, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.branch, self.sn = branch, neuron
        self.shortcut = nn.Identity() if shortcut is None else shortcut

    def forward(self, s: Tensor) -> Tensor:
        return self.sn(self.branch(s) + self.shortcut(s))


class Residual(nn.Module):
    """``X + F(X)``: Spikformer's residual, where ``F`` ends with a neuron, so ``X`` is a sum of spikes
    (integers ≥ 0) that the next block's synaptic layers receive."""

    def __init__(self, branch: nn.Module) -> None:
        super().__init__()
        self.branch = branch

    def forward(self, x: Tensor) -> Tensor:
        return x + self.branch(x)


def starts_with_neuron(module: nn.Module) -> bool:
    """Whether ``module`` fires before its first synaptic layer: a ``Sequential`` whose first child is a
    spiking neuron, or a module that declares ``spike_driven = True``."""
    from ..neurons import PSN, SlidingPSN, SpikingNeuron
    if getattr(module, "spike_driven", False):
        return True
    if isinstance(module, nn.Sequential) and len(module) > 0:
        return isinstance(module[0], SpikingNeuron | PSN | SlidingPSN) or starts_with_neuron(module[0])
    return False


class SpikeDrivenResidual(Residual):
    """Spikingformer's spike-driven (pre-activation) residual: ``X + F(X)`` with ``F = … ∘ SN``.

    The stream ``X`` carries real-valued, membrane-like sums; each branch begins with a spiking neuron,
    so every conv/linear inside it multiplies binary spikes (Zhou et al., arXiv 2304.11954).

    Args:
        branch: ``F``; must start with a neuron (``starts_with_neuron``), else ``ValueError``.
    """

    def __init__(self, branch: nn.Module) -> None:
        if not starts_with_neuron(branch):
            raise ValueError(f"SpikeDrivenResidual: the branch {type(branch).__name__} must begin with a spiking "
                             "neuron (a Sequential whose first child is one, or a module with spike_driven=True)")
        super().__init__(branch)

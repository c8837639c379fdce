"""How spikeforge's discrete neurons map to NIR's continuous-time nodes, in both directions.

NIR (Pedersen et al., Nature Communications 2024) describes neurons by ODEs; a simulator steps them with
its own ``dt`` (seconds). spikeforge's neurons are the forward-Euler steps of the same ODEs with the leak
``λ = dt_sf/τ`` computed by ``euler_leak`` (``τ`` and ``dt_sf`` in one unit, steps by default). With
``dt`` the duration of one spikeforge step, the Euler step of NIR's

* ``LIF``: ``τ_n·dv/dt = (v_leak − v) + r·I``, i.e. ``v ← v + (dt/τ_n)·((v_leak − v) + r·I)``, equals
  spikeforge's ``H = V + λ·(X − (V − V_reset))`` (``decay_input=True``) when ``τ_n = dt/λ``, ``r = 1``,
  ``v_leak = V_reset``; and ``H = V − λ·(V − V_reset) + X`` (``decay_input=False``) when additionally
  ``r = 1/λ = τ_n/dt``;
* ``IF``: ``dv/dt = r·I``, i.e. ``v ← v + dt·r·I``, equals ``H = V + X`` when ``r = 1/dt``;
* ``LI`` (the leaky-integrator readout, no spikes): as ``LIF`` with ``v_leak = V_rest``;
* ``CubaLIF``: ``τ_s·dI/dt = −I + w_in·S``, ``τ_m·dv/dt = (v_leak − v) + r·I``, stepped current first and
  the membrane with the new current (snnTorch's ``Synaptic`` order), equals ``CUBALIF`` when
  ``τ_s = dt/λ_s``, ``τ_m = dt/λ``, ``r = 1``, ``v_leak = V_reset`` and ``w_in = 1`` (``decay_input=True``:
  ``I' = I + λ_s·(X − I)``) or ``w_in = 1/λ_s`` (``decay_input=False``: ``I' = I − λ_s·I + X``).

Firing: NIR fires on ``v > v_threshold`` and resets to ``v_reset``; spikeforge fires on ``H ≥ V_th``. In
float32 ``H ≥ V_th ⇔ H > nextafter(V_th, −∞)``, so the exported threshold is that float32 neighbour (and
the importer takes ``nextafter(θ, +∞)``): ties, common with integer-valued weights, fire the same way in
both. A soft (subtractive) reset has no NIR form and is refused.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..core import UserError
from ..neurons import CUBALIF, IF, LI, LIF, euler_leak

__all__ = ["NIRExportError", "NIRImportError", "require_nir", "lif_to_nir", "if_to_nir", "cubalif_to_nir", "li_to_nir",
           "nir_threshold", "sf_threshold", "lif_from_nir", "if_from_nir", "cubalif_from_nir", "li_from_nir"]


class NIRExportError(UserError, ValueError):
    """A module, or a setting of one, that NIR cannot express; the message names the module and why."""


class NIRImportError(UserError, ValueError):
    """A NIR graph, node or parameter spikeforge cannot run as it means; the message names the node."""


def require_nir() -> Any:
    """The ``nir`` package, or one line naming the extra to install."""
    try:
        import nir
    except ImportError:
        raise NIRImportError("NIR export and import need the nir package: pip install 'spikeforge[nir]'") from None
    return nir


def nir_threshold(v_th: float) -> float:
    """The NIR threshold (fire on ``>``) equivalent to spikeforge's ``≥ v_th`` in float32."""
    return float(np.nextafter(np.float32(v_th), np.float32(-np.inf)))


def sf_threshold(theta: float) -> float:
    """spikeforge's threshold (fire on ``≥``) equivalent to NIR's ``> θ`` in float32."""
    return float(np.nextafter(np.float32(theta), np.float32(np.inf)))


def _scalar(module: Any, name: str, value: Any, where: str) -> float:
    if hasattr(value, "numel"):
        if value.numel() != 1:
            raise NIRExportError(f"{where}: {name} holds {value.numel()} values; only one per layer is exported")
        value = value.item()
    return float(value)


def _full(shape: tuple[int, ...], value: float) -> np.ndarray:
    return np.full(shape, value, dtype=np.float64)


def _spike_fields(neuron: Any, where: str) -> tuple[float, float]:
    if neuron.v_reset is None:
        raise NIRExportError(f"{where}: {type(neuron).__name__} has a soft (subtractive) reset (v_reset=None); "
                             "NIR neurons reset to v_reset, so it cannot be exported")
    v_th = _scalar(neuron, "v_threshold", neuron.v_threshold, where)
    if getattr(neuron, "quantizer", None) is not None:
        raise NIRExportError(f"{where}: a quantised membrane (StateQuantizer) has no NIR form")
    return v_th, float(neuron.v_reset)


def lif_to_nir(neuron: LIF, shape: tuple[int, ...], dt: float, where: str) -> Any:
    """The ``nir.LIF`` of a spikeforge ``LIF`` over neurons of ``shape`` (one step lasting ``dt`` s)."""
    import nir

    if neuron.leak_shift is not None:
        raise NIRExportError(f"{where}: LIF(shift_leak=True) floors its leak (integer hardware); NIR's LIF "
                             "has no floor, so it is not exported")
    v_th, v_reset = _spike_fields(neuron, where)
    lam = float(euler_leak(neuron.tau, neuron.dt))
    tau_n = dt / lam
    r = 1.0 if neuron.decay_input else 1.0 / lam
    return nir.LIF(tau=_full(shape, tau_n), r=_full(shape, r), v_leak=_full(shape, v_reset),
                   v_threshold=_full(shape, nir_threshold(v_th)), v_reset=_full(shape, v_reset))


def if_to_nir(neuron: IF, shape: tuple[int, ...], dt: float, where: str) -> Any:
    """The ``nir.IF`` of a spikeforge ``IF``."""
    import nir

    v_th, v_reset = _spike_fields(neuron, where)
    return nir.IF(r=_full(shape, 1.0 / dt), v_threshold=_full(shape, nir_threshold(v_th)),
                  v_reset=_full(shape, v_reset))


def cubalif_to_nir(neuron: CUBALIF, shape: tuple[int, ...], dt: float, where: str) -> Any:
    """The ``nir.CubaLIF`` of a spikeforge ``CUBALIF``."""
    import nir

    v_th, v_reset = _spike_fields(neuron, where)
    lam, lam_s = float(euler_leak(neuron.tau, neuron.dt)), float(euler_leak(neuron.tau_syn, neuron.dt))
    w_in = 1.0 if neuron.decay_input else 1.0 / lam_s
    return nir.CubaLIF(tau_syn=_full(shape, dt / lam_s), tau_mem=_full(shape, dt / lam), r=_full(shape, 1.0),
                       v_leak=_full(shape, v_reset), v_threshold=_full(shape, nir_threshold(v_th)),
                       v_reset=_full(shape, v_reset), w_in=_full(shape, w_in))


def li_to_nir(neuron: LI, shape: tuple[int, ...], dt: float, where: str) -> Any:
    """The ``nir.LI`` of a spikeforge ``LI`` readout."""
    import nir

    lam = float(euler_leak(neuron.tau, neuron.dt))
    return nir.LI(tau=_full(shape, dt / lam), r=_full(shape, 1.0 if neuron.decay_input else 1.0 / lam),
                  v_leak=_full(shape, neuron.v_rest))


def _uniform(node: Any, field: str, where: str) -> float:
    a = np.asarray(getattr(node, field), dtype=np.float64)
    if a.size == 0:
        raise NIRImportError(f"{where}: {field} is empty")
    if not np.all(a == a.flat[0]):
        raise NIRImportError(f"{where}: {field} differs between neurons ({a.min():.6g} … {a.max():.6g}); "
                             "spikeforge layers share one value per layer")
    v = float(a.flat[0])
    if not math.isfinite(v):
        raise NIRImportError(f"{where}: {field} = {v} is not finite")
    return v


def _reset(node: Any, where: str) -> float:
    return 0.0 if node.v_reset is None else _uniform(node, "v_reset", where)


def _steps(node: Any, field: str, dt: float, where: str) -> float:
    """The time constant ``field`` of ``node`` in steps of ``dt`` (so ``euler_leak(τ, 1) = dt/τ_n``); one shorter
    than a step would make the Euler step overshoot."""
    tau = _uniform(node, field, where)
    if not tau >= dt:
        raise NIRImportError(f"{where}: {field} = {tau:.6g} s is shorter than dt = {dt:.6g} s (the Euler step "
                             "would overshoot); import with a smaller dt")
    return tau / dt


def _rest(node: Any, where: str, family: str) -> float:
    """``v_reset``, which must equal ``v_leak``: a spikeforge neuron leaks towards its reset potential."""
    v_leak, v_reset = _uniform(node, "v_leak", where), _reset(node, where)
    if v_leak != v_reset:
        raise NIRImportError(f"{where}: v_leak = {v_leak} differs from v_reset = {v_reset}; spikeforge's {family} "
                             "leaks towards its reset potential")
    return v_reset


def lif_from_nir(node: Any, dt: float, where: str, **neuron_kw: Any) -> tuple[LIF, float]:
    """A spikeforge ``LIF`` equal to the Euler step of ``node`` (a ``nir.LIF``) at ``dt``, and the factor
    its input must be scaled by first (1 when ``r`` is one of the two forms above)."""
    tau, r = _steps(node, "tau", dt, where), _uniform(node, "r", where)
    v_reset = _rest(node, where, "LIF")
    v_th = sf_threshold(_uniform(node, "v_threshold", where))
    if math.isclose(r / tau, 1.0, rel_tol=1e-12) and r != 1.0:
        return LIF(tau=tau, decay_input=False, v_threshold=v_th, v_reset=v_reset, **neuron_kw), 1.0
    return LIF(tau=tau, decay_input=True, v_threshold=v_th, v_reset=v_reset, **neuron_kw), r


def if_from_nir(node: Any, dt: float, where: str, **neuron_kw: Any) -> tuple[IF, float]:
    """A spikeforge ``IF`` equal to the Euler step of ``node`` (a ``nir.IF``), and its input scale ``r·dt``."""
    r = _uniform(node, "r", where)
    v_th = sf_threshold(_uniform(node, "v_threshold", where))
    gain = 1.0 if math.isclose(r * dt, 1.0, rel_tol=1e-12) else r * dt
    return IF(v_threshold=v_th, v_reset=_reset(node, where), **neuron_kw), gain


def cubalif_from_nir(node: Any, dt: float, where: str, **neuron_kw: Any) -> tuple[CUBALIF, float]:
    """A spikeforge ``CUBALIF`` equal to ``node`` (a ``nir.CubaLIF``) stepped at ``dt``, and its input scale."""
    tau_m, tau_s = _steps(node, "tau_mem", dt, where), _steps(node, "tau_syn", dt, where)
    r, w_in = _uniform(node, "r", where), _uniform(node, "w_in", where)
    v_reset = _rest(node, where, "CUBALIF")
    v_th = sf_threshold(_uniform(node, "v_threshold", where))
    kw = dict(tau=tau_m, tau_syn=tau_s, v_threshold=v_th, v_reset=v_reset, **neuron_kw)
    if math.isclose(r * w_in / tau_s, 1.0, rel_tol=1e-12) and w_in != 1.0:
        return CUBALIF(decay_input=False, **kw), 1.0
    return CUBALIF(decay_input=True, **kw), r * w_in


def li_from_nir(node: Any, dt: float, where: str) -> tuple[LI, float]:
    """A spikeforge ``LI`` equal to ``node`` (a ``nir.LI``) stepped at ``dt``, and its input scale."""
    tau, r, v_leak = _steps(node, "tau", dt, where), _uniform(node, "r", where), _uniform(node, "v_leak", where)
    if math.isclose(r / tau, 1.0, rel_tol=1e-12) and r != 1.0:
        return LI(tau=tau, v_rest=v_leak, decay_input=False), 1.0
    return LI(tau=tau, v_rest=v_leak, decay_input=True), r

"""Integer state on the fused CPU kernels: exact ops compile to integer code that equals the torch loop;
everything else declines (``why_not``) and runs on the loop without a warning."""

from __future__ import annotations

import pytest
import torch

from spikeforge import neurons as N
from spikeforge.core import resolve_backend


def _both(m: torch.nn.Module, x: torch.Tensor):
    m.backend = "cpu"
    a = m.run(x)
    m.backend = "torch"
    b = m.run(x)
    return a, b


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
@pytest.mark.parametrize("decay_input", [True, False])
@pytest.mark.parametrize("v_reset", [0.0, None])
def test_integer_lif_equals_the_torch_loop(dtype: torch.dtype, decay_input: bool, v_reset: float | None) -> None:
    torch.manual_seed(0)
    m = N.LIF(tau=4.0, shift_leak=True, v_threshold=5.0, v_reset=v_reset, decay_input=decay_input)
    x = torch.randint(-4, 24 if decay_input else 7, (40, 3, 67), dtype=dtype)    # 67: vector body + scalar tail
    (sa, fa), (sb, fb) = _both(m, x)
    assert sa.dtype == dtype and fa.v.dtype == dtype
    assert torch.equal(sa, sb) and torch.equal(fa.v, fb.v)
    assert 0.05 < float(sa.float().mean()) < 0.6           # the case fires, and not always
    assert resolve_backend("auto", N.lif_step, x, m.init_state(x[0]), m.params()).name == "cpu"


def test_integer_if_with_per_neuron_thresholds() -> None:
    th = torch.tensor([2.0, 3.0, 5.0]).repeat(11)[:32]
    m = N.IF(v_threshold=th, v_reset=None)
    x = torch.randint(-1, 4, (25, 2, 32), dtype=torch.int32)
    (sa, fa), (sb, fb) = _both(m, x)
    assert torch.equal(sa, sb) and torch.equal(fa.v, fb.v) and int(sa.sum()) > 0


def test_the_float_twin_of_a_shift_leak_lif_fires_alike() -> None:
    """Floor shifts on a float state that holds integers give the integer model's spikes."""
    m = N.LIF(tau=2.0, shift_leak=True, v_threshold=4.0)
    x = torch.randint(0, 12, (30, 4, 20), dtype=torch.int32)
    assert torch.equal(m(x).float(), m(x.float()))


def test_inexact_integer_steps_decline_quietly() -> None:
    """The Euler leak 0.5 (and ALIF's, and any transcendental) is not exact in integers: ``cpu`` names the
    reason, ``auto`` runs the torch loop (a BackendFallbackWarning would fail this test suite)."""
    x = torch.randint(0, 3, (6, 2, 8), dtype=torch.int32)
    for m, step in ((N.LIF(tau=2.0), N.lif_step), (N.ALIF(), N.alif_step)):
        st = m.init_state(x[0])
        assert resolve_backend("auto", step, x, st, m.params()).name == "torch"
        with pytest.raises(RuntimeError, match="backend 'cpu' cannot run .*: integer state"):
            resolve_backend("cpu", step, x, st, m.params())
    m = N.IF(v_threshold=torch.full((8,), 1.5))
    with pytest.raises(RuntimeError, match=r"a parameter value the step reads is not an integer \(a tensor"):
        resolve_backend("cpu", N.if_step, x, m.init_state(x[0]), m.params())
    m = N.LIF(tau=3.0)
    with pytest.raises(ValueError, match="shift_leak needs tau/dt to be a power of two"):
        N.LIF(tau=3.0, shift_leak=True)
    assert m.leak_shift is None

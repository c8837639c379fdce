"""Bad input to a neuron is refused where it is given, naming it; an empty batch works on every backend."""

from __future__ import annotations

import pytest
import torch

from spikeforge import neurons as N
from spikeforge.neurons.scan import available_backends


def test_an_unknown_backend_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match=r"LIF: unknown backend 'gpu'; choose 'auto' or one of \['torch', 'cpu'"):
        N.LIF(backend="gpu")


@pytest.mark.parametrize("dtype", [torch.bool, torch.complex64])
def test_bool_and_complex_inputs_name_the_dtype(dtype: torch.dtype) -> None:
    with pytest.raises(TypeError, match=f"LIF expects a real-valued input .*, got {dtype}"):
        N.LIF()(torch.zeros(3, 2, 4, dtype=dtype))


@pytest.mark.parametrize("backend", [b for b in available_backends() if b != "triton"])
def test_an_empty_batch_works_on_every_backend(backend: str) -> None:
    m = N.ALIF(backend=backend)
    x = torch.randn(5, 0, 3, requires_grad=True)
    spikes, (v, a) = m.run(x)
    assert spikes.shape == (5, 0, 3) and v.shape == (0, 3) and a.shape == (0, 3)
    spikes.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape

"""``peak_memory_bytes``: what a forward allocates, counted exactly."""

from __future__ import annotations

import torch

from spikeforge.analysis import peak_memory_bytes


def test_peak_memory_counts_what_the_forward_allocates() -> None:
    class Big(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            a = x * 2            # 4 MiB alive ...
            b = a + 1            # ... with 4 more: the peak
            return b.sum()       # 4 bytes more

    x = torch.ones(1024, 1024)
    assert peak_memory_bytes(Big(), x) == 2 * 4 * 2**20 + 4         # a, b and the 0-d sum

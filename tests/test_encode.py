"""Encoders and decoders: numbers, reproducibility, round trips, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from spikeforge import encode


def test_direct_repeats_without_copy() -> None:
    x = torch.rand(2, 3)
    d = encode.direct(x, 4)
    assert d.shape == (4, 2, 3) and torch.equal(d[3], x) and d.data_ptr() == x.data_ptr()


def test_bernoulli_rate_matches_probability_and_seed() -> None:
    x = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0]).repeat(2000, 1)
    s = encode.rate(x, T=50, generator=torch.Generator().manual_seed(1))
    r = s.mean(dim=(0, 1))
    assert r[0] == 0 and r[4] == 1
    torch.testing.assert_close(r[1:4], torch.tensor([0.1, 0.5, 0.9]), atol=0.005, rtol=0)
    s2 = encode.rate(x, T=50, generator=torch.Generator().manual_seed(1))
    assert torch.equal(s, s2)


def test_poisson_rate_is_one_minus_exp() -> None:
    x = torch.full((20000,), 0.5)
    s = encode.rate(x, T=20, method="poisson", gain=2.0, generator=torch.Generator().manual_seed(0))
    assert abs(s.mean().item() - (1 - math.exp(-1.0))) < 0.005


def test_latency_times_and_train() -> None:
    x = torch.tensor([[0.0, 0.25, 0.5, 1.0]])
    t = encode.latency(x, T=5, output="times")
    assert t.tolist() == [[math.inf, 3.0, 2.0, 0.0]]
    train = encode.latency(x, T=5)
    assert train.shape == (5, 1, 4) and train.sum(0).tolist() == [[0.0, 1.0, 1.0, 1.0]]
    assert encode.first_spike_time(train).tolist() == t.tolist()
    # log coding: brighter fires earlier, times within [0, T-1], the threshold input is silent
    tl = encode.latency(torch.tensor([0.01, 0.05, 0.5, 1.0]), T=10, method="log", output="times")
    assert math.isinf(tl[0]) and tl[1] > tl[2] > tl[3] >= 0 and tl[1] <= 9
    assert tl[3].item() == pytest.approx(5.0 * math.log(1 / 0.99), rel=1e-5)


def test_decoders() -> None:
    s = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    assert encode.rate_decode(s).tolist() == pytest.approx([2 / 3, 1 / 3])
    assert encode.count_decode(s).tolist() == [2.0, 1.0]
    assert encode.first_spike_time(s).tolist() == [0.0, 2.0]


def test_bad_input() -> None:
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\].*max 1.5"):
        encode.rate(torch.tensor([0.2, 1.5]), T=3)
    with pytest.raises(ValueError, match="T must be a positive integer"):
        encode.direct(torch.rand(2), 0)
    with pytest.raises(ValueError, match="gain·x exceeds 1"):
        encode.rate(torch.tensor([0.6]), T=3, gain=2.0)
    with pytest.raises(TypeError, match="floating tensor"):
        encode.latency(torch.tensor([1, 2]), T=3)

"""Train a small spiking network on scikit-learn's digits (offline) and print the test accuracy.

Rate-coded 8×8 images (T steps of Bernoulli spikes) → Linear → LIF → Linear → LIF; the loss is
cross-entropy on the output firing rates; surrogate-gradient BPTT through the LIF neurons.

    python examples/demo_digits.py [--epochs 30] [--T 8] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from spikeforge import encode
from spikeforge.neurons import LIF
from spikeforge.surrogate import ATan


def load(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover
        raise SystemExit("the demo needs scikit-learn: pip install 'spikeforge[data]'") from e
    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target)
    # a fixed stratified split: every 5th sample of each class is test
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(d.target == c))
        test[idx[: len(idx) // 5]] = True
    return x[~test], y[~test], x[test], y[test]


class Net(nn.Module):
    def __init__(self, hidden: int = 128) -> None:
        super().__init__()
        neuron = dict(tau=2.0, surrogate=ATan(alpha=2.0), detach_reset=True)
        self.fc1, self.lif1 = nn.Linear(64, hidden), LIF(**neuron)
        self.fc2, self.lif2 = nn.Linear(hidden, 10), LIF(**neuron)

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:     # [T, B, 64] -> spikes [T, B, 10]
        return self.lif2(self.fc2(self.lif1(self.fc1(x_seq))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--T", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    xtr, ytr, xte, yte = load(args.seed)
    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        perm = torch.randperm(len(ytr), generator=gen)
        total = 0.0
        for i in range(0, len(perm), 64):
            b = perm[i:i + 64]
            rate = net(encode.rate(xtr[b], args.T, generator=gen)).mean(0)
            loss = nn.functional.cross_entropy(rate * 10, ytr[b])    # rates in [0, 1] → logits
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(b)
        if epoch % 10 == 9 or epoch == args.epochs - 1:
            print(f"epoch {epoch + 1:3d}  train loss {total / len(ytr):.4f}")
    with torch.no_grad():
        pred = net(encode.rate(xte, args.T, generator=gen)).mean(0).argmax(1)
    acc = (pred == yte).float().mean().item()
    print(f"test accuracy {acc * 100:.2f}% on {len(yte)} held-out digits "
          f"(T={args.T}, {args.epochs} epochs, {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()

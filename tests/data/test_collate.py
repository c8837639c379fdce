"""Time-first collation: ``[T, B, ...]`` stacks, and padding with a ``[T_max, B]`` mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from spikeforge.data.collate import (
    PadCollate,
    TimeFirstCollate,
    pad_collate,
    padded_sequence_mask,
    time_first_collate,
)
from spikeforge.data.events import make_events
from spikeforge.data.transforms import to_frames_by_duration


def sample(T, label, seed=0, shape=(2, 3, 4)):
    return np.random.default_rng(seed).integers(0, 9, (T, *shape)).astype(np.uint8), label


def test_time_first_stack():
    batch = [sample(5, i, seed=i) for i in range(3)]
    frames, labels = time_first_collate(batch)
    assert frames.shape == (5, 3, 2, 3, 4) and frames.dtype == torch.float32
    for b, (f, _) in enumerate(batch):
        np.testing.assert_array_equal(frames[:, b].numpy(), f)
    assert labels.tolist() == [0, 1, 2]


def test_time_first_rejects_ragged_batches_with_a_hint():
    with pytest.raises(ValueError, match=r"different lengths T = \[5, 4\]; use pad_collate"):
        time_first_collate([sample(5, 0), sample(4, 1)])


def test_pad_collate_pads_masks_and_keeps_each_sample():
    batch = [sample(T, i, seed=i) for i, T in enumerate([3, 6, 1])]
    frames, mask, labels = pad_collate(batch, pad_value=-1)
    assert frames.shape == (6, 3, 2, 3, 4) and mask.shape == (6, 3) and mask.dtype == torch.bool
    assert mask.sum(0).tolist() == [3, 6, 1]
    assert mask[:, 0].tolist() == [True] * 3 + [False] * 3
    for b, (f, _) in enumerate(batch):
        T = f.shape[0]
        np.testing.assert_array_equal(frames[:T, b].numpy(), f)
        assert torch.all(frames[T:, b] == -1)
    assert labels.tolist() == [0, 1, 2]


def test_pad_collate_on_equal_lengths_is_the_plain_stack():
    batch = [sample(4, i, seed=i) for i in range(2)]
    frames, mask, _ = pad_collate(batch)
    assert torch.equal(frames, time_first_collate(batch)[0]) and bool(mask.all())


def test_padded_sequence_mask():
    m = padded_sequence_mask([2, 0, 3], T_max=4)
    assert m.T.tolist() == [[True, True, False, False], [False] * 4, [True, True, True, False]]
    with pytest.raises(ValueError, match="shorter than the longest"):
        padded_sequence_mask([5], T_max=3)
    with pytest.raises(ValueError, match="lengths must be"):
        padded_sequence_mask([-1])


def test_dtypes_bare_frames_tensors_and_extra_items():
    frames, labels = time_first_collate([np.ones((2, 3), np.uint16)] * 2, dtype=None)
    assert frames.dtype == torch.uint16 and labels is None
    frames, mask, labels = pad_collate([torch.ones(2, 3, dtype=torch.int32),
                                        torch.ones(1, 3, dtype=torch.float64)], dtype=None)
    assert frames.dtype == torch.float64 and labels is None
    _, labels = time_first_collate([(np.zeros((2, 1)), 1, "a"), (np.zeros((2, 1)), 0, "b")])
    assert labels[0].tolist() == [1, 0] and list(labels[1]) == ["a", "b"]


def test_collate_errors_name_the_sample():
    with pytest.raises(ValueError, match="sample 1 has frames of shape"):
        pad_collate([sample(2, 0), sample(2, 1, shape=(2, 3, 5))])
    with pytest.raises(ValueError, match="empty batch"):
        pad_collate([])
    with pytest.raises(TypeError, match="sample 0: frames must be a numpy array or torch tensor"):
        pad_collate([([1, 2], 0)])
    with pytest.raises(ValueError, match="mix of bare frames"):
        pad_collate([np.zeros((1, 2)), (np.zeros((1, 2)), 0)])


class _VariableDurationDataset(torch.utils.data.Dataset):
    """Recordings of different lengths, framed in 1 ms windows: T varies per sample."""

    def __init__(self) -> None:
        self.spans = [2500, 9999, 4000, 500]

    def __len__(self) -> int:
        return len(self.spans)

    def __getitem__(self, i):
        n = 50
        t = np.linspace(0, self.spans[i], n).astype(np.int64)
        ev = make_events(t, np.arange(n) % 4, np.arange(n) % 3, np.arange(n) % 2)
        return to_frames_by_duration(ev, (4, 3, 2), 1000), i


def test_dataloader_with_variable_length_frames():
    loader = DataLoader(_VariableDurationDataset(), batch_size=4, collate_fn=PadCollate())
    frames, mask, labels = next(iter(loader))
    assert frames.shape == (10, 4, 2, 3, 4)
    assert mask.sum(0).tolist() == [3, 10, 5, 1]
    assert frames.sum(dim=(0, 2, 3, 4)).tolist() == [50.0] * 4
    assert labels.tolist() == [0, 1, 2, 3]
    loader = DataLoader([sample(3, i) for i in range(4)], batch_size=2,
                        collate_fn=TimeFirstCollate(dtype=torch.float16))
    frames, labels = next(iter(loader))
    assert frames.shape == (3, 2, 2, 3, 4) and frames.dtype == torch.float16

"""Neuromorphic data: the event record, file readers and writers, datasets, transforms, cache, emulator.

    from spikeforge import data
    ev = data.read_events("recording.aedat4")                 # Events(events, sensor_size)
    frames = data.to_frames(ev.events, ev.sensor_size, n_bins=16)  # [16, 2, H, W]
    ds = data.EmulatedNMNIST(source="digits", transform=data.ToFrames(n_bins=8))

Submodules: ``events`` (the record), ``formats`` (one reader/writer per file format), ``transforms``
(events → tensors, augmentations), ``collate`` (time-first batches), ``datasets`` (local-file datasets),
``cache`` (atomic, validated on-disk cache), ``emulate`` (N-MNIST-style saccades from images).
"""

from . import datasets, formats, transforms
from .cache import CachedDataset, CacheRepairWarning, CacheReport, cache_key
from .collate import (
    PadCollate,
    TimeFirstCollate,
    batch_loader,
    pad_collate,
    padded_sequence_mask,
    time_first_collate,
    to_time_first,
)
from .datasets import (
    ASLDVS,
    CIFAR10DVS,
    DATASETS,
    HARDVS,
    NCARS,
    NMNIST,
    SHD,
    SSC,
    Bullying10K,
    DataBundle,
    DatasetLayoutError,
    DVS128Gesture,
    DVSLip,
    EmulatedNMNIST,
    ESImageNet,
    NavGesture,
    NCaltech101,
    SpeechCommands,
    build_dataset,
    list_datasets,
)
from .emulate import SaccadeParams, emulate_image, emulate_saccades, saccade_path
from .events import EVENT_DTYPE, Events, check_events, make_events
from .formats import EventFormatError, available_formats, read_events, write_events
from .transforms import (
    ToFrames,
    ToFramesByDuration,
    ToFramesByEventCount,
    ToTimeSurface,
    ToVoxelGrid,
    to_frames,
    to_frames_by_duration,
    to_frames_by_event_count,
    to_time_surface,
    to_voxel_grid,
)

__all__ = [
    "EVENT_DTYPE", "Events", "check_events", "make_events",
    "read_events", "write_events", "available_formats", "EventFormatError",
    "to_frames", "to_frames_by_duration", "to_frames_by_event_count", "to_voxel_grid", "to_time_surface",
    "ToFrames", "ToFramesByDuration", "ToFramesByEventCount", "ToVoxelGrid", "ToTimeSurface",
    "time_first_collate", "pad_collate", "padded_sequence_mask", "TimeFirstCollate", "PadCollate",
    "batch_loader", "to_time_first", "DATASETS", "DataBundle", "build_dataset", "list_datasets",
    "CachedDataset", "CacheRepairWarning", "CacheReport", "cache_key",
    "SaccadeParams", "emulate_saccades", "emulate_image", "saccade_path",
    "NMNIST", "NCaltech101", "DVS128Gesture", "CIFAR10DVS", "SHD", "SSC", "SpeechCommands", "ASLDVS", "DVSLip",
    "NCARS", "NavGesture", "ESImageNet", "HARDVS", "Bullying10K", "EmulatedNMNIST", "DatasetLayoutError",
    "datasets", "formats", "transforms",
]

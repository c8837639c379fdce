"""Event transforms: events → tensors (frames, voxel grids, time surfaces), filters, augmentations,
super-resolution.

Pure functions ``f(events, sensor_size, ...)`` on structured ``EVENT_DTYPE`` arrays, each with a
thin dataclass wrapper that also takes an :class:`~spikeforge.data.events.Events`. Random ones
take an explicit seed or ``numpy.random.Generator``. Frames are ``[T, 2, H, W]``, channel 0 = OFF,
1 = ON.
"""

from .drop import (
    DropEvent,
    DropEventByArea,
    DropEventByTime,
    RandomTemporalDelete,
    drop_by_area,
    drop_by_time,
    drop_event,
    random_temporal_delete,
)
from .filters import Denoise, Refractory, denoise, refractory
from .frames import (
    ToFrames,
    ToFramesByDuration,
    ToFramesByEventCount,
    to_frames,
    to_frames_by_duration,
    to_frames_by_event_count,
)
from .geometry import (
    CenterCrop,
    Downsample,
    RandomCrop,
    RandomFlipLR,
    RandomFlipPolarity,
    RandomFlipUD,
    center_crop,
    crop,
    downsample,
    flip_lr,
    flip_polarity,
    flip_ud,
    random_crop,
)
from .representations import ToTimeSurface, ToVoxelGrid, to_time_surface, to_voxel_grid
from .superres import SuperResolve, super_resolve
from .timing import (
    CropTime,
    RandomTimeReversal,
    TimeJitter,
    TimeSkew,
    crop_time,
    time_jitter,
    time_reversal,
    time_skew,
)

__all__ = [
    # events -> tensors
    "to_frames", "to_frames_by_duration", "to_frames_by_event_count", "to_voxel_grid",
    "to_time_surface", "ToFrames", "ToFramesByDuration", "ToFramesByEventCount", "ToVoxelGrid",
    "ToTimeSurface",
    # filters
    "denoise", "refractory", "Denoise", "Refractory",
    # geometry
    "downsample", "crop", "center_crop", "random_crop", "flip_lr", "flip_ud", "flip_polarity",
    "Downsample", "CenterCrop", "RandomCrop", "RandomFlipLR", "RandomFlipUD", "RandomFlipPolarity",
    # timing
    "crop_time", "time_jitter", "time_skew", "time_reversal", "CropTime", "TimeJitter", "TimeSkew",
    "RandomTimeReversal",
    # dropping
    "drop_event", "drop_by_time", "drop_by_area", "random_temporal_delete", "DropEvent",
    "DropEventByTime", "DropEventByArea", "RandomTemporalDelete",
    # super-resolution
    "super_resolve", "SuperResolve",
]

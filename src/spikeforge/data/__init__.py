"""Neuromorphic data: the event record, file readers and writers, datasets, transforms, cache, emulator."""

from .events import EVENT_DTYPE, Events, check_events, make_events

__all__ = ["EVENT_DTYPE", "Events", "check_events", "make_events"]

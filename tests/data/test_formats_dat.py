"""Prophesee DAT: hand-packed events at the 14-bit limits, the pre-Version-2 layout, errors, the two
real files."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from spikeforge.data.formats import prophesee_dat, read_events, write_events
from tests.conftest import real_file
from tests.data.test_formats_common import assert_same, raises_at, random_events

HEAD = b"% Height 16384\n% Version 2\n% Width 16384\n% date 2023-10-19 15:36:14\n"


def ev8(t: int, x: int, y: int, p: int) -> bytes:
    return struct.pack("<II", t, x | (y << 14) | (p << 28))


def test_hand_packed_events_at_the_limits():
    data = HEAD + bytes([0x0C, 8]) + ev8(0, 0, 0, 1) + ev8(2**32 - 1, 16383, 16383, 0)
    ev = prophesee_dat.decode(data)
    assert ev.sensor_size == (16384, 16384, 2) and ev.meta["version"] == 2
    assert ev.events["t"].tolist() == [0, 2**32 - 1]
    assert ev.events["x"].tolist() == [0, 16383] and ev.events["y"].tolist() == [0, 16383]
    assert ev.events["p"].tolist() == [1, 0]


def test_ncars_style_header_without_geometry_and_event2d_type():
    head = b"% Data file containing N9Chronocam7Event2dE events.\n% Version 2\n"
    ev = prophesee_dat.decode(head + bytes([0, 8]) + ev8(5, 77, 3, 1) + ev8(9, 4, 41, 0))
    assert ev.sensor_size == (304, 240, 2) and ev.meta["event_type"] == 0      # Event2D: the ATIS sensor


def test_version_1_layout():
    w = 300 | (200 << 9) | (1 << 17)
    ev = prophesee_dat.decode(b"% Height 240\n% Width 304\n" + bytes([0, 8])
                              + struct.pack("<II", 7, w))
    assert (ev.events["x"][0], ev.events["y"][0], ev.events["p"][0]) == (300, 200, 1)


def test_errors():
    n = len(HEAD)
    with raises_at(n + 2 + 8 + 4, "polarity 0 or 1", "got 3"):
        prophesee_dat.decode(HEAD + bytes([0x0C, 8]) + ev8(1, 1, 1, 1) + ev8(2, 2, 2, 3))
    with raises_at(n, "CD event type", "got 5"):
        prophesee_dat.decode(HEAD + bytes([5, 8]))
    with raises_at(n + 1, "event size 8", "got 16"):
        prophesee_dat.decode(HEAD + bytes([0x0C, 16]))
    with raises_at(n + 2, "8-byte events", "5 left over"):
        prophesee_dat.decode(HEAD + bytes([0x0C, 8]) + b"12345")
    with raises_at(n, "type and size bytes"):
        prophesee_dat.decode(HEAD)
    small = b"% Height 10\n% Version 2\n% Width 10\n"
    with raises_at(len(small) + 2 + 8, "inside the 10×10 sensor", "x=10"):
        prophesee_dat.decode(small + bytes([0x0C, 8]) + ev8(1, 9, 9, 1) + ev8(2, 10, 0, 1))


def test_round_trip(tmp_path):
    ev = random_events(4000, 1280, 720, t_max=2**32, seed=7)
    p = write_events(tmp_path / "x.dat", ev)
    back = read_events(p)
    assert_same(back.events, ev.events)
    assert back.sensor_size == (1280, 720, 2)
    with pytest.raises(ValueError, match="u32"):
        ev.events["t"][0] = -1
        prophesee_dat.encode(ev)


def test_real_ncars_sample():
    ev = read_events(real_file("sample_ncars.dat"))
    e = ev.events
    assert len(e) == 2009 and e["x"].max() <= 77 and e["y"].max() <= 41
    assert e["t"].max() - e["t"].min() <= 100_000 and e["t"].max() - e["t"].min() > 99_000


def test_real_gen4():
    ev = read_events(real_file("gen4.dat"))
    e = ev.events
    assert len(e) == 1_218_618 and ev.sensor_size == (1280, 720, 2)
    assert e["t"][0] == 5_856 and e["t"][-1] == 10_773_853 and np.all(np.diff(e["t"]) >= 0)
    assert int(e["p"].sum()) == 553_295

"""N-MNIST / N-Caltech101 ``.bin``: hand-made 5-byte records, overflow markers, round trips and
the real sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spikeforge.data.events import Events, make_events
from spikeforge.data.formats import nmnist_bin, read_events, write_events
from tests.conftest import real_file
from tests.data.test_formats_common import assert_same, raises_at, random_events


def rec(x: int, y: int, p: int, t: int) -> bytes:
    """One record packed by hand from the byte table (not through the writer)."""
    return bytes([x, y, (p << 7) | (t >> 16), (t >> 8) & 0xFF, t & 0xFF])


def test_hand_made_records_decode_field_by_field():
    data = bytes([0, 0, 0x80, 0, 0]) + bytes([7, 9, 0x01, 2, 3]) + bytes([33, 33, 0x7F, 0xFF, 0xFF])
    ev = nmnist_bin.decode(data)
    assert ev.sensor_size == (34, 34, 2)
    assert ev.events["x"].tolist() == [0, 7, 33] and ev.events["y"].tolist() == [0, 9, 33]
    assert ev.events["p"].tolist() == [1, 0, 0]
    assert ev.events["t"].tolist() == [0, 0x010203, 2**23 - 1]


def test_beyond_34x34_the_sensor_is_the_atis_frame_not_the_events_extent():
    ev = nmnist_bin.decode(rec(255, 3, 1, 5))
    assert ev.sensor_size == (304, 240, 2) and ev.events["x"][0] == 255
    with raises_at(0, "inside the 304×240 sensor", "x=255, y=250"):
        nmnist_bin.decode(rec(255, 250, 1, 5))


def test_out_of_order_times_and_salvage():
    data = rec(1, 1, 1, 50) + rec(2, 2, 0, 40) + rec(3, 3, 1, 60) + rec(40, 3, 1, 70)
    with raises_at(5, "timestamps in order", "t=40 after t=50"):
        nmnist_bin.decode(data)
    ev = nmnist_bin.decode(data, sensor_size=(34, 34), strict=False)
    assert ev.events["t"].tolist() == [50, 60]
    assert ev.meta["dropped"] == {"outside_sensor": 1, "backward_time": 1}


def test_overflow_marker_is_dropped_and_shifts_later_times():
    data = rec(1, 2, 0, 16) + rec(0, 240, 0, 0) + rec(3, 4, 1, 5)
    ev = nmnist_bin.decode(data)
    assert len(ev) == 2 and ev.meta["overflow_markers"] == 1
    assert ev.events["t"].tolist() == [16, 5 + 2**23]
    assert ev.events["y"].tolist() == [2, 4]
    orchard = nmnist_bin.decode(data, overflow_increment=2**13)     # Orchard / Tonic policy
    assert orchard.events["t"].tolist() == [16, 5 + 2**13]


def test_empty_file_is_zero_events():
    ev = nmnist_bin.decode(b"")
    assert len(ev) == 0 and ev.sensor_size == (34, 34, 2)


def test_size_not_multiple_of_five_names_file_and_offset(tmp_path: Path):
    p = tmp_path / "bad.bin"
    p.write_bytes(rec(1, 1, 1, 1) + b"\x01\x02")
    with raises_at(5, str(p), "multiple of 5", "2 left over"):
        read_events(p)


def test_event_outside_given_sensor_names_its_offset():
    data = rec(1, 1, 1, 1) + rec(0, 240, 0, 0) + rec(40, 1, 1, 2)
    with raises_at(10, "inside the 34×34 sensor", "x=40"):
        nmnist_bin.decode(data, sensor_size=(34, 34))


def test_round_trip_random():
    ev = random_events(1000, 34, 34, t_max=2**23, seed=3)
    back = nmnist_bin.decode(b"".join(nmnist_bin.encode(ev)))
    assert_same(back.events, ev.events)


def test_round_trip_past_the_23_bit_clock_inserts_markers(tmp_path: Path):
    ev = random_events(500, 34, 34, t_max=3 * 2**23 + 100, seed=4)
    p = write_events(tmp_path / "long.bin", ev)
    back = read_events(p)
    assert_same(back.events, ev.events)
    assert back.meta["overflow_markers"] == int(ev.events["t"].max() >> 23)


def test_writer_refuses_what_it_cannot_encode():
    ev = Events(make_events([0], [0], [240], [1]), (300, 300, 2))
    with pytest.raises(ValueError, match="overflow marker row"):
        nmnist_bin.encode(ev)
    ev = Events(make_events([2**24, 0], [0, 0], [0, 0], [1, 1]), (34, 34, 2))
    with pytest.raises(ValueError, match="sorted"):
        nmnist_bin.encode(ev)


def test_real_sample_matches_readme_facts():
    ev = read_events(real_file("sample_nmnist.bin"))
    e = ev.events
    assert len(e) == 4325 and ev.sensor_size == (34, 34, 2)
    assert e["x"].min() == 0 and e["x"].max() == 33 and e["y"].min() == 0 and e["y"].max() == 33
    assert int(e["p"].sum()) == 2145 and int((e["p"] == 0).sum()) == 2180
    assert e["t"][0] == 654 and e["t"][-1] == 311_175 and np.all(np.diff(e["t"]) >= 0)
    assert ev.meta["overflow_markers"] == 0


def test_real_sample_equals_plain_numpy_decode():
    data = real_file("sample_nmnist.bin").read_bytes()
    r = np.frombuffer(data, np.uint8).astype(np.uint32)
    t = ((r[2::5] & 0x7F) << 16) | (r[3::5] << 8) | r[4::5]
    ref = make_events(t, r[0::5], r[1::5], r[2::5] >> 7)
    assert_same(nmnist_bin.decode(data).events, ref)

"""AEDAT 3.1 (cAER): files assembled by hand from the packet byte table — there is no real file here
— plus writer round trips and every documented error."""

from __future__ import annotations

import struct

import pytest

from spikeforge.data.formats import aedat31, read_events
from tests.data.test_formats_common import assert_same, raises_at, random_events

HEAD = (b"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: DVS128\r\n"
        b"#Start-Time: 2017-03-04 14:29:21 (TZ+0100)\r\n#!END-HEADER\r\n")


def pkt(etype: int, size: int, events: bytes, *, cap: int, num: int, valid: int, ovf: int = 0,
        tsoff: int = 4) -> bytes:
    """int16 type, int16 source, int32 size, tsOffset, tsOverflow, capacity, number, valid."""
    return struct.pack("<hhiiiiii", etype, 1, size, tsoff, ovf, cap, num, valid) + events


def pol(x: int, y: int, p: int, t: int, valid: int = 1) -> bytes:
    return struct.pack("<Ii", (x << 17) | (y << 2) | (p << 1) | valid, t)


def test_hand_made_file_polarity_special_frame_invalid_capacity_overflow():
    p1 = pkt(1, 8, pol(0, 0, 1, 10) + pol(127, 5, 0, 20) + pol(9, 9, 1, 25, valid=0),
             cap=3, num=3, valid=2)
    special = pkt(0, 8, struct.pack("<Ii", 0x12345678, 21), cap=1, num=1, valid=1)
    frame = pkt(2, 16, bytes(range(32)), cap=2, num=2, valid=2)
    # capacity 3 > number 2: the third slot is garbage that must not be read
    p2 = pkt(1, 8, pol(1, 127, 1, 5, 1) + pol(2, 3, 0, 6) + pol(50, 50, 1, 7),
             cap=3, num=2, valid=2, ovf=1)
    ev = aedat31.decode(HEAD + p1 + special + frame + p2)
    e = ev.events
    assert ev.sensor_size == (128, 128, 2)
    assert e["x"].tolist() == [0, 127, 1, 2] and e["y"].tolist() == [0, 5, 127, 3]
    assert e["p"].tolist() == [1, 0, 1, 0]
    assert e["t"].tolist() == [10, 20, 2**31 + 5, 2**31 + 6]
    assert ev.meta["packets"] == {1: 2, 0: 1, 2: 1} and ev.meta["invalid"] == 1


def test_header_only_file_has_no_events():
    ev = aedat31.decode(HEAD)
    assert len(ev) == 0 and ev.sensor_size == (128, 128, 2)


def test_unknown_packet_type_names_its_offset():
    data = HEAD + pkt(1, 8, pol(0, 0, 1, 1), cap=1, num=1, valid=1) + pkt(99, 8, b"", cap=0,
                                                                           num=0, valid=0)
    with raises_at(len(HEAD) + 36, "known packet eventType", "got 99"):
        aedat31.decode(data)


def test_truncated_packet_and_header():
    full = HEAD + pkt(1, 8, pol(0, 0, 1, 1) + pol(1, 1, 1, 2), cap=2, num=2, valid=2)
    with raises_at(len(HEAD) + 28, "16 bytes of events", "12 bytes left"):
        aedat31.decode(full[:-4])
    with raises_at(len(HEAD), "28-byte packet header", "10 bytes"):
        aedat31.decode(HEAD + b"\x01" * 10)


def test_inconsistent_counts_and_sizes():
    with raises_at(len(HEAD), "eventNumber", "number 3, capacity 2"):
        aedat31.decode(HEAD + pkt(1, 8, bytes(16), cap=2, num=3, valid=0))
    with raises_at(len(HEAD), "polarity events of size 8", "size 16"):
        aedat31.decode(HEAD + pkt(1, 16, bytes(16), cap=1, num=1, valid=1))
    with raises_at(len(HEAD), "eventSize > 0"):
        aedat31.decode(HEAD + pkt(2, -8, b"", cap=1, num=1, valid=1))
    with raises_at(len(HEAD) + 12, "eventTSOverflow >= 0"):
        aedat31.decode(HEAD + pkt(1, 8, b"", cap=0, num=0, valid=0, ovf=-1))


def test_coordinates_outside_the_declared_source():
    data = HEAD + pkt(1, 8, pol(3, 3, 1, 1) + pol(200, 3, 1, 2), cap=2, num=2, valid=2)
    with raises_at(len(HEAD) + 28 + 8, "inside the 128×128 sensor", "x=200"):
        aedat31.decode(data)


def test_negative_timestamp_of_valid_event():
    data = HEAD + pkt(1, 8, pol(3, 3, 1, -5), cap=1, num=1, valid=1)
    with raises_at(len(HEAD) + 28 + 4, "timestamp >= 0"):
        aedat31.decode(data)


def test_header_without_end_marker():
    with raises_at(14, "END-HEADER"):
        aedat31.decode(b"#!AER-DAT3.1\r\n\x01\x00\x01\x00")


def test_round_trip_many_packets_and_overflow(tmp_path):
    ev = random_events(3000, 346, 260, t_max=3 * 2**31, seed=5)
    data = b"".join(aedat31.encode(ev, packet_events=500))
    back = aedat31.decode(data)
    assert_same(back.events, ev.events)
    assert back.sensor_size == (346, 260, 2) and back.meta["packets"][1] >= 7
    p = tmp_path / "x.aedat"
    p.write_bytes(data)
    assert_same(read_events(p).events, ev.events)


def test_writer_refuses_negative_time():
    ev = random_events(3, 10, 10)
    ev.events["t"][0] = -1
    with pytest.raises(ValueError, match="t >= 0"):
        aedat31.encode(ev)

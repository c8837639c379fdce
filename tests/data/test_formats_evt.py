"""Prophesee RAW EVT 2.0 and 3.0: hand-assembled words for every word type and the clock wraps,
writer round trips, and the real files (EVT3 must equal ``gen4.dat`` up to a time offset)."""

from __future__ import annotations

import numpy as np

from spikeforge.data.formats import evt2, evt3, read_events, write_events
from tests.conftest import real_file
from tests.data.test_formats_common import assert_same, raises_at, random_events

H2 = b"% evt 2.0\n"
H3 = b"% evt 3.0\n% format EVT3;height=720;width=1280\n"


def w32(*words: int) -> bytes:
    return np.array(words, "<u4").tobytes()


def w16(*words: int) -> bytes:
    return np.array(words, "<u2").tobytes()


def cd(p: int, lsb: int, x: int, y: int) -> int:
    return (p << 28) | (lsb << 22) | (x << 11) | y


# ----------------------------------------------------------------------------------------- EVT 2.0

def test_evt2_hand_words_every_type():
    words = w32(cd(1, 5, 3, 4),                 # before any TIME_HIGH: time_high = 0
                (0x8 << 28) | 100, cd(0, 63, 2047, 2047),
                (0xA << 28) | 123, (0xE << 28) | 7, (0xF << 28) | 9,     # skipped
                (0x8 << 28) | 101, cd(1, 0, 0, 0))  # lsb rolls over into the next time_high
    ev = evt2.decode(H2 + words)
    e = ev.events
    assert e["t"].tolist() == [5, (100 << 6) | 63, 101 << 6]
    assert e["x"].tolist() == [3, 2047, 0] and e["y"].tolist() == [4, 2047, 0]
    assert e["p"].tolist() == [1, 0, 1] and ev.sensor_size == (2048, 2048, 2)


def test_evt2_time_high_wrap():
    top = (1 << 28) - 1
    ev = evt2.decode(H2 + w32((0x8 << 28) | top, cd(1, 1, 0, 0), (0x8 << 28) | 0, cd(1, 2, 0, 0)))
    assert ev.events["t"].tolist() == [(top << 6) | 1, (1 << 34) | 2]


def test_evt2_errors():
    with raises_at(len(H2) + 4, "EVT 2.0 word type", "0x3"):
        evt2.decode(H2 + w32(cd(1, 0, 0, 0), 0x3 << 28))
    with raises_at(len(H2) + 4, "whole number of 32-bit words"):
        evt2.decode(H2 + w32(1) + b"\x00\x01")
    head = b"% evt 2.0\n% geometry 640x480\n"
    with raises_at(len(head) + 4, "inside the 640×480 sensor", "x=640"):
        evt2.decode(head + w32(cd(1, 0, 639, 479), cd(1, 0, 640, 0)))
    with raises_at(0, "EVT 2.0 header"):
        evt2.decode(H3)


def test_evt2_round_trip(tmp_path):
    ev = random_events(5000, 640, 480, t_max=2**30, seed=11)
    p = write_events(tmp_path / "a.raw", ev, format="evt2")
    back = read_events(p)
    assert_same(back.events, ev.events)
    assert back.sensor_size == (640, 480, 2)


def test_evt2_real_file():
    ev = read_events(real_file("evt2.raw"))
    e = ev.events
    assert len(e) == 521_252 and ev.sensor_size == (640, 480, 2)
    assert e["t"].min() == 913_716_224 and e["t"].max() == 913_812_095
    assert int(e["p"].sum()) == 185_861


# ----------------------------------------------------------------------------------------- EVT 3.0

def test_evt3_hand_words_singles_vectors_time():
    words = w16(0x8000 | 0x001, 0x6000 | 0x010,        # TIME_HIGH 1, TIME_LOW 16 -> t = 4112
                0x0000 | 7,                            # ADDR_Y 7
                0x2000 | (1 << 11) | 100,              # ADDR_X 100, ON
                0x2000 | 101,                          # ADDR_X 101, OFF
                0x3000 | (1 << 11) | 200,              # VECT_BASE_X 200, ON
                0x4000 | 0b100000000001,               # VECT_12: 200, 211; base -> 212
                0x5000 | 0b10000001,                   # VECT_8: 212, 219; base -> 220
                0x5000 | 0b00000010,                   # VECT_8: 221
                0x7000 | 5, 0xA000 | 1, 0xE000, 0xF000 | 3,   # skipped
                0x6000 | 0x020, 0x2000 | 5)            # TIME_LOW 32 -> t = 4128
    ev = evt3.decode(H3 + words)
    e = ev.events
    assert e["x"].tolist() == [100, 101, 200, 211, 212, 219, 221, 5]
    assert e["y"].tolist() == [7] * 8
    assert e["p"].tolist() == [1, 0, 1, 1, 1, 1, 1, 0]
    assert e["t"].tolist() == [4112] * 7 + [4128]
    assert ev.sensor_size == (1280, 720, 2)


def test_evt3_time_high_wrap_adds_2_24():
    words = w16(0x8FFF, 0x6FFF, 0x0001, 0x2003, 0x8000, 0x6001, 0x2004, 0x8001, 0x2005)
    ev = evt3.decode(H3 + words)
    assert ev.events["t"].tolist() == [2**24 - 1, 2**24 + 1, 2**24 + 4097]


def test_evt3_errors():
    with raises_at(len(H3) + 2, "EVT 3.0 word type", "0xc"):
        evt3.decode(H3 + w16(0x0001, 0xC000))
    with raises_at(len(H3) + 2, "whole number of 16-bit words"):
        evt3.decode(H3 + w16(1) + b"\x00")
    with raises_at(len(H3) + 4, "inside the 1280×720 sensor"):      # 1275 + 11 >= 1280
        evt3.decode(H3 + w16(0x0001, 0x3000 | 1275, 0x4000 | (1 << 11)))
    with raises_at(len(H3) + 2, "inside the 1280×720 sensor"):
        evt3.decode(H3 + w16(0x0000 | 720, 0x2000))


def test_evt3_round_trip_with_wraps(tmp_path):
    ev = random_events(6000, 1280, 720, t_max=5 * 2**24, seed=12)
    ev.events["t"] += 3 * 2**24                   # starts after three wraps
    p = write_events(tmp_path / "b.raw", ev, format="evt3")
    assert_same(read_events(p).events, ev.events)
    ev.events["t"][-1] += 2**25                   # a long gap is crossed in steps the reader accepts
    assert_same(evt3.decode(b"".join(evt3.encode(ev))).events, ev.events)


def test_evt3_real_file_matches_readme_and_gen4_dat():
    ev = read_events(real_file("evt3.raw"))
    e = ev.events
    assert len(e) == 1_218_618 and ev.sensor_size == (1280, 720, 2)
    assert e["t"][0] == 11_200_224 and e["t"][-1] == 21_968_221
    assert int(e["p"].sum()) == 553_295
    dat = read_events(real_file("gen4.dat")).events
    for k in ("x", "y", "p"):
        np.testing.assert_array_equal(e[k], dat[k], err_msg=k)
    offset = e["t"] - dat["t"]
    assert np.all(offset == offset[0])

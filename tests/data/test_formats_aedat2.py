"""AEDAT 2.0 (jAER): hand-assembled big-endian bodies for DVS128 and DAVIS346, image orientation,
APS filtering, the real header-only file."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from spikeforge.data.formats import EventFormatError, aedat2, read_events
from tests.conftest import real_file
from tests.data.test_formats_common import assert_same, raises_at, random_events

HEAD = (b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n"
        b"# Creation time: System.currentTimeMillis() 1695355587880\r\n"
        b"# AEChip: ch.unizh.ini.jaer.chip.retina.DVS128\r\n")
HEAD_346 = (b"#!AER-DAT2.0\n# Creation time: System.currentTimeMillis() 12\n"
            b"# AEChip: eu.seebetter.ini.chips.davis.Davis346red\n")


def body(*pairs: tuple[int, int]) -> bytes:
    return b"".join(struct.pack(">II", a, t) for a, t in pairs)


def test_dvs128_addresses_by_hand():
    # bits 1..7 = jAER x flipped, bits 8..14 = jAER y (up), bit 0 = 1 means OFF
    data = HEAD + body((0, 10), ((5 << 8) | (10 << 1) | 1, 20), (0x7FFF, 30))
    ev = aedat2.decode(data)
    assert ev.sensor_size == (128, 128, 2) and ev.meta["chip"] == "dvs128"
    assert ev.meta["creation_time_ms"] == 1695355587880
    assert ev.events["x"].tolist() == [127, 117, 0]
    assert ev.events["y"].tolist() == [127, 122, 0]
    assert ev.events["p"].tolist() == [1, 0, 0]
    assert ev.events["t"].tolist() == [10, 20, 30]


def test_dvs128_orientation_renders_an_upright_L():
    # an "L" in image coordinates (y down): a bar down column 10, a foot along row 50
    pts = [(10, y) for y in range(10, 51)] + [(x, 50) for x in range(11, 41)]
    addrs = [((127 - y) << 8) | ((127 - x) << 1) for x, y in pts]
    ev = aedat2.decode(HEAD + body(*[(a, i) for i, a in enumerate(addrs)]))
    img = np.zeros((128, 128), int)
    np.add.at(img, (ev.events["y"], ev.events["x"]), 1)
    assert img[10:51, 10].all() and img[50, 10:41].all() and img.sum() == len(pts)
    assert img[10, 11:41].sum() == 0          # the foot is at the bottom, not the top


def test_crlf_and_lf_headers_agree():
    a = aedat2.decode(HEAD + body((3, 1)))
    b = aedat2.decode(HEAD.replace(b"\r\n", b"\n") + body((3, 1)))
    assert_same(a.events, b.events)


def test_davis346_addresses_and_aps_samples_dropped():
    dvs = lambda xr, yr, p: (yr << 22) | (xr << 12) | (p << 11)  # noqa: E731
    data = HEAD_346 + body((dvs(0, 0, 1), 5), (0x80000000 | dvs(3, 3, 0), 6),
                           (dvs(345, 259, 0), 7), (0xC0000ABC, 8), (dvs(100, 50, 1), 9))
    ev = aedat2.decode(data)
    assert ev.meta["chip"] == "davis346" and ev.meta["dropped_aps"] == 2
    assert ev.sensor_size == (346, 260, 2)
    assert ev.events["x"].tolist() == [345, 0, 245]
    assert ev.events["y"].tolist() == [259, 0, 209]
    assert ev.events["p"].tolist() == [1, 0, 1]
    assert ev.events["t"].tolist() == [5, 7, 9]


def test_davis_address_outside_sensor_names_offset():
    bad = (10 << 22) | (400 << 12)
    data = HEAD_346 + body((0x80000000, 1), (0, 2), (bad, 3))
    with raises_at(len(HEAD_346) + 16, "inside the 346×260 sensor", "x=400"):
        aedat2.decode(data)


def test_timestamp_wrap_is_unrolled():
    ev = aedat2.decode(HEAD + body((0, 2**32 - 16), (0, 16), (0, 20)))
    assert ev.events["t"].tolist() == [2**32 - 16, 2**32 + 16, 2**32 + 20]


def test_bad_inputs():
    with raises_at(len(HEAD) + 8, "whole number of 8-byte events", "3 left over"):
        aedat2.decode(HEAD + body((0, 1)) + b"\x00\x01\x02")
    with raises_at(0, "AEDAT 2.0 magic"):
        aedat2.decode(b"#!AER-DAT3.1\r\n")
    with raises_at(15, "AEChip of a supported chip", "com.example.weird"):
        aedat2.decode(b"#!AER-DAT2.0\n# AEChip: com.example.Weird\n#End Of ASCII Header\n")
    with pytest.raises(ValueError, match="chip must be one of"):
        aedat2.decode(b"#!AER-DAT2.0\n#End Of ASCII Header\n", chip="davis9000")
    with raises_at(13, "'#End Of ASCII Header' line that closes the header", "cut inside its header"):
        aedat2.decode(b"#!AER-DAT2.0\n")                       # 13 bytes: a header with nothing after it
    with raises_at(len(HEAD) + 8, "timestamps in order", "t=3 after t=9"):
        aedat2.decode(HEAD + body((0, 9), (0, 3)))


def test_round_trip_both_chips():
    for chip, (W, H) in (("dvs128", (128, 128)), ("davis346", (346, 260))):
        ev = random_events(700, W, H, t_max=2**31, seed=1)
        back = aedat2.decode(b"".join(aedat2.encode(ev, chip=chip, creation_time_ms=7)))
        assert_same(back.events, ev.events)
        assert back.meta["chip"] == chip and back.meta["creation_time_ms"] == 7


def test_real_header_only_file():
    """The real file is the first 599 bytes of a recording: cut inside its preferences block, before the
    header's closing line. Strict reading says so; salvage reads the header and no events."""
    path = real_file("sample_aedat_header.aedat")
    with pytest.raises(EventFormatError, match=r"byte 599: expected the '#End Of ASCII Header' line that closes "
                                               r"the header, got the end of the file"):
        read_events(path)
    ev = read_events(path, strict=False)
    assert ev.meta["version"] == "2.0" and ev.meta["creation_time_ms"] == 1695355587880
    assert len(ev) == 0 and ev.meta["chip"] == "davis346" and ev.sensor_size == (346, 260, 2)
    assert ev.meta["dropped"] == {"header_cut": 1}

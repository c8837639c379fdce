"""No silent mis-decode: every reader checks what its format guarantees — a whole, consistent header,
coordinates inside the declared or known sensor, times >= 0, in order where the format stores them in
order, no impossible time jump — and names file, byte and field; ``strict=False`` salvages and says what
it dropped. Each case below decoded silently into something wrong once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spikeforge.data import Events, read_events
from spikeforge.data.events import make_events
from spikeforge.data.formats import EventFormatError, aedat2, aedat4, evt2, evt3, nmnist_bin, prophesee_dat
from spikeforge.data.formats._prophesee import parse_header
from tests.conftest import real_file
from tests.data.test_formats_aedat4 import MAGIC, packet, raw_events
from tests.data.test_formats_common import raises_at
from tests.data.test_formats_evt import H2, H3, cd, w16, w32


def test_a_damaged_dat_version_line_is_refused_not_read_with_the_old_layout(tmp_path: Path) -> None:
    head = b"% Height 720\n% Verrion 2\n% Width 1280\n"
    with raises_at(0, r"'% Version 2': the declared 1280×720 sensor needs its 14-bit addresses"):
        prophesee_dat.decode(head + bytes([0x0C, 8]) + np.array([5, 7], "<u4").tobytes())
    data = real_file("gen4.dat").read_bytes().replace(b"% Version", b"% Verrion")
    (tmp_path / "g.dat").write_bytes(data)
    with pytest.raises(EventFormatError, match=rf"{tmp_path / 'g.dat'}: byte 0 \(header\): expected '% Version 2'"):
        read_events(tmp_path / "g.dat")


def _flip_time_high(data: bytes, fmt: str) -> tuple[bytes, int]:
    """Flip a high bit of the middle TIME_HIGH word; returns the bytes and the word's byte offset."""
    body = parse_header(data).body
    if fmt == "evt2":
        w = np.frombuffer(data[body:body + (len(data) - body) // 4 * 4], "<u4")
        k = np.flatnonzero((w >> 28) == 8)
        at = body + 4 * int(k[len(k) // 2])
        return data[:at + 3] + bytes([data[at + 3] ^ 0x04]) + data[at + 4:], at
    w = np.frombuffer(data[body:body + (len(data) - body) // 2 * 2], "<u2")
    k = np.flatnonzero((w >> 12) == 8)
    at = body + 2 * int(k[len(k) // 2])
    return data[:at] + bytes([data[at] ^ 0x80]) + data[at + 1:], at


@pytest.mark.parametrize("fmt,name", [("evt2", "evt2.raw"), ("evt3", "evt3.raw")])
def test_a_flipped_time_high_bit_is_an_impossible_jump(fmt: str, name: str) -> None:
    data, at = _flip_time_high(real_file(name).read_bytes(), fmt)
    with raises_at(at, "a TIME_HIGH within", "time_high"):
        read_events(data, format=fmt)
    ev = read_events(data, format=fmt, strict=False)
    assert ev.meta["dropped"]["time_jump"] == 1
    t = ev.events["t"]
    assert np.all(np.diff(t) >= 0) and t.max() - t.min() < 60_000_000      # nothing thrown 2**34 µs ahead


def test_time_jumps_in_hand_made_words() -> None:
    with raises_at(len(H2) + 8, "a TIME_HIGH within 16384 steps"):
        evt2.decode(H2 + w32((8 << 28) | 5, cd(1, 0, 1, 1), (8 << 28) | (5 + (1 << 14) + 1)))
    assert len(evt2.decode(H2 + w32((8 << 28) | 5, cd(1, 0, 1, 1), (8 << 28) | (5 + (1 << 14)), cd(0, 0, 2, 2)))) == 2
    with raises_at(len(H3) + 2, "a TIME_HIGH within 256 steps"):
        evt3.decode(H3 + w16(0x8000 | 10, 0x8000 | 300))
    assert len(evt3.decode(H3 + w16(0x8000 | 4000, 0x8000 | 100, 0x0001, 0x2005))) == 1     # across the wrap


def test_an_aedat4_negative_timestamp_is_refused() -> None:
    ev = Events(make_events([5, -2_200_000_000_000_000_000, 10], [1, 2, 3], [1, 2, 3], [1, 0, 1]), (10, 10, 2))
    xml = aedat4.stream_xml({0: {"typeIdentifier": "EVTS", "sizeX": 10, "sizeY": 10}}, "none")
    body = packet(0, aedat4.event_packet(raw_events(ev)))
    data = MAGIC + aedat4.io_header(0, -1, xml) + body
    at = len(MAGIC) + len(aedat4.io_header(0, -1, xml))
    with raises_at(at, "a timestamp >= 0", "t=-2200000000000000000"):
        aedat4.decode(data)
    salvaged = aedat4.decode(data, strict=False)
    assert salvaged.events["t"].tolist() == [5, 10] and salvaged.meta["dropped"] == {"negative_time": 1}


def test_nmnist_and_ncars_coordinate_flips_are_errors_not_a_larger_sensor(tmp_path: Path) -> None:
    from spikeforge.data.datasets import NCARS, NMNIST
    nm = bytearray(real_file("sample_nmnist.bin").read_bytes())
    nm[5 * 100] = 200                                   # x of event 100
    with raises_at(500, "inside the 34×34 sensor", "x=200"):
        read_events(bytes(nm), format="nmnist", sensor_size=NMNIST.sensor_size)
    nc = bytearray(real_file("sample_ncars.dat").read_bytes())
    body = parse_header(bytes(nc)).body + 2
    nc[body + 8 * 50 + 4] = 0xFF
    nc[body + 8 * 50 + 5] |= 0x01                        # x of event 50 becomes 511
    for size in (None, NCARS.sensor_size):
        with pytest.raises(EventFormatError, match=r"byte \d+ \(event 50\): expected coordinates inside the"):
            read_events(bytes(nc), format="dat", sensor_size=size)


def test_a_raw_file_cut_inside_its_header() -> None:
    data = real_file("evt3.raw").read_bytes()
    cut = data[:150]
    with raises_at(150, "the end of the header line that starts at byte", "cut inside its header"):
        read_events(cut, format="evt3")


def test_backward_timestamps_fail_in_every_ordered_format() -> None:
    ev = Events(make_events([10, 20, 5, 30], [1, 2, 3, 4], [1, 2, 3, 4], [1, 0, 1, 0]), (34, 34, 2))
    for mod in (nmnist_bin, prophesee_dat, aedat4):      # the modules' encoders write what they get
        data = b"".join(mod.encode(ev))
        with pytest.raises(EventFormatError, match="expected timestamps in order.*got t=5 after t=20"):
            mod.decode(data)
        assert mod.decode(data, strict=False).meta["dropped"] == {"backward_time": 1}
    data = b"".join(aedat2.encode(Events(ev.events, (128, 128, 2))))
    with pytest.raises(EventFormatError, match="got t=5 after t=20"):
        aedat2.decode(data)
    with raises_at(None, "timestamps in order", "t=3 after t=9"):   # inside one TIME_HIGH period
        evt2.decode(H2 + w32((8 << 28) | 0, cd(1, 9, 1, 1), cd(0, 3, 2, 2)))
    with raises_at(None, "timestamps in order", "t=3 after t=9"):
        evt3.decode(H3 + w16(0x8000, 0x6000 | 9, 0x0001, 0x2005, 0x6000 | 3, 0x2006))


def test_writers_refuse_what_their_reader_would(tmp_path: Path) -> None:
    from spikeforge.data import write_events
    ev = Events(make_events([10, 5], [1, 2], [1, 2], [1, 0]), (34, 34, 2))
    for ext in ("bin", "dat", "aedat4"):
        with pytest.raises(ValueError, match=r"stores events in time order, but event 1 has t=5 after t=10"):
            write_events(tmp_path / f"x.{ext}", ev)
        assert not (tmp_path / f"x.{ext}").exists()


def test_a_folder_is_named() -> None:
    with pytest.raises(EventFormatError, match=r"^/tmp: path: expected an event file, got a folder"):
        read_events("/tmp")

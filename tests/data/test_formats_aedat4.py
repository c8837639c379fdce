"""AEDAT 4.0: round trips for every compression, hand-assembled multi-stream files, bounded
decompression, the two real recordings, and (when installed) the independent ``aedat`` decoder."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from spikeforge.data.formats import aedat4, read_events, write_events
from tests.conftest import has_module, real_file
from tests.data.test_formats_common import assert_same, raises_at, random_events

MAGIC = b"#!AER-DAT4.0\r\n"


def packet(stream: int, payload: bytes) -> bytes:
    return struct.pack("<iI", stream, len(payload)) + payload


def raw_events(ev) -> np.ndarray:
    r = np.zeros(len(ev), aedat4.EVENT_STRUCT)
    r["t"], r["x"], r["y"], r["on"] = (ev.events[k] for k in ("t", "x", "y", "p"))
    return r


TWO_STREAMS = aedat4.stream_xml({0: {"typeIdentifier": "EVTS", "sizeX": 64, "sizeY": 48},
                                 2: {"typeIdentifier": "IMUS"}}, "none")


@pytest.mark.parametrize("compression", ["none", "lz4", "lz4high", "zstd", "zstdhigh"])
@pytest.mark.parametrize("table", [True, False])
def test_round_trip_every_compression(compression: str, table: bool):
    ev = random_events(2500, 320, 240, t_max=10**6, seed=2)
    ev.events["t"] += 1_605_537_493_718_345          # absolute Unix µs, as DV writes
    data = b"".join(aedat4.encode(ev, compression=compression, packet_events=1000,
                                  data_table=table))
    back = aedat4.decode(data)
    assert_same(back.events, ev.events)
    assert back.sensor_size == (320, 240, 2) and back.meta["packets"] == {"EVTS": 3}
    assert back.meta["compression"] == compression


def test_empty_stream_and_empty_packet():
    ev = random_events(0, 10, 10)
    assert len(aedat4.decode(b"".join(aedat4.encode(ev)))) == 0
    body = packet(0, aedat4.event_packet(raw_events(random_events(0, 64, 48))))
    data = MAGIC + aedat4.io_header(0, -1, TWO_STREAMS) + body
    ev = aedat4.decode(data)
    assert len(ev) == 0 and ev.meta["packets"] == {"EVTS": 1}


def test_hand_assembled_two_streams_imu_skipped_and_a_damaged_table_named():
    a, b = random_events(5, 64, 48, seed=1), random_events(7, 64, 48, seed=2)
    b.events["t"] += a.events["t"][-1]                 # the second packet continues in time
    imu = b"\xde\xad\xbe\xef" * 9                   # never decompressed or parsed
    body = (packet(0, aedat4.event_packet(raw_events(a))) + packet(2, imu)
            + packet(0, aedat4.event_packet(raw_events(b))))
    head_len = len(MAGIC) + len(aedat4.io_header(0, 0, TWO_STREAMS))
    table_at = head_len + len(body)
    entries = [(head_len + 8, 0, 0, 5, 0, 0), (0, 2, 0, 0, 0, 0), (0, 0, 0, 7, 0, 0)]
    good = MAGIC + aedat4.io_header(0, table_at, TWO_STREAMS) + body + aedat4._file_table(entries)
    ev = aedat4.decode(good)
    assert_same(ev.events, np.concatenate([a.events, b.events]))
    assert ev.meta["packets"] == {"EVTS": 2, "IMUS": 1} and ev.sensor_size == (64, 48, 2)
    assert ev.meta["streams"][2]["typeIdentifier"] == "IMUS" and "dropped" not in ev.meta
    bad = MAGIC + aedat4.io_header(0, table_at, TWO_STREAMS) + body + b"any table bytes"
    with raises_at(table_at, r"\(file data table\): expected a whole file data table: a size prefix equal to the "
                   r"table's 11 bytes"):
        aedat4.decode(bad)
    short = MAGIC + aedat4.io_header(0, table_at, TWO_STREAMS) + body + aedat4._file_table(entries[:2])
    with raises_at(table_at, "an entry for each of the 3 packets, got 2 entries"):
        aedat4.decode(short)
    for data in (bad, short):
        ev = aedat4.decode(data, strict=False)
        assert_same(ev.events, np.concatenate([a.events, b.events]))
        assert ev.meta["dropped"] == {"data_table": 1}


def test_event_packet_bytes_match_the_spec_layout():
    r = raw_events(random_events(2, 10, 10, seed=3))
    buf = aedat4.event_packet(r)
    size, root = struct.unpack_from("<II", buf)
    assert size == len(buf) - 4 and buf[8:12] == b"EVTS"
    table = 4 + root
    vtable = table - struct.unpack_from("<i", buf, table)[0]
    field0 = struct.unpack_from("<H", buf, vtable + 4)[0]
    vec = table + field0 + struct.unpack_from("<I", buf, table + field0)[0]
    assert struct.unpack_from("<I", buf, vec)[0] == 2 and (vec + 4) % 8 == 0
    t, x, y, on = struct.unpack_from("<qhh?", buf, vec + 4)
    assert (t, x, y, on) == (r["t"][0], r["x"][0], r["y"][0], bool(r["on"][0]))


def test_errors_name_offsets():
    with raises_at(0, "AEDAT 4.0 magic"):
        aedat4.decode(b"#!AER-DAT3.1\r\n")
    with raises_at(14, "IOHeader of 9999 bytes"):
        aedat4.decode(MAGIC + struct.pack("<I", 9999) + b"x" * 20)
    head = MAGIC + aedat4.io_header(0, -1, TWO_STREAMS)
    with raises_at(len(head), "stream declared in the header", "stream id 5"):
        aedat4.decode(head + packet(5, b""))
    with raises_at(len(head) + 4, "packet size"):
        aedat4.decode(head + struct.pack("<iI", 0, 100) + b"\x00" * 10)
    with raises_at(len(head) + 8, "identifier 'EVTS'"):
        aedat4.decode(head + packet(0, struct.pack("<II", 12, 4) + b"IMUS" + bytes(8)))
    with raises_at(18, "compression type"):
        aedat4.decode(MAGIC + aedat4.io_header(7, -1, TWO_STREAMS))
    with raises_at(18, "well-formed XML"):
        aedat4.decode(MAGIC + aedat4.io_header(0, -1, "<dv><node"))
    bad = random_events(3, 64, 48)
    bad.events["x"][1] = 64
    with raises_at(len(head), "inside the 64×48 sensor", "x=64"):
        aedat4.decode(head + packet(0, aedat4.event_packet(raw_events(bad))))


def test_corrupt_and_oversized_compressed_packets_are_refused():
    xml = TWO_STREAMS
    lz = MAGIC + aedat4.io_header(1, -1, xml)
    with raises_at(len(lz) + 8, "LZ4"):
        aedat4.decode(lz + packet(0, b"\x04\x22\x4d\x18garbage"))
    zstd = pytest.importorskip("zstandard")
    bomb = zstd.ZstdCompressor().compress(bytes(10**6))        # 1 MB of zeros in ~40 bytes
    zs = MAGIC + aedat4.io_header(3, -1, xml)
    with raises_at(len(zs) + 8, "expansion"):
        aedat4.decode(zs + packet(0, bomb))
    lz4f = pytest.importorskip("lz4.frame")       # LZ4 itself cannot expand past ~255×
    whole = lz4f.compress(aedat4.event_packet(raw_events(random_events(50, 64, 48))))
    with raises_at(len(lz) + 8, "complete LZ4 frame"):
        aedat4.decode(lz + packet(0, whole[:-9]))


def test_write_events_extension_and_read_back(tmp_path):
    ev = random_events(100, 40, 30, seed=9)
    p = write_events(tmp_path / "a.aedat4", ev, compression="zstd")
    assert_same(read_events(p).events, ev.events)


@pytest.mark.skipif(not has_module("aedat"), reason="independent decoder 'aedat' not installed")
def test_our_files_decode_with_the_independent_aedat_package(tmp_path):
    import aedat
    ev = random_events(3000, 346, 260, seed=4)
    p = write_events(tmp_path / "b.aedat4", ev, compression="lz4", packet_events=700)
    parts = [pk["events"] for pk in aedat.Decoder(str(p)) if "events" in pk]
    got = np.concatenate(parts)
    for ours, theirs in (("t", "t"), ("x", "x"), ("y", "y"), ("p", "on")):
        np.testing.assert_array_equal(ev.events[ours], got[theirs].astype(np.int64))


def test_real_davis346_four_streams():
    ev = read_events(real_file("davis346.aedat4"))
    e = ev.events
    assert len(e) == 78_830 and ev.sensor_size == (346, 260, 2)
    assert round((e["t"][-1] - e["t"][0]) / 1e6, 2) == 2.36
    assert ev.meta["packets"] == {"EVTS": 236, "FRME": 59, "IMUS": 236, "TRIG": 177}
    assert ev.meta["compression"] == "lz4"


def test_real_dvxplorer_sample():
    ev = read_events(real_file("sample.aedat4"))
    e = ev.events
    assert len(e) == 111_954 and ev.sensor_size == (320, 240, 2)
    assert round((e["t"][-1] - e["t"][0]) / 1e6, 2) == 0.59
    assert ev.meta["packets"] == {"EVTS": 59, "IMUS": 59}

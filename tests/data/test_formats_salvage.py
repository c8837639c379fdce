"""Damaged files read with ``strict=False``: what comes back is exactly what is intact, with what was lost counted.

* A file cut anywhere (inside its header, a record, a word, a packet, the AEDAT4 data table) gives back the
  intact file's events before the cut — its prefix — and ``meta["dropped"]`` counts the bytes after the last
  whole unit (``"truncated"``), a header the file ends inside (``"header_cut"``) and a missing or damaged AEDAT4
  data table (``"data_table"``). Strict reading raises one error at the cut, its numbers from one stated origin.
* Events out of time order are salvaged by keeping a longest non-decreasing subsequence of the times: one
  timestamp corrupted forward costs that one event, not every event after it.

Every expected count below comes from the file's layout (record sizes, word types, packet headers, DV's own
data table), not from the reader under test.
"""

from __future__ import annotations

import itertools
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from spikeforge.data import Events, read_events
from spikeforge.data.events import make_events
from spikeforge.data.formats import (
    EventFormatError,
    aedat2,
    aedat4,
    aedat31,
    evt2,
    evt3,
    get_format,
    nmnist_bin,
    prophesee_dat,
)
from spikeforge.data.formats import _flatbuffers as fb
from spikeforge.data.formats._io import finish, longest_ordered
from tests.conftest import real_file
from tests.data.test_formats_common import assert_same, raises_at, random_events

EV = random_events(40, 60, 40, t_max=3 * 2**24, seed=1)          # 40 events: 3 packets of 15, 15, 10 in AEDAT4
N = len(EV)


def enc(name: str, ev: Events = EV, **kw) -> bytes:
    return b"".join(get_format(name).module.encode(ev, **kw))


def check_cut(tmp_path: Path, fmt: str, data: bytes, cut: int, n: int, dropped: dict[str, int] | None,
              error_at: int | None, *fragments: str) -> None:
    """``data[:cut]`` written to a file: ``strict=False`` returns the first ``n`` events of the intact file and
    ``dropped`` (None: no ``meta["dropped"]``); strict reading raises at ``error_at`` (None: reads the same)."""
    full = read_events(data, format=fmt).events
    path = tmp_path / f"cut_{fmt}_{cut}"
    path.write_bytes(data[:cut])
    ev = read_events(path, format=fmt, strict=False)
    assert_same(ev.events, full[:n])
    assert ev.meta.get("dropped") == dropped, (cut, ev.meta.get("dropped"))
    if error_at is None:
        assert_same(read_events(path, format=fmt).events, full[:n])
    else:
        with raises_at(error_at, str(path), *fragments):
            read_events(path, format=fmt)


# --------------------------------------------------------------------------------------- cut files, by format

def test_nmnist_cut(tmp_path: Path) -> None:
    ev = random_events(40, 34, 34, t_max=2**22, seed=1)
    data = enc("nmnist", ev)
    check_cut(tmp_path, "nmnist", data, 3, 0, {"truncated": 3}, 0, r"got 3 bytes \(0 whole events\), 3 left over")
    check_cut(tmp_path, "nmnist", data, 5 * 17 + 2, 17, {"truncated": 2}, 85, "17 whole events")
    check_cut(tmp_path, "nmnist", data, 5 * 17, 17, None, None)          # at a record boundary: nothing to see
    check_cut(tmp_path, "nmnist", data, len(data) - 1, N - 1, {"truncated": 4}, len(data) - 5, "4 left over")


def test_dat_cut(tmp_path: Path) -> None:
    data = enc("dat")
    h = len(data) - 2 - 8 * N                                           # the text header; then type and size
    check_cut(tmp_path, "dat", data, 7, 0, {"header_cut": 1, "truncated": 7}, 7, "cut inside its header")
    check_cut(tmp_path, "dat", data, h, 0, {"header_cut": 1}, h, "event type and size bytes", "0 bytes after it")
    check_cut(tmp_path, "dat", data, h + 1, 0, {"header_cut": 1, "truncated": 1}, h, "1 bytes after it")
    check_cut(tmp_path, "dat", data, h + 2, 0, None, None)
    check_cut(tmp_path, "dat", data, h + 2 + 8 * 17 + 5, 17, {"truncated": 5}, h + 2 + 8 * 17,
              f"after the {h + 2}-byte header", r"got 141 bytes after it \(17 whole events\), 5 left over")
    check_cut(tmp_path, "dat", data, len(data) - 1, N - 1, {"truncated": 7}, len(data) - 8)


def test_aedat2_cut(tmp_path: Path) -> None:
    data = enc("aedat2", chip="davis346")
    h = len(data) - 8 * N
    second = data.index(b"\n") + 1                                       # the start of the second header line
    check_cut(tmp_path, "aedat2", data, 11, 0, {"header_cut": 1, "truncated": 11}, 11, "cut inside its header")
    check_cut(tmp_path, "aedat2", data, second + 5, 0, {"header_cut": 1, "truncated": 5}, second + 5)
    check_cut(tmp_path, "aedat2", data, second, 0, {"header_cut": 1}, second, "'#End Of ASCII Header' line")
    check_cut(tmp_path, "aedat2", data, h + 8 * 17 + 3, 17, {"truncated": 3}, h + 8 * 17,
              f"after the {h}-byte header", r"got 139 bytes after it \(17 whole events\), 3 left over")
    check_cut(tmp_path, "aedat2", data, len(data) - 1, N - 1, {"truncated": 7}, len(data) - 8)


def _text_end(data: bytes) -> int:
    """Where a Prophesee file's ``%`` text lines end."""
    h = 0
    while data.startswith(b"%", h):
        h = data.index(b"\n", h) + 1
    return h


def _words(data: bytes, h: int, size: int) -> np.ndarray:
    return np.frombuffer(data, "<u4" if size == 4 else "<u2", offset=h)


def test_evt2_cut(tmp_path: Path) -> None:
    data = enc("evt2")
    h = data.index(b"% end\n") + 6
    words = _words(data, h, 4)
    k = len(words) // 2
    n = int(np.count_nonzero((words[:k] >> 28) <= 1))                   # CD words before the cut: events
    check_cut(tmp_path, "evt2", data, 5, 0, {"header_cut": 1, "truncated": 5}, 5, "cut inside its header")
    check_cut(tmp_path, "evt2", data, h + 4 * k + 2, n, {"truncated": 2}, h + 4 * k, f"after the {h}-byte header",
              rf"got {4 * k + 2} bytes after it \({k} whole words\), 2 left over")
    check_cut(tmp_path, "evt2", data, h + 4 * k, n, None, None)
    check_cut(tmp_path, "evt2", data, len(data) - 3, N - 1, {"truncated": 1}, len(data) - 4)


def _evt3_events(words: np.ndarray) -> int:
    """Events the words emit: ADDR_X words and the set bits of VECT_12 / VECT_8 words."""
    typ = words >> 12
    bits = lambda m: np.unpackbits(m.astype(">u2").view(np.uint8)).sum()   # noqa: E731
    return int(np.count_nonzero(typ == 2) + bits(words[typ == 4] & 0xFFF) + bits(words[typ == 5] & 0xFF))


def test_evt3_cut(tmp_path: Path) -> None:
    data = enc("evt3")
    h = data.index(b"% end\n") + 6
    words = _words(data, h, 2)
    k = len(words) // 2
    n = _evt3_events(words[:k])
    check_cut(tmp_path, "evt3", data, 12, 0, {"header_cut": 1, "truncated": 2}, 12, "cut inside its header")
    check_cut(tmp_path, "evt3", data, h + 2 * k + 1, n, {"truncated": 1}, h + 2 * k, f"after the {h}-byte header",
              rf"got {2 * k + 1} bytes after it \({k} whole words\), 1 left over")
    check_cut(tmp_path, "evt3", data, len(data) - 1, N - 1, {"truncated": 1}, len(data) - 2)


def test_aedat3_cut(tmp_path: Path) -> None:
    data = enc("aedat3", packet_events=7)                                 # packets of 28 + 7 · 8 = 84 bytes
    h = data.index(b"#!END-HEADER\r\n") + 14
    check_cut(tmp_path, "aedat3", data, 20, 0, {"header_cut": 1, "truncated": 6}, 20, "cut inside its header")
    check_cut(tmp_path, "aedat3", data, h + 10, 0, {"truncated": 10}, h, "28-byte packet header",
              "10 bytes before the end of the file")
    check_cut(tmp_path, "aedat3", data, h + 84, 7, None, None)
    check_cut(tmp_path, "aedat3", data, h + 84 + 28 + 8 * 3 + 5, 10, {"truncated": 5}, h + 84 + 28,
              r"56 bytes of events \(capacity 7 × size 8\)", "29 bytes left in the file")
    # the last packet holds 40 − 5 · 7 = 5 events (68 bytes): cut by one byte, 4 whole events are left
    check_cut(tmp_path, "aedat3", data, len(data) - 1, N - 1, {"truncated": 7}, len(data) - 68 + 28)


def _packets(data: bytes) -> list[tuple[int, int]]:
    """``(offset, size)`` of each AEDAT4 packet, walked from the header (up to the table or the end)."""
    body = 18 + struct.unpack_from("<I", data, 14)[0]
    pos, out = body, []
    while pos + 8 <= len(data):
        _, size = struct.unpack_from("<iI", data, pos)
        if pos + 8 + size > len(data) or len(out) == 3:     # EV's three packets; the table follows
            break
        out.append((pos, size))
        pos += 8 + size
    return out


@pytest.mark.parametrize("compression", ["none", "lz4"])
def test_aedat4_cut(tmp_path: Path, compression: str) -> None:
    data = enc("aedat4", compression=compression, packet_events=15)
    (p0, _), (p1, s1), (p2, s2) = _packets(data)
    table = p2 + 8 + s2
    check_cut(tmp_path, "aedat4", data, 16, 0, {"header_cut": 1, "truncated": 2}, 14, "a u32 IOHeader length")
    check_cut(tmp_path, "aedat4", data, 100, 0, {"header_cut": 1, "truncated": 86}, 14, "an IOHeader of")
    check_cut(tmp_path, "aedat4", data, p0, 0, {"data_table": 1}, 18, "dataTablePosition", "it was cut")
    check_cut(tmp_path, "aedat4", data, p1 + 8 + s1 // 2, 15, {"data_table": 1, "truncated": 8 + s1 // 2}, 18,
              f"got {table} \\(past the end of the {p1 + 8 + s1 // 2}-byte file")
    check_cut(tmp_path, "aedat4", data, p2, 30, {"data_table": 1}, 18)
    check_cut(tmp_path, "aedat4", data, table, 40, {"data_table": 1}, table, r"\(file data table\)")
    check_cut(tmp_path, "aedat4", data, len(data) - 2, 40, {"data_table": 1}, table, r"\(file data table\)")


def test_aedat4_without_a_table_cut(tmp_path: Path) -> None:
    data = enc("aedat4", compression="zstd", packet_events=15, data_table=False)
    (_, _), (p1, s1), (p2, s2) = _packets(data)
    check_cut(tmp_path, "aedat4", data, p1 + 5, 15, {"truncated": 5}, p1, "an 8-byte packet header",
              "5 bytes before the end of the file")
    check_cut(tmp_path, "aedat4", data, p2 + 8 + s2 - 1, 30, {"truncated": 8 + s2 - 1}, p2 + 4,
              f"a packet size <= {s2 - 1}, the bytes between the packet's 8-byte header and the end of the file")
    check_cut(tmp_path, "aedat4", data, p2, 30, None, None)


@pytest.mark.parametrize("fmt", ["nmnist", "dat", "aedat2", "aedat3", "aedat4", "evt2", "evt3"])
def test_a_cut_anywhere_gives_back_a_prefix(fmt: str) -> None:
    """Every cut offset: the salvage is the intact file's prefix, never shorter for a longer cut; only a cut
    inside the magic bytes (the file is not recognisably the format) raises."""
    kw = {"aedat2": {"chip": "davis346"}, "aedat3": {"packet_events": 7},
          "aedat4": {"compression": "none", "packet_events": 15}}.get(fmt, {})
    ev = random_events(40, 34, 34, t_max=2**22, seed=1) if fmt == "nmnist" else EV
    data = enc(fmt, ev, **kw)
    decode = get_format(fmt).module.decode
    magic = {"aedat2": 10, "aedat3": 12, "aedat4": 14}.get(fmt, 0)
    full, last = decode(data).events, 0
    for cut in range(len(data) + 1):
        if cut < magic:
            with pytest.raises(EventFormatError, match="magic"):
                decode(data[:cut], strict=False)
            continue
        got = decode(data[:cut], strict=False)
        assert len(got) >= last and not got.meta.get("dropped", {}).keys() - {"truncated", "header_cut",
                                                                               "data_table"}, cut
        assert_same(got.events, full[:len(got)])
        last = len(got)
    assert last == N


# ------------------------------------------------------------------------------------ cut real recordings

def test_real_nmnist_and_ncars_cut_mid_record(tmp_path: Path) -> None:
    data = real_file("sample_nmnist.bin").read_bytes()
    check_cut(tmp_path, "nmnist", data, 5 * 1000 + 2, 1000, {"truncated": 2}, 5000)
    check_cut(tmp_path, "nmnist", data, len(data) - 3, 4324, {"truncated": 2}, len(data) - 5,
              r"got 21622 bytes \(4324 whole events\), 2 left over")
    data = real_file("sample_ncars.dat").read_bytes()
    h = len(data) - 8 * 2009                                            # 2,009 events after the header
    check_cut(tmp_path, "dat", data, len(data) - 2, 2008, {"truncated": 6}, len(data) - 8,
              f"after the {h}-byte header", rf"got {len(data) - 2 - h} bytes after it \(2008 whole events\)")
    check_cut(tmp_path, "dat", data, 40, 0, {"header_cut": 1, "truncated": 40 - (data.rfind(b"\n", 0, 40) + 1)}, 40)


@pytest.mark.parametrize("name,fmt", [("evt2.raw", "evt2"), ("evt3.raw", "evt3")])
def test_real_raw_files_cut_mid_word(tmp_path: Path, name: str, fmt: str) -> None:
    data = real_file(name).read_bytes()
    size = 4 if fmt == "evt2" else 2
    h = _text_end(data)
    words = _words(data, h, size)
    k = len(words) // 3
    n = int(np.count_nonzero((words[:k] >> 28) <= 1)) if fmt == "evt2" else _evt3_events(words[:k])
    check_cut(tmp_path, fmt, data, h + size * k + 1, n, {"truncated": 1}, h + size * k, f"after the {h}-byte header")


def _dv_table(data: bytes) -> list[tuple[int, int, int, int]]:
    """The file data table of an LZ4 AEDAT4 file: ``(payload offset, stream, size, elements)`` per packet."""
    lz4f = pytest.importorskip("lz4.frame")
    raw = lz4f.decompress(data[aedat4._read_header(data, "x")[1]:])
    root = fb.uoffset(raw, 4, "root")
    first, n = fb.vector(raw, fb.field_pos(raw, root, 0), 4, "entries")
    rows = []
    for k in range(n):
        t = fb.uoffset(raw, first + 4 * k, "entry")
        off = fb.read_i64(raw, fb.field_pos(raw, t, 0))
        sid, size = struct.unpack_from("<ii", raw, fb.field_pos(raw, t, 1))
        rows.append((off, sid, size, fb.read_i64(raw, fb.field_pos(raw, t, 2))))
    return rows


def test_real_aedat4_cut_keeps_the_whole_packets(tmp_path: Path) -> None:
    data = real_file("sample.aedat4").read_bytes()
    rows = _dv_table(data)
    assert len(rows) == 118 and sum(n for _, sid, _, n in rows if sid == 0) == 111_954
    cut = len(data) // 2
    whole = [r for r in rows if r[0] + r[2] <= cut]                   # packets wholly before the cut
    n = sum(r[3] for r in whole if r[1] == 0)
    partial = min(r[0] for r in rows if r[0] + r[2] > cut) - 8       # the cut packet's header
    check_cut(tmp_path, "aedat4", data, cut, n, {"data_table": 1, "truncated": cut - partial}, 18,
              "dataTablePosition", "it was cut")
    table = aedat4._read_header(data, "x")[1]
    check_cut(tmp_path, "aedat4", data, len(data) - 2, 111_954, {"data_table": 1}, table,
              r"\(file data table\): expected a whole file data table: a complete LZ4 frame")


def test_our_aedat4_table_points_at_payloads_as_dv_does() -> None:
    """DV's table gives each packet's payload offset (after its 8-byte header); so does our writer."""
    data = real_file("sample.aedat4").read_bytes()
    first = aedat4._read_header(data, "x")[3]
    assert _dv_table(data)[0][0] == first + 8
    ours = enc("aedat4", compression="lz4", packet_events=15)
    assert [r[0] for r in _dv_table(ours)] == [p + 8 for p, _ in _packets(ours)]


# ------------------------------------------------------------------------------- order: the fewest dropped

def _brute_longest(t: list[int]) -> tuple[int, ...]:
    """Indices of the longest non-decreasing subsequence, the earliest of equally long ones (exhaustive)."""
    for r in range(len(t), -1, -1):
        for idx in itertools.combinations(range(len(t)), r):
            if all(t[a] <= t[b] for a, b in zip(idx, idx[1:])):
                return idx
    return ()


def test_longest_ordered_equals_exhaustive_search() -> None:
    g = np.random.default_rng(0)
    for _ in range(1500):
        t = g.integers(0, 5, g.integers(0, 9)).astype(np.int64)
        assert tuple(np.flatnonzero(longest_ordered(t))) == _brute_longest(t.tolist()), t


@pytest.mark.parametrize("t,kept", [
    ([10, 20, 5, 30], [10, 20, 30]),
    ([50, 40, 60], [50, 60]),                       # a tie: the earlier event stays
    ([1, 100, 2, 3, 4], [1, 2, 3, 4]),              # one forward jump: one event, not all after it
    ([9, 1, 2, 3], [1, 2, 3]),                      # the first event wrong: it goes, not the three after it
    ([3, 3, 1, 3], [3, 3, 3]),                      # equal times are in order
])
def test_order_salvage_drops_the_fewest(t: list[int], kept: list[int]) -> None:
    ev = make_events(t, [0] * len(t), [0] * len(t), [1] * len(t))
    out, dropped = finish(ev, "x", "test", W=1, H=1, ordered=True, strict=False)
    assert out["t"].tolist() == kept and dropped == {"backward_time": len(t) - len(kept)}


def test_a_clean_stream_takes_the_fast_path_untouched() -> None:
    ev = EV.events
    out, dropped = finish(ev, "x", "test", W=60, H=40, ordered=True, strict=False)
    assert out is ev and dropped == {}


def _forward(ev: Events, i: int, t: int) -> Events:
    e = ev.events.copy()
    e["t"][i] = t
    return Events(e, ev.sensor_size)


@pytest.mark.parametrize("fmt", ["nmnist", "dat", "aedat2", "aedat3", "aedat4"])
def test_one_time_corrupted_forward_costs_one_event(fmt: str) -> None:
    ev = random_events(300, 34, 34, t_max=2**22, seed=5)
    kw = {"aedat2": {"chip": "davis346"}}.get(fmt, {})
    bad = _forward(Events(ev.events, (346, 260, 2)) if fmt == "aedat2" else ev, 100, 2**23 - 1)
    data = enc(fmt, bad, **kw)
    decode = get_format(fmt).module.decode
    with pytest.raises(EventFormatError, match=rf"\(event 101\): expected timestamps in order.*after t={2**23 - 1}"):
        decode(data)
    got = decode(data, strict=False)
    assert got.meta["dropped"] == {"backward_time": 1}
    assert_same(got.events, np.delete(bad.events, 100))


def test_real_recordings_with_one_time_corrupted_forward(tmp_path: Path) -> None:
    data = bytearray(real_file("sample_nmnist.bin").read_bytes())
    intact = read_events(bytes(data), format="nmnist").events
    t = 8_386_407
    data[5 * 1000 + 2] = (data[5 * 1000 + 2] & 0x80) | (t >> 16)       # event 1000: byte 2 keeps its polarity bit
    data[5 * 1000 + 3:5 * 1000 + 5] = bytes([(t >> 8) & 0xFF, t & 0xFF])
    (tmp_path / "fwd.bin").write_bytes(bytes(data))
    got = read_events(tmp_path / "fwd.bin", strict=False)
    assert got.meta["dropped"] == {"backward_time": 1} and len(got) == 4324
    assert_same(got.events, np.delete(intact, 1000))
    dat = bytearray(real_file("gen4.dat").read_bytes())
    body = len(dat) - 8 * 1_218_618
    dat[body + 8 * 600_000:body + 8 * 600_000 + 4] = struct.pack("<I", 4_000_000_000)
    got = prophesee_dat.decode(bytes(dat), strict=False)
    assert got.meta["dropped"] == {"backward_time": 1} and len(got) == 1_218_617
    assert_same(got.events, np.delete(prophesee_dat.decode(real_file("gen4.dat").read_bytes()).events, 600_000))


# ------------------------------------------------------------------------------------- one stated origin

def test_cut_messages_count_from_one_stated_origin() -> None:
    """``byte X`` is from the start of the file; every other number says what it counts from, and they add up."""
    for fmt, mod in (("dat", prophesee_dat), ("aedat2", aedat2), ("evt2", evt2), ("evt3", evt3)):
        data = enc(fmt, **({"chip": "davis346"} if fmt == "aedat2" else {}))[:-1]
        with pytest.raises(EventFormatError) as info:
            mod.decode(data)
        m = re.search(r"after the (\d+)-byte header.*got (\d+) bytes after it \((\d+) whole \w+\), (\d+) left over",
                      str(info.value))
        assert m, str(info.value)
        header, after, whole, left = (int(v) for v in m.groups())
        assert header + after == len(data) and info.value.offset == len(data) - left, str(info.value)
    data = enc("nmnist", random_events(9, 34, 34, seed=2))[:-1]
    with pytest.raises(EventFormatError, match=r"byte 40: .*got 44 bytes \(8 whole events\), 4 left over"):
        nmnist_bin.decode(data)
    data = enc("aedat3", packet_events=7)[:-1]
    with pytest.raises(EventFormatError) as info:
        aedat31.decode(data)
    left = int(re.search(r"got (\d+) bytes left in the file", str(info.value)).group(1))
    assert info.value.offset + left == len(data)

"""Shared helpers of the ``test_formats_*`` files (random streams, error assertions) and the tests
of the plumbing every reader uses: text headers, atomic writes, the format registry."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from spikeforge.data.events import Events, make_events
from spikeforge.data.formats import (
    EventFormatError,
    available_formats,
    detect_format,
    get_format,
    read_events,
    write_events,
)
from spikeforge.data.formats._io import text_header, to_int


def random_events(n: int, W: int, H: int, t_max: int = 1_000_000, seed: int = 0,
                  sort: bool = True) -> Events:
    """``n`` uniform events on ``W × H`` with ``t`` in ``[0, t_max)``, time-sorted by default."""
    g = np.random.default_rng(seed)
    t = g.integers(0, t_max, n)
    if sort:
        t = np.sort(t)
    return Events(make_events(t, g.integers(0, W, n), g.integers(0, H, n), g.integers(0, 2, n)),
                  (W, H, 2))


def assert_same(a: np.ndarray, b: np.ndarray) -> None:
    """Equal event arrays, field by field (a clear diff on failure)."""
    assert a.shape == b.shape, (a.shape, b.shape)
    for k in ("t", "x", "y", "p"):
        np.testing.assert_array_equal(a[k], b[k], err_msg=f"field {k}")


def raises_at(offset: int | None, *fragments: str):
    """``pytest.raises(EventFormatError)`` that also checks the byte offset and message parts."""
    class _Ctx:
        def __enter__(self):
            self.cm = pytest.raises(EventFormatError)
            self.info = self.cm.__enter__()
            return self.info

        def __exit__(self, *exc):
            ok = self.cm.__exit__(*exc)
            err = self.info.value
            assert err.offset == offset, f"offset {err.offset} != {offset}: {err}"
            for f in fragments:
                assert re.search(f, str(err)), f"{f!r} not in {err}"
            return ok
    return _Ctx()


# ------------------------------------------------------------------------------------------ tests

def test_text_header_stops_at_binary_and_end_marker():
    data = b"% a 1\r\n% b two\n%\x00\x01binary"
    assert text_header(data, b"%") == ([" a 1", " b two"], 15, 0)
    data = b"% evt 3.0\n% end\n% not header\n"
    assert text_header(data, b"%", end_markers=(b"% end",)) == ([" evt 3.0", " end"], 16, 0)
    assert text_header(b"", b"#") == ([], 0, 0)


def test_text_header_cut_inside_a_line():
    data = b"% a 1\n% geometry 12"                      # cut inside "% geometry 1280x720\n"
    assert text_header(data, b"%") == ([" a 1", " geometry 12"], 19, 0)     # sniffing a head: the last line
    with raises_at(19, "the end of the header line that starts at byte 6", "cut inside its header"):
        text_header(data, b"%", source="f.raw")
    assert text_header(data, b"%", source="f.raw", strict=False) == ([" a 1"], 6, 13)   # left out, counted


def test_to_int_refuses_non_ascii_digits():
    assert to_int(" 720 ") == 720
    assert to_int("\u00b2") is None and to_int("9" * 40) is None and to_int("") is None


def test_registry_names_aliases_and_unknown():
    assert get_format("SHD").name == "hdf5_spikes" and get_format("aedat31").name == "aedat3"
    with pytest.raises(ValueError, match="known formats: nmnist"):
        get_format("tiff")
    assert set(available_formats(writable=True)) >= {"nmnist", "aedat3", "aedat4", "dat"}


def test_detect_magic_before_extension():
    assert detect_format(b"#!AER-DAT3.1\r\n", "x.bin").name == "aedat3"
    assert detect_format(b"% evt 3.0\n", "x.dat").name == "evt3"
    assert detect_format(b"% Height 10\n% Width 5\n\x00\x08", "x.raw").name == "dat"
    assert detect_format(b"\x01\x02\x03\x04\x05", "x.bin").name == "nmnist"
    with raises_at(0, "AEDAT version 2.0, 3.1 or 4.0"):
        detect_format(b"#!AER-DAT1.0\r\n", "x.aedat")
    with raises_at(0, "EVT 2.0 or 3.0"):
        detect_format(b"% evt 2.1\n", "x.raw")
    with raises_at(0, "x.xyz", "known event file", "nmnist"):
        detect_format(b"\x00" * 10, "x.xyz")


def test_read_write_events_by_path_and_bytes(tmp_path: Path):
    ev = random_events(50, 34, 34, t_max=300_000)
    p = write_events(tmp_path / "s.bin", ev)
    back = read_events(p)
    assert_same(back.events, ev.events)
    assert_same(read_events(p.read_bytes(), format="nmnist").events, ev.events)
    with pytest.raises(FileExistsError):
        write_events(p, ev)
    with pytest.raises(ValueError, match="from its extension"):
        write_events(tmp_path / "s.xyz", ev)
    with pytest.raises(ValueError, match="no writer for asl_mat"):
        write_events(tmp_path / "s.mat", ev, format="asl_mat")
    with pytest.raises(ValueError, match="outside the sensor"):
        write_events(tmp_path / "t.bin", ev.events, sensor_size=(10, 10, 2))


def test_error_is_a_picklable_value_error():
    import pickle
    e = EventFormatError("f.bin", 12, "a thing", "other", "nmnist")
    assert isinstance(e, ValueError)
    e2 = pickle.loads(pickle.dumps(e))
    assert str(e2) == str(e) == "f.bin: byte 12: expected a thing, got other [nmnist]"

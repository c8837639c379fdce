"""SHD/SSC HDF5, ASL-DVS ``.mat`` and DVS-Lip ``.npy``: small files built with h5py / scipy / numpy
directly in the datasets' own layouts (no real files here), conversions and errors."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest

from spikeforge.data.formats import asl_mat, dvslip_npy, hdf5_spikes, read_events, write_events
from spikeforge.data.formats.errors import EventFormatError
from tests.data.test_formats_common import assert_same, raises_at, random_events

h5py = pytest.importorskip("h5py")


def shd_file(path, times: list[list[float]], units: list[list[int]], labels: list[int]) -> None:
    """The SHD layout: vlen float32 seconds, vlen uint16 channels, uint16 labels, extra/speaker."""
    with h5py.File(path, "w") as f:
        ft = f.create_dataset("spikes/times", (len(times),), dtype=h5py.vlen_dtype(np.float32))
        fu = f.create_dataset("spikes/units", (len(units),), dtype=h5py.vlen_dtype(np.uint16))
        for i, (t, u) in enumerate(zip(times, units)):
            ft[i], fu[i] = np.asarray(t, np.float32), np.asarray(u, np.uint16)
        f["labels"] = np.asarray(labels, np.uint16)
        f["extra/speaker"] = np.zeros(len(labels), np.uint16)


def test_shd_sample_by_index(tmp_path):
    p = tmp_path / "shd_test.h5"
    shd_file(p, [[0.0, 0.0011, 0.5], [1.25]], [[0, 699, 3], [42]], [7, 19])
    ev = read_events(p, index=0)
    e = ev.events
    assert ev.sensor_size == (700, 1, 2) and ev.meta["label"] == 7 and ev.meta["n_samples"] == 2
    assert e["t"].tolist() == [0, 1100, 500_000]  # float32(0.0011) s = 1099.99999 µs: rounded
    assert e["x"].tolist() == [0, 699, 3] and e["y"].tolist() == [0, 0, 0]
    assert e["p"].tolist() == [1, 1, 1]
    last = read_events(p, format="shd", index=-1)
    assert last.events["t"].tolist() == [1_250_000] and last.meta["label"] == 19
    samples, labels = hdf5_spikes.read_samples(p)
    assert len(samples) == 2 and labels.tolist() == [7, 19]
    assert_same(samples[0].events, e)
    assert_same(read_events(p.read_bytes(), index=0).events, e)


def test_shd_needs_index_and_checks_channels(tmp_path):
    p = tmp_path / "a.h5"
    shd_file(p, [[0.1], [0.2]], [[1], [2]], [0, 1])
    with pytest.raises(ValueError, match="holds 2 samples; pass index="):
        read_events(p)
    with pytest.raises(IndexError):
        read_events(p, index=2)
    q = tmp_path / "b.h5"
    shd_file(q, [[0.1, 0.2]], [[1, 700]], [0])
    with pytest.raises(EventFormatError, match=r"units in \[0, 700\)"):
        read_events(q)
    with raises_at(None, "spikes/times", "HDF5 container"):
        with h5py.File(tmp_path / "c.h5", "w") as f:
            f["other"] = np.zeros(3)
        read_events(tmp_path / "c.h5")


def asl_bytes(**cols) -> bytes:
    sio = pytest.importorskip("scipy.io")
    buf = io.BytesIO()
    sio.savemat(buf, {k: np.asarray(v).reshape(-1, 1) for k, v in cols.items()})
    return buf.getvalue()


def test_asl_mat_flips_y_and_maps_polarity():
    data = asl_bytes(x=[0, 239, 5], y=[0, 179, 10], ts=[10, 20, 30], pol=[1, 0, -1])
    ev = asl_mat.decode(data)
    e = ev.events
    assert ev.sensor_size == (240, 180, 2)
    assert e["x"].tolist() == [0, 239, 5] and e["y"].tolist() == [179, 0, 169]
    assert e["p"].tolist() == [1, 0, 0] and e["t"].tolist() == [10, 20, 30]
    assert asl_mat.decode(data, flip_y=False).events["y"].tolist() == [0, 179, 10]


def test_asl_mat_errors():
    with raises_at(None, "coordinates inside the 240×180 sensor", "x=240"):
        asl_mat.decode(asl_bytes(x=[240], y=[0], ts=[1], pol=[1]))
    with raises_at(None, "times >= 0", "ts=-5"):
        asl_mat.decode(asl_bytes(x=[1], y=[0], ts=[-5], pol=[1]))
    with raises_at(None, "integers in", "ts"):
        asl_mat.decode(asl_bytes(x=[1], y=[0], ts=[1.5], pol=[1]))
    salvaged = asl_mat.decode(asl_bytes(x=[240, 3], y=[0, 4], ts=[1, 2], pol=[1, 1]), strict=False)
    assert salvaged.events["x"].tolist() == [3] and salvaged.meta["dropped"] == {"outside_sensor": 1}
    with raises_at(None, "x, y, ts, pol", "missing"):
        asl_mat.decode(asl_bytes(x=[1], y=[0], ts=[1]))
    with raises_at(None, "equal length"):
        asl_mat.decode(asl_bytes(x=[1, 2], y=[0], ts=[1], pol=[1]))
    with raises_at(0, "MATLAB 5.0"):
        asl_mat.decode(b"not a mat file")
    with raises_at(128, "element of at most 14 bytes", "56"):
        asl_mat.decode(asl_bytes(x=[1], y=[0], ts=[1], pol=[1])[:150])
    with raises_at(124, "MAT version 0x0100"):
        asl_mat.decode(b"MATLAB 5.0 MAT-file".ljust(124) + b"\x00\x02IM")


def mat_matrix(name: str, values: np.ndarray, cls: int = 6) -> bytes:
    """One miMATRIX element by hand (MAT-File Format ch. 1): flags, dims, name, real part."""
    def elem(typ: int, payload: bytes) -> bytes:
        return struct.pack("<II", typ, len(payload)) + payload + bytes(-len(payload) % 8)
    body = (elem(6, struct.pack("<II", cls, 0)) + elem(5, struct.pack("<ii", values.size, 1))
            + elem(1, name.encode()) + elem({np.dtype("u1"): 2, np.dtype("<f8"): 9,
                                             np.dtype("<i4"): 5}[values.dtype], values.tobytes()))
    return struct.pack("<II", 14, len(body)) + body


def test_asl_mat_hand_assembled_narrow_types_and_compression():
    head = b"MATLAB 5.0 MAT-file, hand made".ljust(116) + bytes(8) + b"\x00\x01IM"
    x = mat_matrix("x", np.array([3, 200], "u1"))             # a double array stored as uint8
    y = mat_matrix("y", np.array([0.0, 179.0]))
    ts = mat_matrix("ts", np.array([7, 2**30], "<i4"), cls=12)
    pol = mat_matrix("pol", np.array([1, 0], "u1"), cls=9)
    packed = zlib.compress(pol)
    data = head + x + y + ts + struct.pack("<II", 15, len(packed)) + packed
    ev = asl_mat.decode(data)
    e = ev.events
    assert e["x"].tolist() == [3, 200] and e["y"].tolist() == [179, 0]
    assert e["t"].tolist() == [7, 2**30] and e["p"].tolist() == [1, 0]
    with raises_at(len(data) - len(packed) - 8, "at most 39 bytes", "42"):
        asl_mat.decode(data[:-3])                     # the element is cut short
    cut = head + struct.pack("<II", 15, len(packed) - 3) + packed[:-3]
    with raises_at(len(head) + 8, "complete zlib stream"):
        asl_mat.decode(cut)                           # the zlib stream is cut short


def test_asl_mat_compressed_by_scipy():
    sio = pytest.importorskip("scipy.io")
    buf = io.BytesIO()
    sio.savemat(buf, {"x": [[1], [2]], "y": [[3], [4]], "ts": [[5], [6]], "pol": [[0], [1]]},
                do_compression=True)
    ev = asl_mat.decode(buf.getvalue())
    assert ev.events["y"].tolist() == [176, 175] and ev.events["t"].tolist() == [5, 6]


def test_dvslip_npy_any_structured_layout():
    arr = np.zeros(3, dtype=[("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "?")])
    arr["t"], arr["x"], arr["y"], arr["p"] = [5, 6, 7], [0, 127, 3], [127, 0, 4], [True, False, 1]
    buf = io.BytesIO()
    np.save(buf, arr)
    ev = dvslip_npy.decode(buf.getvalue())
    assert ev.sensor_size == (128, 128, 2)
    assert ev.events["x"].tolist() == [0, 127, 3] and ev.events["p"].tolist() == [1, 0, 1]


def test_dvslip_npy_errors_and_round_trip(tmp_path):
    ev = random_events(300, 128, 128, seed=4)
    p = write_events(tmp_path / "w.npy", ev)
    assert_same(read_events(p).events, ev.events)
    data = p.read_bytes()
    with raises_at(len(data) - 300 * 13, "bytes of array data", "truncated"):
        dvslip_npy.decode(data[:-1])
    buf = io.BytesIO()
    np.save(buf, np.zeros((3, 4)))
    with raises_at(8, "structured array"):
        dvslip_npy.decode(buf.getvalue())
    buf = io.BytesIO()
    np.save(buf, np.array([(1, 5, 0, 1), (1, 200, 0, 1)],
                          dtype=[("t", "i8"), ("x", "i4"), ("y", "i4"), ("p", "i1")]))
    bad = buf.getvalue()
    with raises_at(len(bad) - 17, "x in", "inside the sensor"):      # the second 17-byte record
        dvslip_npy.decode(bad)
    with raises_at(0, ".npy header"):
        dvslip_npy.decode(b"\x93NUMPY\x09\x00garbage")

"""Fuzzing every reader with random and mutated bytes (hypothesis).

Each reader gets three kinds of input: random bytes, its magic / header followed by random bytes,
and valid files (from our writers and hand-made bytes) with bytes flipped, set, inserted, deleted,
duplicated or cut off. Whatever comes in, a reader either returns a stream that passes
``check_events`` with an output no larger than a fixed multiple of the input, or raises
``EventFormatError``; anything else (IndexError, struct.error, a library's own exception) fails.

``make test`` runs ``FAST`` examples per reader (derandomized: the same inputs every run);
``make test-all`` runs ``SLOW`` more, randomized, under ``@pytest.mark.slow``.

HDF5 is the exception: libhdf5 itself can loop forever on corrupted *metadata* (about one mutated
file in a thousand hung in our runs, inside ``H5Dread`` of a vlen dataset), so for ``hdf5_spikes``
the mutations target the spike payload, the labels and truncation only. See the module docstring
of ``formats/hdf5_spikes.py``.
"""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikeforge.data.events import check_events
from spikeforge.data.formats import EventFormatError, aedat4, get_format
from tests.data.test_formats_common import random_events

FAST, SLOW = 1_000, 100_000
# output bytes per input byte a reader may produce (EVT3: 12 events per 2-byte word × 13 bytes;
# AEDAT4: packets decompress up to 256×)
RATIO = {"evt3": 80, "aedat4": 256 * 13 // 16 + 1}


def _seeds() -> dict[str, list[bytes]]:
    ev = random_events(40, 60, 40, t_max=3 * 2**24, seed=1)
    small = random_events(6, 30, 30, t_max=2**20, seed=2)
    enc = lambda name, e, **kw: b"".join(get_format(name).module.encode(e, **kw))  # noqa: E731
    seeds = {
        "nmnist": [enc("nmnist", ev), enc("nmnist", small)],
        "aedat2": [enc("aedat2", ev, chip="dvs128"), enc("aedat2", ev, chip="davis346")],
        "aedat3": [enc("aedat3", ev, packet_events=10), enc("aedat3", small)],
        "aedat4": [enc("aedat4", ev, compression="none", packet_events=15),
                   enc("aedat4", small, compression="lz4"), enc("aedat4", small,
                                                               compression="zstd")],
        "dat": [enc("dat", ev), enc("dat", small)],
        "evt2": [enc("evt2", ev), enc("evt2", small)],
        "evt3": [enc("evt3", ev), b"% evt 3.0\n% geometry 60x40\n" + np.array(
            [0x8001, 0x6010, 0x0007, 0x2801, 0x3805, 0x4801, 0x50F1, 0x8000, 0x2003],
            "<u2").tobytes()],
        "dvslip_npy": [enc("dvslip_npy", small)],
    }
    try:
        import scipy.io as sio
        buf = io.BytesIO()
        sio.savemat(buf, {k: np.arange(1, 5).reshape(-1, 1) for k in ("x", "y", "ts", "pol")})
        buf2 = io.BytesIO()
        sio.savemat(buf2, {"x": [[1], [2]], "y": [[3], [4]], "ts": [[5], [6]], "pol": [[0], [1]]},
                    do_compression=True)
        seeds["asl_mat"] = [buf.getvalue(), buf2.getvalue()]
    except ImportError:
        pass
    return seeds


SEEDS = _seeds()
MAGIC = {"aedat2": b"#!AER-DAT2.0\r\n", "aedat3": b"#!AER-DAT3.1\r\n#!END-HEADER\r\n",
         "aedat4": b"#!AER-DAT4.0\r\n", "dat": b"% Version 2\n\x0c\x08", "evt2": b"% evt 2.0\n",
         "evt3": b"% evt 3.0\n", "nmnist": b"", "asl_mat": b"MATLAB 5.0 MAT-file",
         "dvslip_npy": b"\x93NUMPY\x01\x00", "hdf5_spikes": b"\x89HDF\r\n\x1a\n"}


@st.composite
def mutated(draw, seed: bytes) -> bytes:
    d = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["set", "flip", "cut", "insert", "delete", "dup", "int"]))
        i = draw(st.integers(0, max(len(d) - 1, 0)))
        if op == "set" and d:
            d[i] = draw(st.integers(0, 255))
        elif op == "flip" and d:
            d[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del d[i:]
        elif op == "insert":
            d[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del d[i:i + draw(st.integers(1, 16))]
        elif op == "dup":
            d[i:i] = d[i:i + draw(st.integers(1, 64))]
        elif op == "int" and len(d) >= i + 4:   # a whole size / offset field set to an extreme
            d[i:i + 4] = struct.pack("<I", draw(st.sampled_from([0, 1, 2**31 - 1, 2**31, 2**32 - 1,
                                                                 len(d), len(d) + 1])))
    return bytes(d)


def inputs(name: str) -> st.SearchStrategy[bytes]:
    kinds = [st.binary(max_size=512), st.binary(max_size=512).map(lambda b: MAGIC[name] + b)]
    kinds += [mutated(s) for s in SEEDS.get(name, [])]
    return st.one_of(*kinds)


def check_reader(name: str, data: bytes, strict: bool = True) -> None:
    decode = get_format(name).module.decode
    try:
        ev = decode(data, "<fuzz>", strict=strict)
    except EventFormatError as e:
        assert e.source == "<fuzz>" and (e.offset is None or 0 <= e.offset <= len(data)), str(e)
        return
    check_invariants(name, ev)
    assert ev.events.nbytes <= RATIO.get(name, 8) * len(data) + 4096


def check_invariants(name: str, ev) -> None:
    """No silent change: whatever decodes satisfies every guarantee of its format — coordinates inside the
    sensor, polarity 0/1, times >= 0, and in order where the format stores them in order."""
    check_events(ev.events, ev.sensor_size, source=name)
    t = ev.events["t"]
    assert not t.size or int(t.min()) >= 0, f"{name}: negative time {int(t.min())}"
    if get_format(name).ordered and t.size > 1:
        assert bool(np.all(np.diff(t) >= 0)), f"{name}: times out of order"


READERS = ["nmnist", "aedat2", "aedat3", "aedat4", "dat", "evt2", "evt3", "asl_mat", "dvslip_npy"]
_FAST = settings(max_examples=FAST, deadline=None, derandomize=True, database=None,
                 suppress_health_check=list(HealthCheck))
_SLOW = settings(max_examples=SLOW, deadline=None, database=None,
                 suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("name", READERS)
@_FAST
@given(data=st.data())
def test_fuzz_reader(name: str, data: st.DataObject) -> None:
    if name == "asl_mat":
        pytest.importorskip("scipy.io")
    check_reader(name, data.draw(inputs(name)))


@pytest.mark.parametrize("name", READERS)
@settings(_FAST, max_examples=FAST // 4)
@given(data=st.data())
def test_fuzz_reader_salvage(name: str, data: st.DataObject) -> None:
    """``strict=False`` (salvage: cut files, bad events dropped) holds to the same guarantees."""
    if name == "asl_mat":
        pytest.importorskip("scipy.io")
    check_reader(name, data.draw(inputs(name)), strict=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", READERS)
@_SLOW
@given(data=st.data())
def test_fuzz_reader_slow(name: str, data: st.DataObject) -> None:
    if name == "asl_mat":
        pytest.importorskip("scipy.io")
    check_reader(name, data.draw(inputs(name)))


# ------------------------------------------------------------------------------- HDF5 (restricted)

def _shd_seed() -> tuple[bytes, list[tuple[int, int]]]:
    h5py = pytest.importorskip("h5py")
    times = [np.array([0.125, 0.25, 0.375], np.float32), np.array([0.5], np.float32)]
    units = [np.array([11, 222, 333], np.uint16), np.array([444], np.uint16)]
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        ft = f.create_dataset("spikes/times", (2,), dtype=h5py.vlen_dtype(np.float32))
        fu = f.create_dataset("spikes/units", (2,), dtype=h5py.vlen_dtype(np.uint16))
        for i in range(2):
            ft[i], fu[i] = times[i], units[i]
        f["labels"] = np.array([3, 4], np.uint16)
    seed = buf.getvalue()
    spans = []                              # byte ranges holding the payload values
    for arr in [*times, *units, np.array([3, 4], np.uint16)]:
        raw = arr.tobytes()
        at = seed.find(raw)
        assert at >= 0
        spans.append((at, at + len(raw)))
    return seed, spans


@st.composite
def shd_inputs(draw, seed: bytes, spans: list[tuple[int, int]]) -> bytes:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.binary(max_size=512))
    if kind == 1:
        return MAGIC["hdf5_spikes"] + draw(st.binary(max_size=512))
    if kind == 2:
        return seed[:draw(st.integers(0, len(seed) - 1))]
    d = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        lo, hi = draw(st.sampled_from(spans))
        d[draw(st.integers(lo, hi - 1))] = draw(st.integers(0, 255))
    return bytes(d)


def _check_shd(data: bytes) -> None:
    from spikeforge.data.formats import hdf5_spikes
    try:
        ev = hdf5_spikes.decode(data, "<fuzz>", index=0)
    except EventFormatError:
        return
    check_invariants("hdf5_spikes", ev)


@_FAST
@given(data=st.data())
def test_fuzz_hdf5_spikes(data: st.DataObject) -> None:
    seed, spans = _shd_seed()
    _check_shd(data.draw(shd_inputs(seed, spans)))


@pytest.mark.slow
@_SLOW
@given(data=st.data())
def test_fuzz_hdf5_spikes_slow(data: st.DataObject) -> None:
    seed, spans = _shd_seed()
    _check_shd(data.draw(shd_inputs(seed, spans)))


def test_aedat4_seeds_are_valid():
    """The seeds themselves decode: mutations start from real structure, not from noise."""
    for s in SEEDS["aedat4"]:
        assert len(aedat4.decode(s)) > 0

"""The inference seam: PatternModel (classify owns the NaN rule), the engine registry, the streaming helpers."""

import os
import sys
import threading
import time

import numpy as np
import pytest

from al4dstem.base import PatternModel
from al4dstem.data import Preprocessing
from al4dstem.engines import get_engine, known_engines, run_engine
from al4dstem.engines.local import predict_dataset
from al4dstem.errors import Al4dstemError
from al4dstem.models import CNNClassifier
from al4dstem.models.trained import TrainedNetwork, as_pattern_model
from al4dstem.streaming import ordered_map, prefetch

DET = 32


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("seam") / "model.pt"
    clf = CNNClassifier(network="default", preprocessing=Preprocessing(size=16), random_state=0)
    clf.initialize((DET, DET)).save(path)
    return clf, TrainedNetwork.load(path)


def patterns(n=20, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).poisson(3.0, size=(n, DET, DET)).astype(dtype)


def test_trained_network_is_a_pattern_model_and_a_fitted_classifier_adapts(trained):
    clf, net = trained
    assert isinstance(net, PatternModel)
    assert as_pattern_model(net) is net
    adapted = as_pattern_model(clf)
    assert isinstance(adapted, PatternModel) and adapted.preprocessing_ is clf.preprocessing_
    raw = patterns()
    a, ok_a = net.classify(raw)
    b, ok_b = adapted.classify(raw)
    assert ok_a.all() and ok_b.all()
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a, clf.predict_proba(raw), atol=1e-5)
    with pytest.raises(Al4dstemError, match="not a fitted pattern model"):
        as_pattern_model(object())


def test_classify_owns_the_nan_rule_and_the_chunking(trained):
    _, net = trained
    raw = patterns(150)  # more than one network chunk
    raw[3, 0, 0] = np.nan
    raw[140, 5, 5] = -np.inf
    probs, ok = net.classify(raw)
    assert probs.dtype == np.float32 and probs.shape == (150, 3)
    assert list(np.flatnonzero(~ok)) == [3, 140]
    assert np.isnan(probs[~ok]).all() and np.allclose(probs[ok].sum(1), 1, atol=1e-5)
    single, ok1 = net.classify(raw[0])
    np.testing.assert_allclose(single[0], probs[0], atol=1e-6)
    assert ok1.all()
    with pytest.raises(Al4dstemError, match="24 x 24"):
        net.classify(np.zeros((2, 24, 24), np.uint16))


def test_a_non_finite_network_output_is_not_valid(trained):
    _, net = trained

    class Broken(TrainedNetwork):
        def forward_preprocessed(self, x):
            out = super().forward_preprocessed(x)
            out[1] = np.nan
            return out

    broken = Broken(net.name, net.network_, net.preprocessing_, net.detector_shape_, net.payload)
    probs, ok = broken.classify(patterns(4))
    assert list(ok) == [True, False, True, True] and np.isnan(probs[1]).all()


def test_engines_are_chosen_by_name(trained):
    _, net = trained
    assert known_engines()[:2] == ["local", "libertem"]
    assert get_engine("local") is predict_dataset
    assert get_engine("al4dstem.engines.local:predict_dataset") is predict_dataset
    data = patterns(12, np.uint16).reshape(3, 4, DET, DET)
    probs, valid = run_engine("local", net, data, batch_size=5, workers=None)  # None options are dropped
    assert probs.shape == (3, 4, 3) and valid.all()
    with pytest.raises(Al4dstemError, match="unknown engine 'spark'.*local, libertem"):
        get_engine("spark")
    with pytest.raises(Al4dstemError, match="the local engine does not take --workers"):
        run_engine("local", net, data, workers=2)
    with pytest.raises(Al4dstemError, match="no function 'nothing'"):
        get_engine("al4dstem.engines.local:nothing")


def test_prefetch_stops_its_thread_when_the_consumer_stops():
    made = []

    def items():
        for i in range(1000):
            made.append(i)
            yield i

    for i in prefetch(items(), depth=2):
        if i == 3:
            break
    time.sleep(0.2)
    assert len(made) <= 3 + 1 + 2 + 1  # at most depth (+ the one being put) ahead
    assert not [t for t in threading.enumerate() if t.name == "al4dstem-prefetch"]


def test_ordered_map_keeps_order_bounds_work_in_flight_and_passes_errors():
    running, most = [0], [0]
    lock = threading.Lock()

    def slow(i):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.01 * (i % 3))
        with lock:
            running[0] -= 1
        return i * i

    assert list(ordered_map(slow, range(30), threads=3, ahead=4)) == [i * i for i in range(30)]
    assert most[0] <= 3

    def fails(i):
        if i == 5:
            raise ValueError("chunk 5")
        return i

    with pytest.raises(ValueError, match="chunk 5"):
        list(ordered_map(fails, range(10), threads=2))


def test_memory_mapped_files_are_read_with_pread_at_the_right_offsets(trained, tmp_path):
    from al4dstem.data import open_dataset
    from al4dstem.engines.local import _FileReader

    _, net = trained
    frames = patterns(40, np.uint16, seed=3)
    np.save(tmp_path / "stack.npy", frames)  # 40 frames, the scan takes the first 35 as 5 x 7
    ds = open_dataset(tmp_path / "stack.npy", scan_shape="5x7")
    with _FileReader(ds.array, buffers=2) as reader:
        batches = []
        for b in ds.iter_batches(14):
            got = reader.read(b.patterns)
            assert not isinstance(got, np.memmap)  # read from the file into a buffer, not the map
            batches.append(got.copy())
            reader.release(batches[-1])  # a copy: not lent, nothing happens
            reader.release(got)
        lent = [reader.read(ds.array[r].reshape(-1, DET, DET)) for r in (1, 4)]  # both buffers lent
        np.testing.assert_array_equal(lent[0], frames[7:14])
        np.testing.assert_array_equal(lent[1], frames[28:35])
        reader.release(lent[0])
        whole = reader.read(ds.array[1:3].reshape(-1, DET, DET))  # reuses the buffer given back
    np.testing.assert_array_equal(np.concatenate(batches), frames[:35])
    np.testing.assert_array_equal(whole, frames[7:21])
    np.testing.assert_array_equal(lent[1], frames[28:35])  # still lent: not overwritten
    probs, valid = predict_dataset(net, ds, batch_size=6)
    expected, _ = net.classify(frames[:35])
    np.testing.assert_allclose(probs.reshape(-1, 3), expected, atol=1e-6)
    with _FileReader(frames) as reader:  # an array in memory passes through
        assert reader.read(frames[:3]).base is frames


def _cached_fraction(path) -> float:
    """The share of ``path``'s pages in the page cache (``mincore`` on a mapping that touches none)."""
    import ctypes
    import mmap

    m = np.memmap(path, dtype=np.uint8, mode="r")
    pages = -(-m.size // mmap.PAGESIZE)
    resident = (ctypes.c_ubyte * pages)()
    rc = ctypes.CDLL(None, use_errno=True).mincore(ctypes.c_void_p(m.__array_interface__["data"][0]),
                                                   ctypes.c_size_t(m.size), resident)
    del m
    if rc != 0:
        pytest.skip("mincore is not available here")
    return sum(v & 1 for v in resident) / pages


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="page cache control is Linux's")
def test_a_file_larger_than_memory_is_dropped_from_the_page_cache_as_it_is_read(tmp_path, monkeypatch):
    from al4dstem.engines import local
    from al4dstem.engines.local import _FileReader

    # 8 MiB: the few pages the kernel holds back from dropping (per-CPU lists) are a small share
    frames = np.random.default_rng(5).integers(0, 60000, size=(16, 16, 128, 128), dtype=np.uint16)
    with open(tmp_path / "f.npy", "wb") as f:
        np.save(f, frames)
        f.flush()
        os.fsync(f.fileno())  # dirty pages are never dropped from the cache: written to disk first
    data = np.load(tmp_path / "f.npy", mmap_mode="r")

    def read_all(**options):
        with _FileReader(data, buffers=1, **options) as reader:
            for r in range(16):
                got = reader.read(data[r])
                np.testing.assert_array_equal(got, frames[r])
                reader.release(got)

    read_all(drop_cache=False)
    if _cached_fraction(tmp_path / "f.npy") < 0.9:
        pytest.skip("this file system does not keep the file in the page cache")
    read_all()  # smaller than memory: stays cached for the next pass
    assert _cached_fraction(tmp_path / "f.npy") > 0.9
    # a file larger than memory is read from the disk: start with none of it cached
    fd = os.open(tmp_path / "f.npy", os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    if _cached_fraction(tmp_path / "f.npy") > 0.2:
        pytest.skip("this file system does not drop pages on request (tmpfs)")
    monkeypatch.setattr(local, "_memory_bytes", lambda: 1 << 20)  # a machine smaller than the file
    read_all()
    assert _cached_fraction(tmp_path / "f.npy") < 0.2


def test_a_reader_waiting_for_a_buffer_gives_up_when_stopped(tmp_path):
    from al4dstem.engines.local import _FileReader

    frames = patterns(8, np.uint16)
    np.save(tmp_path / "f.npy", frames.reshape(2, 4, DET, DET))
    data = np.load(tmp_path / "f.npy", mmap_mode="r")
    with _FileReader(data, buffers=1) as reader:
        reader.read(data[0])  # the only buffer, never given back
        threading.Timer(0.2, reader.stop).start()
        with pytest.raises(Al4dstemError, match="stopped"):
            reader.read(data[1])


def test_a_chunked_hdf5_scan_maps_chunk_by_chunk_to_the_same_map(trained, tmp_path):
    import h5py

    from al4dstem.data import open_dataset

    _, net = trained
    frames = patterns(5 * 7, np.uint16, seed=4).reshape(5, 7, DET, DET)
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f.create_dataset("scan", data=frames, chunks=(2, 3, DET, DET), compression="gzip")
    ds = open_dataset(tmp_path / "c.h5")
    assert ds.scan_chunks() == (2, 3)
    seen = []
    probs, valid = predict_dataset(net, ds, batch_size=4, progress=lambda done, total: seen.append(done))
    expected, _ = net.classify(frames.reshape(-1, DET, DET))
    np.testing.assert_allclose(probs.reshape(-1, 3), expected, atol=1e-6)
    assert valid.all() and seen[-1] == 35 and seen == sorted(seen)
    assert len(seen) == 9  # one batch per chunk (3 x 3 chunks; 6 patterns > 4: a chunk is never split)

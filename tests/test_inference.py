"""Streaming inference (al4dstem.engines.local): equals whole-scan prediction, flags NaN, stays bounded."""

import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from al4dstem.data import Dataset, Preprocessing, open_dataset
from al4dstem.engines.local import _prefetch, predict_dataset
from al4dstem.errors import Al4dstemError
from al4dstem.models import CNNClassifier

DET = 32  # detector side of the test scans
SIZE = 16  # network input side


def make_model(network="default", detector=DET):
    """An untrained (initialised) classifier: weights do not matter for the engine."""
    clf = CNNClassifier(network=network, preprocessing=Preprocessing(size=SIZE), random_state=0)
    return clf.initialize((detector, detector))


def scan(rows=7, cols=6, detector=DET, dtype=np.uint16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.poisson(3.0, size=(rows, cols, detector, detector)).astype(dtype)


@pytest.fixture(scope="module")
def model():
    return make_model()


@pytest.mark.parametrize("batch_size", [1, 5, 12, 30, 10_000])  # 12 = 2 rows: 7 rows do not divide
def test_streaming_equals_whole_scan(model, batch_size):
    data = scan()
    expected = model.predict_proba(data.reshape(-1, DET, DET)).reshape(7, 6, 3)
    seen = []
    probs, valid = predict_dataset(model, data, batch_size=batch_size, progress=lambda d, t: seen.append((d, t)))
    assert probs.dtype == np.float32 and probs.shape == (7, 6, 3)
    assert valid.all()
    np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-5)
    assert seen[-1] == (42, 42) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_memory_mapped_file_gives_the_same_map(model, tmp_path):
    data = scan(rows=9, cols=5, seed=1)
    np.save(tmp_path / "d.npy", data)
    ds = open_dataset(tmp_path / "d.npy")
    from_file, _ = predict_dataset(model, ds, batch_size=10)
    from_memory, _ = predict_dataset(model, data, batch_size=45)
    np.testing.assert_allclose(from_file, from_memory, rtol=1e-4, atol=1e-5)
    assert np.array_equal(ds.load(), data)  # unmapping pages lost nothing


def test_nan_patterns_are_flagged_and_not_classified(model):
    data = scan(dtype=np.float32, seed=2)
    data[1, 2, 3, 4] = np.nan
    data[3, 0, :, :] = np.inf
    probs, valid = predict_dataset(model, data, batch_size=12)
    bad = np.zeros((7, 6), bool)
    bad[1, 2] = bad[3, 0] = True
    assert np.array_equal(valid, ~bad)
    assert np.isnan(probs[bad]).all() and np.isfinite(probs[~bad]).all()
    good = model.predict_proba(data[~bad])
    np.testing.assert_allclose(probs[~bad], good, rtol=1e-4, atol=1e-5)


class CountingArray:
    """A 4-D array-like that counts reads and can fail on the n-th one."""

    def __init__(self, data, fail_at=None):
        self.data, self.fail_at, self.reads = data, fail_at, 0
        self.shape, self.dtype = data.shape, data.dtype

    def __getitem__(self, key):
        self.reads += 1
        if self.fail_at is not None and self.reads >= self.fail_at:
            raise RuntimeError("disk gone")
        return self.data[key]


def test_detector_mismatch_refused_before_any_read(model):
    arr = CountingArray(scan(detector=24))
    with pytest.raises(Al4dstemError, match=r"24.*32|32.*24"):
        predict_dataset(model, Dataset(arr))
    assert arr.reads == 0


def test_reader_error_reaches_the_caller_and_threads_stop(model):
    before = threading.active_count()
    with pytest.raises(RuntimeError, match="disk gone"):
        predict_dataset(model, Dataset(CountingArray(scan(), fail_at=3)), batch_size=6)
    assert not [t for t in threading.enumerate() if t.name == "al4dstem-prefetch"]
    assert threading.active_count() <= before + 2  # at most the preprocessing pool's workers remain


def test_prefetch_runs_at_most_depth_ahead():
    produced = []

    def items():
        for i in range(20):
            produced.append(i)
            yield i

    spent = {"wait": 0.0}
    for consumed, item in enumerate(_prefetch(items(), spent, depth=2), start=1):
        time.sleep(0.005)
        assert item == consumed - 1
        assert len(produced) <= consumed + 2 + 1  # queue of 2, plus one made and waiting
    assert len(produced) == 20


def test_torch_threads_are_restored(model):
    old = torch.get_num_threads()
    predict_dataset(model, scan(rows=2), n_threads=1)
    assert torch.get_num_threads() == old


def _rss_file_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    raise RuntimeError("no RssFile")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RssFile is Linux's")
def test_pages_of_a_mapped_scan_do_not_stay_resident(tmp_path):
    big = make_model(detector=128)
    data = np.random.default_rng(3).integers(0, 5, size=(16, 64, 128, 128), dtype=np.uint16)  # 32 MiB
    np.save(tmp_path / "a.npy", data)
    np.save(tmp_path / "b.npy", data)
    predict_dataset(big, data[:1], batch_size=64)  # warm up: libraries' own pages
    before = _rss_file_kb()
    mapped = open_dataset(tmp_path / "a.npy")
    predict_dataset(big, mapped, batch_size=64)
    streamed = _rss_file_kb() - before  # measured while the file is still mapped
    plain = np.load(tmp_path / "b.npy", mmap_mode="r")
    int(plain.sum(dtype=np.uint64))  # an ordinary read of a memory map keeps its pages
    kept = _rss_file_kb() - before - streamed
    assert kept > 24_000
    assert streamed < kept / 4

"""The lazy Dataset: streaming order, random access, scan-wide views."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from al4dstem.data import Dataset, open_dataset
from al4dstem.errors import Al4dstemError


def numbered(rows, cols, det=(4, 5), dtype=np.float32):
    """Pattern at (x, y) holds the value y * cols + x everywhere: easy to check placement."""
    idx = np.arange(rows * cols, dtype=np.float64).reshape(rows, cols, 1, 1)
    return np.broadcast_to(idx, (rows, cols, *det)).astype(dtype)


class Sliceable:
    """A minimal array-like (no numpy behind it): only shape, dtype and __getitem__."""

    def __init__(self, arr):
        self._arr, self.shape, self.dtype = arr, arr.shape, arr.dtype

    def __getitem__(self, key):
        return self._arr[key].copy()


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 9), cols=st.integers(1, 9), batch=st.integers(1, 40), wrapped=st.booleans())
def test_streaming_covers_every_position_once_in_scan_order(rows, cols, batch, wrapped):
    arr = numbered(rows, cols)
    ds = Dataset(Sliceable(arr) if wrapped else arr)
    seen, values, next_start = [], [], 0
    for b in ds.iter_batches(batch):
        assert b.start == next_start and b.stop > b.start
        assert len(b.positions) == len(b.patterns) == b.stop - b.start
        assert len(b.positions) <= batch  # a row wider than the batch is read in pieces
        assert b.start % cols == 0 or b.positions[:, 1].min() == b.positions[:, 1].max()
        next_start = b.stop
        seen.append(b.positions)
        values.append(b.patterns[:, 0, 0])
    assert next_start == rows * cols
    seen = np.concatenate(seen)
    np.testing.assert_array_equal(seen, ds.all_positions())
    np.testing.assert_array_equal(seen[:, 1] * cols + seen[:, 0], np.arange(rows * cols))
    np.testing.assert_array_equal(np.concatenate(values), np.arange(rows * cols))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 12), wrapped=st.booleans())
def test_get_and_pattern_agree_with_the_array(seed, n, wrapped):
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 1000, (5, 7, 6, 4)).astype(np.uint16)
    ds = Dataset(Sliceable(arr) if wrapped else arr)
    pos = np.stack([rng.integers(0, 7, n), rng.integers(0, 5, n)], axis=1)
    got = ds.get(pos)
    assert got.shape == (n, 6, 4) and got.dtype == np.uint16
    for (x, y), pattern in zip(pos, got, strict=True):
        np.testing.assert_array_equal(pattern, arr[y, x])
        np.testing.assert_array_equal(ds.pattern(x, y), arr[y, x])


def test_shape_properties_and_load():
    arr = numbered(3, 4, det=(6, 5), dtype=np.uint16)
    ds = Dataset(arr, "x.npy", "npy", 123)
    assert ds.shape == (3, 4, 6, 5) and ds.scan_shape == (3, 4) and ds.detector_shape == (6, 5)
    assert ds.n_positions == 12 and ds.nbytes == arr.nbytes and ds.dtype == np.uint16
    assert "4 x 3 (cols x rows)" in repr(ds)
    np.testing.assert_array_equal(ds.load(), arr)


def test_bad_positions_and_shapes_are_user_errors():
    ds = Dataset(numbered(3, 4))
    with pytest.raises(Al4dstemError, match="x=4, y=0 is outside the 4 x 3 scan"):
        ds.get([(4, 0)])
    with pytest.raises(Al4dstemError, match="outside"):
        ds.pattern(0, -1)
    with pytest.raises(Al4dstemError, match="expected a 4-D dataset"):
        Dataset(np.zeros((3, 4, 5)), "cube.npy")
    with pytest.raises(Al4dstemError, match="empty dataset"):
        Dataset(np.zeros((0, 4, 5, 5)))
    with pytest.raises(Al4dstemError, match="not numbers"):
        Dataset(np.zeros((1, 1, 2, 2), dtype=object))


def test_nonfinite_positions_streaming():
    arr = numbered(4, 5)
    arr[1, 3, 2, 2] = np.nan
    arr[3, 0, 0, 1] = -np.inf
    ds = Dataset(arr)
    for batch in (1, 5, 7, 100):
        np.testing.assert_array_equal(ds.nonfinite_positions(batch), [[3, 1], [0, 3]])
    assert Dataset(numbered(4, 5, dtype=np.uint16)).nonfinite_positions().shape == (0, 2)
    calls = []
    ds.nonfinite_positions(5, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (20, 20) and len(calls) == 4


def test_virtual_bright_field_finds_the_beam_despite_a_hot_pixel():
    rows, cols, k = 3, 4, 32
    yy, xx = np.mgrid[:k, :k]
    disk = ((yy - 20) ** 2 + (xx - 11) ** 2) <= 9
    arr = np.zeros((rows, cols, k, k), np.float32)
    arr[:, :, disk] = 10.0
    arr[:, :, 2, 30] = 1e4  # a hot pixel far from the beam, brighter than it
    arr[1, 2, disk] = 5.0  # a darker position
    arr[2, 3, 25, 5] = np.nan  # outside the disk: reported, not in the image
    ds = Dataset(arr)
    mask = ds.detector_mask(radius=4)
    assert mask[20, 11] and not mask[2, 30]
    survey = ds.survey(radius=4)
    want = arr[..., mask].sum(axis=-1)
    np.testing.assert_allclose(survey.virtual_image, np.nan_to_num(want))
    np.testing.assert_array_equal(survey.nonfinite, [[3, 2]])
    np.testing.assert_allclose(ds.virtual_image("bright-field", radius=4), survey.virtual_image)
    annular = ds.virtual_image("annular", radius=4)
    assert annular[0, 0] == pytest.approx(1e4)
    with pytest.raises(Al4dstemError, match="unknown virtual detector"):
        ds.virtual_image("dark-matter")


def test_h5py_backed_dataset_is_lazy_and_correct(tmp_path):
    arr = numbered(6, 5, det=(8, 8), dtype=np.uint16)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_dataset("scan", data=arr, chunks=(1, 1, 8, 8))
    ds = open_dataset(tmp_path / "d.h5")
    assert isinstance(ds.array, h5py.Dataset)  # nothing loaded up front
    np.testing.assert_array_equal(ds.get([(4, 5), (0, 0)]), arr[[5, 0], [4, 0]])
    np.testing.assert_array_equal(np.concatenate([b.patterns for b in ds.iter_batches(7)]),
                                  arr.reshape(-1, 8, 8))


def test_read_failures_become_one_line_errors():
    class Failing(Sliceable):
        def __getitem__(self, key):
            raise OSError("Can't read data (inflate() failed)\nmore detail")

    ds = Dataset(Failing(numbered(2, 2)), "broken.h5:data")
    with pytest.raises(Al4dstemError, match=r"^broken.h5:data: cannot read scan rows 0..1 \(Can't read data") as e:
        next(ds.iter_batches())
    assert "\n" not in str(e.value)


class ChunkCounter:
    """An h5py dataset that counts the storage chunks each read touches (a chunk read twice counts twice)."""

    def __init__(self, dset):
        self.dset, self.shape, self.dtype, self.chunks = dset, dset.shape, dset.dtype, dset.chunks
        self.reads = 0

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        spans = []
        for axis, k in enumerate(key[:2]):
            if isinstance(k, slice):
                lo, hi, _ = k.indices(self.shape[axis])
            else:
                lo, hi = int(k), int(k) + 1
            spans.append(len(range(lo // self.chunks[axis], -(-hi // self.chunks[axis]))))
        whole_rows = -(-self.shape[1] // self.chunks[1])
        self.reads += spans[0] * (spans[1] if len(spans) > 1 else whole_rows)
        return self.dset[key]


@pytest.mark.parametrize("chunks", [(2, 3), (3, 7), (1, 7), (4, 2), (5, 7)])
@pytest.mark.parametrize("batch", [1, 5, 12, 40])
def test_storage_order_reads_every_hdf5_chunk_once_and_places_every_pattern(tmp_path, chunks, batch):
    arr = numbered(5, 7, det=(4, 4), dtype=np.uint16)
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f.create_dataset("scan", data=arr, chunks=(*chunks, 4, 4))
    with h5py.File(tmp_path / "c.h5", "r") as f:
        counted = ChunkCounter(f["scan"])
        ds = Dataset(counted)
        assert ds.scan_chunks() == chunks
        n_chunks = -(-5 // chunks[0]) * -(-7 // chunks[1])
        placed = np.full(35, -1.0)
        for b in ds.iter_batches(batch, order="storage"):
            assert len(b.positions) <= max(batch, chunks[0] * chunks[1])  # a chunk larger than a batch is one batch
            assert placed[b.index].max() == -1  # never a position twice
            placed[b.index] = b.patterns[:, 0, 0]
            np.testing.assert_array_equal(b.positions[:, 1] * 7 + b.positions[:, 0], np.arange(35)[b.index])
        np.testing.assert_array_equal(placed, np.arange(35))  # the value of a pattern is its flat index
        assert counted.reads == n_chunks  # whole chunks, each read once
        counted.reads = 0
        image = ds.virtual_image()  # a scan-wide pass streams in storage order too
        assert counted.reads == n_chunks + 9  # + the 9 single patterns that find the beam
        np.testing.assert_allclose(image, Dataset(arr).virtual_image())


def test_scan_order_rereads_chunks_that_storage_order_reads_once(tmp_path):
    arr = numbered(6, 8, det=(4, 4), dtype=np.uint16)
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f.create_dataset("scan", data=arr, chunks=(3, 4, 4, 4))
    with h5py.File(tmp_path / "c.h5", "r") as f:
        counted = ChunkCounter(f["scan"])
        list(Dataset(counted).iter_batches(4))  # scan order: pieces of rows, each chunk read 3 times
        assert counted.reads == 12
        counted.reads = 0
        list(Dataset(counted).iter_batches(4, order="storage"))
        assert counted.reads == 4


def test_storage_order_of_unchunked_data_is_scan_order(tmp_path):
    arr = numbered(4, 6, det=(4, 4), dtype=np.uint16)
    np.save(tmp_path / "s.npy", arr)
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f.create_dataset("scan", data=arr)  # contiguous
    for path in (tmp_path / "s.npy", tmp_path / "s.h5"):
        ds = open_dataset(path)
        assert ds.scan_chunks() is None
        runs = [(b.start, b.stop) for b in ds.iter_batches(5, order="storage")]
        assert runs == [(b.start, b.stop) for b in ds.iter_batches(5)]  # sequential: a memory map is read in order
    with pytest.raises(ValueError, match="order"):
        next(ds.iter_batches(5, order="random"))


def test_dask_chunks_are_storage_chunks():
    da = pytest.importorskip("dask.array")
    from al4dstem.data.arrays import LazyFrames

    arr = numbered(5, 7, det=(4, 4), dtype=np.uint16)
    ds = Dataset(LazyFrames(da.from_array(arr, chunks=(2, 3, 4, 4))))
    assert ds.scan_chunks() == (2, 3)
    placed = np.full(35, -1.0)
    for b in ds.iter_batches(6, order="storage"):
        placed[b.index] = b.patterns[:, 0, 0]
    np.testing.assert_array_equal(placed, np.arange(35))
    assert Dataset(LazyFrames(da.from_array(arr, chunks=((2, 3), 7, 4, 4)))).scan_chunks() is None  # irregular


class FrameChunkCounter:
    """An h5py stack of frames that counts the storage chunks each read touches."""

    def __init__(self, dset):
        self.dset, self.shape, self.dtype, self.chunks = dset, dset.shape, dset.dtype, dset.chunks
        self.reads = 0

    def __getitem__(self, key):
        lo, hi, _ = key.indices(self.shape[0])
        k = self.chunks[0]
        self.reads += len(range(lo // k, -(-hi // k)))
        return self.dset[key]

    def __len__(self):
        return self.shape[0]


@pytest.mark.parametrize("k", [3, 6, 35, 40])
@pytest.mark.parametrize("batch", [1, 5, 12, 40])
def test_a_chunked_frame_stack_given_a_scan_shape_streams_whole_chunks_once(tmp_path, k, batch):
    from al4dstem.data.arrays import FlatFrames

    frames = numbered(1, 40, det=(4, 4), dtype=np.uint16)[0]  # 40 frames; a 5 x 7 scan uses 35
    with h5py.File(tmp_path / "stack.h5", "w") as f:
        f.create_dataset("frames", data=frames, chunks=(k, 4, 4))
    assert open_dataset(tmp_path / "stack.h5", scan_shape="5x7").frame_bounds() is not None  # as users open it
    with h5py.File(tmp_path / "stack.h5", "r") as f:
        counted = FrameChunkCounter(f["frames"])
        ds = Dataset(FlatFrames(counted, 5, 7))
        placed = np.full(35, -1.0)
        for b in ds.iter_batches(batch, order="storage"):
            assert len(b.positions) <= max(batch, k)  # a chunk larger than a batch is one batch
            assert placed[b.index].max() == -1
            placed[b.index] = b.patterns[:, 0, 0]
            np.testing.assert_array_equal(b.positions[:, 1] * 7 + b.positions[:, 0], np.arange(35)[b.index])
        np.testing.assert_array_equal(placed, np.arange(35))
        assert counted.reads == -(-35 // k)  # the chunks the scan touches, each read once
        counted.reads = 0
        list(ds.iter_batches(batch))  # scan order: runs of rows of 7, which cut across chunks of 3
        if k == 3 and batch < 35:
            assert counted.reads > -(-35 // k)


def test_frame_stacks_of_several_files_align_to_each_file_s_chunks():
    from al4dstem.data.arrays import ConcatFrames, FlatFrames, frame_chunk_bounds

    class Chunked(np.ndarray):
        chunks = None

    def part(n, k):
        a = np.arange(n, dtype=np.uint16)[:, None, None].repeat(2, 1).repeat(2, 2).view(Chunked)
        a.chunks = (k, 2, 2) if k else None
        return a

    stack = ConcatFrames([part(10, 4), part(7, 3)])  # chunks 0-4-8-10, then 10-13-16-17
    np.testing.assert_array_equal(frame_chunk_bounds(stack), [0, 4, 8, 10, 13, 16, 17])
    assert frame_chunk_bounds(ConcatFrames([part(10, None), part(7, None)])) is None  # contiguous files
    mixed = Dataset(FlatFrames(ConcatFrames([part(8, 4), part(1000, None)]), 36, 28))  # a contiguous file too
    sizes = [len(b.positions) for b in mixed.iter_batches(16, order="storage")]
    assert max(sizes) <= 16 and sum(sizes) == 1008  # never the whole contiguous file at once
    ds = Dataset(FlatFrames(stack, 4, 4))
    runs = [(b.start, b.stop) for b in ds.iter_batches(6, order="storage")]
    assert runs == [(0, 4), (4, 10), (10, 16)]  # whole chunks, at most 6 frames; the 17th frame is unused
    assert Dataset(FlatFrames(np.zeros((16, 2, 2)), 4, 4)).frame_bounds() is None  # in memory: scan order

"""Array adapters that let a ``Dataset`` read any lazy source with plain numpy indexing.

A ``Dataset`` reads its array with four kinds of key: ``array[r0:r1]`` (whole scan rows),
``array[y, x]`` (one pattern), ``array[y, c0:c1]`` (a piece of a row) and ``array[:]``. The
adapters here answer those keys with numpy arrays:

- ``LazyFrames``: a dask array (what rosettasciio returns when reading lazily), computed slice
  by slice on the calling thread, so memory holds one batch and never the scan;
- ``FlatFrames``: a stack of frames ``(n, det_rows, det_cols)`` seen as a ``(rows, cols, ...)``
  scan (``--scan-shape``), using the first ``rows x cols`` frames;
- ``ConcatFrames``: several frame stacks one after the other (a detector writing a scan in
  several files, such as DECTRIS ARINA's ``data_000001.h5``, ``data_000002.h5``, ...).

Read failures (a file cut short under a memory map, a damaged compressed chunk) come out as
``OSError`` so the ``Dataset`` turns them into one line naming the file.
"""

from __future__ import annotations

import numpy as np


class LazyFrames:
    """A dask array read with numpy keys; every read is computed at once, single-threaded."""

    def __init__(self, darray):
        self.darray = darray
        self.shape = tuple(int(s) for s in darray.shape)
        self.dtype = np.dtype(darray.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key) -> np.ndarray:
        try:
            # synchronous: the caller's thread reads (the inference engine already reads on its own
            # thread), and a batch never waits on a pool sized for the whole machine
            return np.asarray(self.darray[key].compute(scheduler="synchronous"))
        except (OSError, EOFError):
            raise
        except (ValueError, RuntimeError, TypeError, KeyError) as e:  # decoders raise anything on damaged data
            if isinstance(key, (slice, int, np.integer, tuple)):
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise OSError(f"{type(e).__name__}: {first}") from None
            raise

    def __array__(self, dtype=None, copy=None):
        data = self[:]
        return data if dtype is None else data.astype(dtype)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def chunk_bytes(self) -> int:
        """Bytes of the largest chunk: what one read may have to decode at most."""
        biggest = [max(c) if c else 0 for c in self.darray.chunks]
        return int(np.prod(biggest)) * self.dtype.itemsize


class FlatFrames:
    """Frames ``(n, det_rows, det_cols)`` read as a ``(rows, cols, det_rows, det_cols)`` scan.

    Frame ``row * cols + col`` is the pattern at scan row ``row``, column ``col`` (the order a
    detector writes a raster scan in). Frames beyond ``rows * cols`` are not used.
    """

    def __init__(self, frames, rows: int, cols: int):
        self.frames = frames
        self.rows, self.cols = int(rows), int(cols)
        self.shape = (self.rows, self.cols, *(int(s) for s in frames.shape[1:]))
        self.dtype = np.dtype(frames.dtype)
        self.ndim = 4

    def _frames(self, start: int, stop: int) -> np.ndarray:
        return np.asarray(self.frames[start:stop])

    def read_frames(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start:stop`` of the scan, flat (row-major) positions, ``(n, det_rows, det_cols)``."""
        return self._frames(start, stop)

    def frame_bounds(self) -> np.ndarray | None:
        """Where the stack's storage chunks start and end, in frames of this scan (``[0, ..., rows * cols]``);
        None when the frames are not stored in chunks (a memory map, contiguous HDF5)."""
        bounds = frame_chunk_bounds(self.frames)
        if bounds is None:
            return None
        n = self.rows * self.cols
        return np.unique(np.clip(np.append(bounds, n), 0, n))

    def __getitem__(self, key) -> np.ndarray:
        cols = self.cols
        if isinstance(key, slice):
            r0, r1, step = key.indices(self.rows)
            if step != 1:
                raise IndexError("scan rows are read in order, step 1")
            block = self._frames(r0 * cols, max(r0, r1) * cols)
            return block.reshape(max(0, r1 - r0), cols, *self.shape[2:])
        if isinstance(key, tuple) and len(key) == 2:
            row, col = key
            row = _index(row, self.rows)
            if isinstance(col, slice):
                c0, c1, step = col.indices(cols)
                if step != 1:
                    raise IndexError("scan columns are read in order, step 1")
                return self._frames(row * cols + c0, row * cols + max(c0, c1))
            return self._frames(row * cols + _index(col, cols), row * cols + _index(col, cols) + 1)[0]
        if isinstance(key, (int, np.integer)):
            return self[_index(key, self.rows):_index(key, self.rows) + 1][0]
        raise IndexError(f"unsupported scan index {key!r}")

    def __array__(self, dtype=None, copy=None):
        data = self[:]
        return data if dtype is None else data.astype(dtype)

    def __len__(self) -> int:
        return self.rows


class ConcatFrames:
    """Frame stacks ``(n_i, det_rows, det_cols)`` read as one ``(sum n_i, det_rows, det_cols)`` stack."""

    def __init__(self, parts: list):
        if not parts:
            raise ValueError("no frame stacks")
        self.parts = parts
        self.starts = np.cumsum([0] + [int(p.shape[0]) for p in parts])
        self.shape = (int(self.starts[-1]), *(int(s) for s in parts[0].shape[1:]))
        self.dtype = np.dtype(parts[0].dtype)
        self.ndim = 3

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self[_index(key, self.shape[0]):_index(key, self.shape[0]) + 1][0]
        if not isinstance(key, slice):
            raise IndexError(f"unsupported frame index {key!r}")
        start, stop, step = key.indices(self.shape[0])
        if step != 1:
            raise IndexError("frames are read in order, step 1")
        out = np.empty((max(0, stop - start), *self.shape[1:]), dtype=self.dtype)
        done = 0
        for i, part in enumerate(self.parts):
            lo, hi = max(start, self.starts[i]), min(stop, self.starts[i + 1])
            if lo < hi:
                out[done:done + hi - lo] = part[lo - self.starts[i]:hi - self.starts[i]]
                done += hi - lo
        return out

    def __len__(self) -> int:
        return self.shape[0]


def frame_chunk_bounds(frames) -> np.ndarray | None:
    """The frame indices at which a stack's storage chunks begin, and its length: ``[0, k, 2k, ..., n]``.

    Chunks of an h5py dataset along its frame axis, a Dask array's blocks (``LazyFrames``), each
    part of a ``ConcatFrames`` (every data file of an ARINA series has its own; a part stored in
    one piece counts as one chunk per frame, so it is batched like any other); None for storage in
    one piece (memory maps, contiguous HDF5, arrays, a single Dask block) or one frame per chunk,
    where any order reads each chunk once.
    """
    n = int(frames.shape[0])
    if isinstance(frames, ConcatFrames):
        own = [frame_chunk_bounds(part) for part in frames.parts]
        if all(b is None for b in own):
            return None
        return np.unique(np.concatenate([start + (b if b is not None else np.arange(len(part) + 1))
                                         for start, part, b in zip(frames.starts[:-1], frames.parts, own,
                                                                   strict=True)]))
    if isinstance(frames, LazyFrames):
        sizes = frames.darray.chunks[0]
        if len(sizes) < 2 or max(sizes) <= 1:
            return None
    else:
        chunks = getattr(frames, "chunks", None)  # h5py: the chunk shape, None when contiguous
        if not isinstance(chunks, tuple) or not chunks or not isinstance(chunks[0], (int, np.integer)) \
                or int(chunks[0]) <= 1:
            return None
        k = int(chunks[0])
        sizes = [k] * (n // k) + ([n % k] if n % k else [])
    return np.cumsum([0, *sizes]).astype(np.int64)


def _index(i, size: int) -> int:
    i = int(i)
    if i < 0:
        i += size
    if not 0 <= i < size:
        raise IndexError(f"index {i} is out of range for {size}")
    return i

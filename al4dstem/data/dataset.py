"""The lazy 4D-STEM dataset every module works with.

A ``Dataset`` wraps any array-like of shape ``(scan_rows, scan_cols, det_rows, det_cols)`` that
supports slicing of its first axis (a numpy memmap, an h5py dataset, a folder of PNGs, ...).
Patterns are read on demand, by positions or streamed in scan order; the whole scan is only
loaded by ``load()``. Positions are ``(x, y)`` = (scan column, scan row).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np

from al4dstem.data.calibration import Calibration
from al4dstem.errors import Al4dstemError

Progress = Callable[[int, int], None]  # (patterns done, patterns in total)
# Virtual-image values are kept within half the largest float64, so the difference of any two (a
# display stretch) stays finite: finite data, however extreme, never shows as NaN/inf.
IMAGE_LIMIT = float(np.finfo(np.float64).max) / 2
# Shapes beyond any 4D-STEM scan: a forged header (an HDF5 dataset declared 2**20 x 2**20, stored
# sparse) is refused up front instead of failing to allocate a scan-sized image later.
MAX_POSITIONS = 1 << 32
MAX_PATTERN_PIXELS = 1 << 26  # 8192 x 8192


@dataclass
class Batch:
    """Patterns read together, with where they are in the scan.

    In scan order (``iter_batches``' default) a batch is a run: flat positions ``start:stop``
    (index = row * cols + col), whole scan rows or a piece of one row. In storage order it may
    be a rectangle of the scan (whole chunks of a chunked file): ``start`` and ``stop`` are then
    None and ``index`` alone says where its patterns go.
    """

    start: int | None
    stop: int | None
    positions: np.ndarray  # (n, 2) int64, (x, y)
    patterns: np.ndarray  # (n, det_rows, det_cols), the file's dtype

    @property
    def index(self) -> slice | np.ndarray:
        """Flat scan indices of the patterns: ``out.reshape(-1)[batch.index] = ...`` places results."""
        if self.start is not None:
            return slice(self.start, self.stop)
        return self.flat

    flat: np.ndarray | None = None  # flat scan indices of a rectangle (storage order); None for a run


@dataclass
class Survey:
    """What one streaming pass over a scan tells: a virtual image and the broken patterns."""

    virtual_image: np.ndarray  # (rows, cols) float64; NaN where the detector region was not finite
    # (finite sums beyond +-IMAGE_LIMIT are saturated there, never turned into inf)
    nonfinite: np.ndarray  # (k, 2) int64 (x, y) of patterns holding NaN or inf

    def marked_image(self) -> np.ndarray:
        """The virtual image with every non-finite pattern set to NaN (wherever its bad pixels are)."""
        image = self.virtual_image.copy()
        image[self.nonfinite[:, 1], self.nonfinite[:, 0]] = np.nan
        return image


class Dataset:
    """Lazy access to a 4D-STEM scan.

    Parameters
    ----------
    array : array-like, 4-D, indexable as ``array[r0:r1]`` and ``array[y, x]``.
    source : where it came from (path or description), used in messages.
    format : short name of the file format.
    size_on_disk : bytes on disk, if known.
    calibration : scan step, detector pixel size and beam energy as the file gives them
        (``al4dstem.data.calibration.Calibration``; uncalibrated when None).
    reader : how the data are read (e.g. ``rosettasciio 0.15.0, lazy``), for people.
    notes : remarks about how the file was understood (a scan shape given or guessed, frames left
        out), shown by ``al4dstem info``.
    path : the file or folder read, when there is one (provenance fingerprints it).
    """

    def __init__(self, array, source: str = "<array>", format: str = "array", size_on_disk: int | None = None,
                 calibration=None, reader: str = "", notes=(), path=None):
        shape = tuple(int(s) for s in array.shape)
        if len(shape) != 4:
            raise Al4dstemError(
                f"{source}: expected a 4-D dataset (scan_rows, scan_cols, det_rows, det_cols), got shape {shape}"
            )
        if min(shape) < 1:
            raise Al4dstemError(f"{source}: empty dataset, shape {shape}")
        if shape[0] * shape[1] > MAX_POSITIONS or shape[2] * shape[3] > MAX_PATTERN_PIXELS:
            raise Al4dstemError(f"{source}: shape {shape} is beyond any 4D-STEM scan (at most {MAX_POSITIONS:,} "
                                f"positions of at most {MAX_PATTERN_PIXELS:,} pixels): a damaged or forged header?")
        if np.dtype(array.dtype).kind not in "uif":
            raise Al4dstemError(f"{source}: holds {array.dtype} values, not numbers")
        self.array = array
        self.source = source
        self.format = format
        self.size_on_disk = size_on_disk
        self.calibration = calibration if calibration is not None else Calibration()
        self.reader = reader
        self.notes = tuple(notes)
        self.path = path

    # ------------------------------------------------------------------ shape
    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(int(s) for s in self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    @property
    def scan_shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of the scan."""
        return self.shape[:2]

    @property
    def detector_shape(self) -> tuple[int, int]:
        return self.shape[2:]

    @property
    def n_positions(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def __repr__(self) -> str:
        rows, cols = self.scan_shape
        return (f"Dataset({self.source!r}, format={self.format}, scan={cols} x {rows} (cols x rows), "
                f"detector={self.detector_shape}, dtype={self.dtype})")

    # ------------------------------------------------------------------ access
    def all_positions(self) -> np.ndarray:
        """Every ``(x, y)`` in scan order (row by row), shape ``(n, 2)``."""
        rows, cols = self.scan_shape
        yy, xx = np.mgrid[0:rows, 0:cols]
        return np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.int64)

    def check_positions(self, positions) -> np.ndarray:
        pos = np.asarray(positions, dtype=np.int64).reshape(-1, 2)
        rows, cols = self.scan_shape
        bad = (pos[:, 0] < 0) | (pos[:, 0] >= cols) | (pos[:, 1] < 0) | (pos[:, 1] >= rows)
        if bad.any():
            x, y = pos[bad][0]
            raise Al4dstemError(f"{self.source}: position x={x}, y={y} is outside the {cols} x {rows} scan")
        return pos

    def pattern(self, x: int, y: int) -> np.ndarray:
        """The diffraction pattern at scan column ``x``, row ``y``."""
        self.check_positions([(x, y)])
        return np.asarray(self._read((int(y), int(x)), f"position x={x}, y={y}"))

    def get(self, positions) -> np.ndarray:
        """Patterns at ``positions`` ((n, 2) as (x, y)), shape ``(n, det_rows, det_cols)``."""
        pos = self.check_positions(positions)
        if isinstance(self.array, np.ndarray):  # memmaps and arrays: one fancy-indexed read
            return np.asarray(self._read((pos[:, 1], pos[:, 0]), f"{len(pos)} positions"))
        out = np.empty((len(pos), *self.detector_shape), dtype=self.dtype)
        for i, (x, y) in enumerate(pos):
            out[i] = self._read((int(y), int(x)), f"position x={x}, y={y}")
        return out

    def iter_batches(self, batch_size: int = 256, order: str = "scan") -> Iterator[Batch]:
        """Stream the scan, at most ``batch_size`` patterns per batch (see ``order``).

        ``order="scan"``: in scan order. Whole scan rows are read together when they fit (one
        contiguous read); a row wider than ``batch_size`` is read in pieces, so memory never
        grows with the scan's size or width.

        ``order="storage"``: in the file's own order, for passes that place results by
        ``Batch.index``. A chunked file (HDF5, a lazy Dask array) is read in whole chunks, chunk
        after chunk as they are laid out (row-major over the chunk grid), never a chunk twice: a
        batch is one or more whole chunks (a single chunk larger than ``batch_size`` is one
        batch). A chunked stack of frames given a scan shape (an ARINA series, an HDF5 stack) is
        read the same way, runs of whole chunks of frames, which need not end at a scan row.
        Anything else (memory-mapped raw files, contiguous HDF5) is stored in scan order and
        streams as ``order="scan"``, a sequential read.
        """
        if order not in ("scan", "storage"):
            raise ValueError(f"order must be 'scan' or 'storage', got {order!r}")
        rows, cols = self.scan_shape
        batch_size = max(1, int(batch_size))
        chunks = self.scan_chunks() if order == "storage" else None
        if chunks is not None:
            yield from self._iter_chunks(batch_size, *chunks)
            return
        bounds = self.frame_bounds() if order == "storage" else None
        if bounds is not None:
            yield from self._iter_frame_chunks(batch_size, bounds)
            return
        if cols <= batch_size:
            step = batch_size // cols
            for r0 in range(0, rows, step):
                r1 = min(rows, r0 + step)
                block = np.asarray(self._read(slice(r0, r1), f"scan rows {r0}..{r1 - 1}"))
                yield self._batch(r0 * cols, r1 * cols, block)
            return
        for r in range(rows):
            for c0 in range(0, cols, batch_size):
                c1 = min(cols, c0 + batch_size)
                block = np.asarray(self._read((r, slice(c0, c1)), f"scan row {r}, columns {c0}..{c1 - 1}"))
                yield self._batch(r * cols + c0, r * cols + c1, block)

    def scan_chunks(self) -> tuple[int, int] | None:
        """``(rows, cols)`` of scan positions per storage chunk of a chunked array, else None.

        An h5py dataset's ``chunks``, or a Dask array's (``LazyFrames``) when its chunks are
        regular; None for contiguous storage (memory maps, contiguous HDF5, arrays).
        """
        chunks = getattr(self.array, "chunks", None)
        darray = getattr(self.array, "darray", None)
        if chunks is None and darray is not None:
            sizes = darray.chunks  # Dask: the sizes along each axis; regular when all but the last are equal
            if all(len(set(axis[:-1])) <= 1 and (len(axis) < 2 or axis[-1] <= axis[0]) for axis in sizes[:2]):
                chunks = tuple(axis[0] for axis in sizes)
        if not isinstance(chunks, tuple) or len(chunks) != 4:
            return None
        rows, cols = self.scan_shape
        cr, cc = max(1, min(int(chunks[0]), rows)), max(1, min(int(chunks[1]), cols))
        return None if (cr, cc) == (1, 1) else (cr, cc)  # one pattern per chunk: any order reads each once

    def frame_bounds(self) -> np.ndarray | None:
        """For a stack of frames given a scan shape (``--scan-shape``) and stored in chunks: the
        flat scan positions where its chunks begin, and the scan's size; else None."""
        bounds = getattr(self.array, "frame_bounds", None)
        readable = callable(getattr(self.array, "read_frames", None))
        return bounds() if callable(bounds) and readable else None

    def _iter_frame_chunks(self, batch_size: int, bounds: np.ndarray) -> Iterator[Batch]:
        """Runs of whole chunks of a frame stack, in order: as many as fit in ``batch_size``
        patterns, at least one (a chunk larger than ``batch_size`` is one batch)."""
        i = 0
        while i < len(bounds) - 1:
            j = i + 1
            while j < len(bounds) - 1 and bounds[j + 1] - bounds[i] <= batch_size:
                j += 1
            start, stop = int(bounds[i]), int(bounds[j])
            block = self._read(None, f"frames {start}..{stop - 1}", partial(self.array.read_frames, start, stop))
            yield self._batch(start, stop, block)
            i = j

    def _iter_chunks(self, batch_size: int, cr: int, cc: int) -> Iterator[Batch]:
        """Whole chunks of ``cr x cc`` positions, in storage order (bands of chunk rows, left to right)."""
        rows, cols = self.scan_shape
        if cc >= cols:  # chunks span whole rows: runs of whole bands of chunk rows
            step = cr * max(1, batch_size // (cr * cols))
            for r0 in range(0, rows, step):
                r1 = min(rows, r0 + step)
                block = np.asarray(self._read(slice(r0, r1), f"scan rows {r0}..{r1 - 1}"))
                yield self._batch(r0 * cols, r1 * cols, block)
            return
        for r0 in range(0, rows, cr):
            r1 = min(rows, r0 + cr)
            width = cc * max(1, batch_size // ((r1 - r0) * cc))  # whole chunks per batch, at least one
            for c0 in range(0, cols, width):
                c1 = min(cols, c0 + width)
                if c0 == 0 and c1 == cols:
                    block = np.asarray(self._read(slice(r0, r1), f"scan rows {r0}..{r1 - 1}"))
                    yield self._batch(r0 * cols, r1 * cols, block)
                    continue
                block = np.asarray(self._read((slice(r0, r1), slice(c0, c1)),
                                              f"scan rows {r0}..{r1 - 1}, columns {c0}..{c1 - 1}"))
                yy, xx = np.mgrid[r0:r1, c0:c1]
                pos = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.int64)
                yield Batch(None, None, pos, block.reshape(-1, *self.detector_shape), flat=(yy * cols + xx).ravel())

    def _batch(self, start: int, stop: int, block: np.ndarray) -> Batch:
        cols = self.scan_shape[1]
        flat = np.arange(start, stop, dtype=np.int64)
        pos = np.stack([flat % cols, flat // cols], axis=1)
        return Batch(start, stop, pos, block.reshape(-1, *self.detector_shape))

    def load(self) -> np.ndarray:
        """The whole scan in memory (only when asked)."""
        return np.asarray(self._read(slice(None), "the whole scan"))

    def _read(self, key, what: str, read: Callable[[], np.ndarray] | None = None):
        """``array[key]`` (or ``read()``), with I/O failures (a file cut short, a disk error) as
        one-line errors."""
        try:
            return read() if read is not None else self.array[key]
        except (OSError, EOFError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise Al4dstemError(f"{self.source}: cannot read {what} ({first})") from None

    # ------------------------------------------------------------------ scan-wide views
    def nonfinite_positions(self, batch_size: int = 256, progress: Progress | None = None) -> np.ndarray:
        """``(k, 2)`` positions ``(x, y)`` of the patterns holding NaN or inf, by streaming.

        Integer data cannot hold them: the answer is immediate and empty.
        """
        if self.dtype.kind in "uib":
            return np.zeros((0, 2), dtype=np.int64)
        found = [b.positions[_nonfinite_rows(b.patterns)] for b in self._stream(batch_size, progress)]
        return _scan_order(found)

    def virtual_image(self, kind: str = "bright-field", radius: float | None = None,
                      batch_size: int = 512) -> np.ndarray:
        """A virtual detector image of the scan, ``(rows, cols)`` float64, computed by streaming.

        ``bright-field`` sums a disk around the brightest spot of a few patterns' mean (radius
        defaults to 1/8 of the detector); ``annular`` sums outside it.
        """
        return self.survey(kind, radius, batch_size).virtual_image

    def survey(self, kind: str = "bright-field", radius: float | None = None, batch_size: int = 512,
               progress: Progress | None = None) -> Survey:
        """One streaming pass: the virtual image and the non-finite patterns together."""
        mask = self.detector_mask(kind, radius)
        try:
            image = np.zeros(self.scan_shape, dtype=np.float64)
        except MemoryError:
            rows, cols = self.scan_shape
            raise Al4dstemError(f"{self.source}: the virtual image of a {cols} x {rows} scan needs "
                                f"{8 * rows * cols / 1e9:.1f} GB, more memory than there is") from None
        bad = []
        check = self.dtype.kind == "f"
        for b in self._stream(batch_size, progress):
            image.reshape(-1)[b.index] = _masked_sums(b.patterns, mask)
            if check:
                bad.append(b.positions[_nonfinite_rows(b.patterns)])
        return Survey(image, _scan_order(bad))

    def detector_mask(self, kind: str = "bright-field", radius: float | None = None) -> np.ndarray:
        """Boolean ``(det_rows, det_cols)`` virtual detector centred on the direct beam."""
        if kind not in ("bright-field", "annular"):
            raise Al4dstemError(f"unknown virtual detector {kind!r} (bright-field or annular)")
        kr, kc = self.detector_shape
        cy, cx = self._beam_centre()
        r = radius if radius is not None else max(kr, kc) / 8
        qy, qx = np.ogrid[0:kr, 0:kc]
        mask = (qy - cy) ** 2 + (qx - cx) ** 2 <= r * r
        return ~mask if kind == "annular" else mask

    def _beam_centre(self, n_samples: int = 9) -> tuple[int, int]:
        """The brightest spot of the mean of a few patterns spread over the scan (smoothed so a
        hot pixel is not mistaken for the central beam; non-finite pixels count as 0)."""
        rows, cols = self.scan_shape
        ys = np.unique(np.linspace(0, rows - 1, 3).round().astype(int))
        xs = np.unique(np.linspace(0, cols - 1, 3).round().astype(int))
        picks = [(x, y) for y in ys for x in xs][:n_samples]
        mean = np.zeros(self.detector_shape, dtype=np.float64)
        for x, y in picks:  # divided before adding: finite values near the float64 limit cannot overflow
            mean += np.nan_to_num(self.pattern(x, y).astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0) / len(picks)
        peak = np.abs(mean).max()
        if peak > 0:  # the brightest spot does not depend on the scale; the smoothing sums must stay finite
            mean /= peak
        cy, cx = np.unravel_index(np.argmax(_smooth(mean)), mean.shape)
        return int(cy), int(cx)

    def _stream(self, batch_size: int, progress: Progress | None) -> Iterator[Batch]:
        """``iter_batches`` in storage order (each chunk of a chunked file read once), counting progress."""
        done = 0
        for b in self.iter_batches(batch_size, order="storage"):
            yield b
            done += len(b.positions)
            if progress is not None:
                progress(done, self.n_positions)


def _scan_order(found: list[np.ndarray]) -> np.ndarray:
    """``(k, 2)`` positions ``(x, y)`` from several batches, sorted into scan order (row, then column)."""
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    pos = np.concatenate(found)
    return pos[np.lexsort((pos[:, 0], pos[:, 1]))]


def _nonfinite_rows(patterns: np.ndarray) -> np.ndarray:
    """``(n,)`` True where a pattern holds NaN or inf."""
    if patterns.dtype.kind != "f":
        return np.zeros(len(patterns), dtype=bool)
    return ~np.isfinite(patterns.reshape(len(patterns), -1)).all(axis=1)


def _masked_sums(patterns: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(n,)`` float64 sums of each pattern over ``mask``: NaN where a summed pixel is NaN or inf;
    finite pixels whose sum is beyond float64 (values near 1e308) saturate at +-IMAGE_LIMIT."""
    picked = patterns[:, mask]
    with np.errstate(over="ignore", invalid="ignore"):
        sums = picked.sum(axis=1, dtype=np.float64)
    if picked.dtype.kind == "f":
        finite = np.isfinite(picked).all(axis=1)
        sums[~finite] = np.nan
        over = finite & ~np.isfinite(sums)
        if over.any():  # add up scaled by the largest magnitude: the true sum's sign and size survive
            sub = picked[over].astype(np.float64)
            scale = np.abs(sub).max(axis=1)
            with np.errstate(over="ignore"):
                sums[over] = (sub / scale[:, None]).sum(axis=1) * scale
    return np.clip(sums, -IMAGE_LIMIT, IMAGE_LIMIT)


def _smooth(img: np.ndarray) -> np.ndarray:
    """3x3 median (removes isolated hot pixels) then a 5x5 box blur (favours the broad disk)."""
    from scipy.ndimage import median_filter, uniform_filter

    return uniform_filter(median_filter(img, size=3), size=5)

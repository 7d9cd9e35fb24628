"""The lazy 4D-STEM dataset every module works with.

A ``Dataset`` wraps any array-like of shape ``(scan_rows, scan_cols, det_rows, det_cols)`` that
supports slicing of its first axis (a numpy memmap, an h5py dataset, a folder of PNGs, ...).
Patterns are read on demand, by positions or streamed in scan order; the whole scan is only
loaded by ``load()``. Positions are ``(x, y)`` = (scan column, scan row).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from al4dstem.errors import Al4dstemError


@dataclass
class Batch:
    """A run of patterns in scan order: rows ``row_start:row_stop`` of the scan, all columns."""

    row_start: int
    row_stop: int
    positions: np.ndarray  # (n, 2) int64, (x, y)
    patterns: np.ndarray  # (n, det_rows, det_cols), the file's dtype


class Dataset:
    """Lazy access to a 4D-STEM scan.

    Parameters
    ----------
    array : array-like, 4-D, indexable as ``array[r0:r1]`` and ``array[y, x]``.
    source : where it came from (path or description), used in messages.
    format : short name of the file format.
    size_on_disk : bytes on disk, if known.
    """

    def __init__(self, array, source: str = "<array>", format: str = "array", size_on_disk: int | None = None):
        shape = tuple(int(s) for s in array.shape)
        if len(shape) != 4:
            raise Al4dstemError(
                f"{source}: expected a 4-D dataset (scan_rows, scan_cols, det_rows, det_cols), got shape {shape}"
            )
        if min(shape) < 1:
            raise Al4dstemError(f"{source}: empty dataset, shape {shape}")
        self.array = array
        self.source = source
        self.format = format
        self.size_on_disk = size_on_disk

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
        return np.asarray(self.array[int(y), int(x)])

    def get(self, positions) -> np.ndarray:
        """Patterns at ``positions`` ((n, 2) as (x, y)), shape ``(n, det_rows, det_cols)``."""
        pos = self.check_positions(positions)
        out = np.empty((len(pos), *self.detector_shape), dtype=self.dtype)
        for i, (x, y) in enumerate(pos):
            out[i] = self.array[int(y), int(x)]
        return out

    def iter_batches(self, batch_size: int = 256) -> Iterator[Batch]:
        """Stream the scan in order, whole scan rows at a time, about ``batch_size`` patterns each."""
        rows, cols = self.scan_shape
        step = max(1, int(batch_size) // cols)
        for r0 in range(0, rows, step):
            r1 = min(rows, r0 + step)
            block = np.asarray(self.array[r0:r1])
            yy, xx = np.mgrid[r0:r1, 0:cols]
            pos = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.int64)
            yield Batch(r0, r1, pos, block.reshape(-1, *self.detector_shape))

    def load(self) -> np.ndarray:
        """The whole scan in memory (only when asked)."""
        return np.asarray(self.array[:])

    def virtual_image(self, kind: str = "bright-field", radius: float | None = None,
                      batch_size: int = 512) -> np.ndarray:
        """A virtual detector image of the scan, ``(rows, cols)`` float64, computed by streaming.

        ``bright-field`` sums a disk around the brightest pixel of the mean pattern's centre
        region (radius defaults to 1/8 of the detector); ``annular`` sums outside it.
        """
        kr, kc = self.detector_shape
        first = np.asarray(self.array[0, 0], dtype=np.float64)
        cy, cx = np.unravel_index(np.argmax(_smooth(first)), first.shape)
        r = radius if radius is not None else max(kr, kc) / 8
        qy, qx = np.mgrid[0:kr, 0:kc]
        mask = (qy - cy) ** 2 + (qx - cx) ** 2 <= r * r
        if kind == "annular":
            mask = ~mask
        elif kind != "bright-field":
            raise Al4dstemError(f"unknown virtual detector {kind!r} (bright-field or annular)")
        out = np.zeros(self.scan_shape, dtype=np.float64)
        for b in self.iter_batches(batch_size):
            vals = b.patterns[:, mask].astype(np.float64).sum(axis=1)
            out[b.row_start:b.row_stop] = vals.reshape(b.row_stop - b.row_start, -1)
        return out


def _smooth(img: np.ndarray) -> np.ndarray:
    """A cheap 5x5 box blur so a hot pixel is not mistaken for the central beam."""
    from scipy.ndimage import uniform_filter

    return uniform_filter(img, size=5)

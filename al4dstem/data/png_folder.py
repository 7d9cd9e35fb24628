"""A folder of per-position images ``X_Y*.png`` (the paper's format) as a lazy 4-D array.

File names are turned into explicit ``(x, y)`` coordinates once, here, with
``labels.position_from_name`` (``x`` = scan column, ``y`` = scan row); nothing downstream
looks at names. Opening the folder reads every image's header (size and mode, not pixels) so
that gaps, duplicates and mixed sizes are reported up front; pixels are read on demand.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from al4dstem.errors import Al4dstemError
from al4dstem.labels import position_from_name

# PIL mode -> the dtype its pixels keep (16-bit PNGs stay 16-bit)
_MODE_DTYPES = {
    "1": np.uint8, "L": np.uint8,
    "I;16": np.uint16, "I;16B": np.uint16, "I;16L": np.uint16,
    "I": np.int32, "F": np.float32,
}
_COLOUR_MODES = ("P", "PA", "LA", "RGB", "RGBA")  # read as grey ("L")
READ_THREADS = min(4, os.cpu_count() or 1)


class PngFolder:
    """Lazy ``(scan_rows, scan_cols, det_rows, det_cols)`` view of a folder of ``X_Y*.png``.

    Supports ``shape``, ``dtype``, ``ndim``, ``len()`` and ``__getitem__`` with an int or a
    slice of scan rows, ``[y, x]``, and any further indices into the result.
    """

    def __init__(self, folder: str | os.PathLike):
        from PIL import Image

        self.folder = Path(folder)
        files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() == ".png" and p.is_file())
        if not files:
            raise Al4dstemError(f"{self.folder}: folder holds no .png files")
        by_position: dict[tuple[int, int], Path] = {}
        for p in files:
            try:
                pos = position_from_name(p.name)
            except Al4dstemError:
                raise Al4dstemError(f"{p}: PNG name does not start with X_Y (scan column_row)") from None
            if pos in by_position:
                raise Al4dstemError(
                    f"{self.folder}: two images for position x={pos[0]}, y={pos[1]}: "
                    f"{by_position[pos].name} and {p.name}"
                )
            by_position[pos] = p
        cols = 1 + max(x for x, _ in by_position)
        rows = 1 + max(y for _, y in by_position)
        if len(by_position) != rows * cols:
            gap = next((x, y) for y in range(rows) for x in range(cols) if (x, y) not in by_position)
            raise Al4dstemError(
                f"{self.folder}: {rows * cols - len(by_position)} of {rows * cols} positions of the "
                f"{cols} x {rows} scan have no image, e.g. x={gap[0]}, y={gap[1]} ({gap[0]}_{gap[1]}*.png)"
            )
        self.paths = [[by_position[(x, y)] for x in range(cols)] for y in range(rows)]
        first = self.paths[0][0]
        size, mode = self._header(first, Image)
        for row in self.paths:
            for p in row:
                s, m = self._header(p, Image)
                if s != size:
                    raise Al4dstemError(
                        f"{p}: image is {s[0]} x {s[1]} pixels but {first.name} is {size[0]} x {size[1]} "
                        f"(all images in {self.folder} must have one size)"
                    )
                if _dtype_for(m) != _dtype_for(mode):
                    raise Al4dstemError(
                        f"{p}: image mode {m} differs from {first.name}'s {mode} (mixed bit depths)"
                    )
        self.mode = mode
        self.shape = (rows, cols, size[1], size[0])  # PIL size is (width, height)
        self.dtype = np.dtype(_dtype_for(mode))
        self.ndim = 4
        self.nbytes_on_disk = sum(p.stat().st_size for row in self.paths for p in row)

    @staticmethod
    def _header(path: Path, Image) -> tuple[tuple[int, int], str]:
        try:
            with Image.open(path) as im:
                if im.format != "PNG":
                    raise Al4dstemError(f"{path}: not a PNG image (found {im.format})")
                if im.mode not in _MODE_DTYPES and im.mode not in _COLOUR_MODES:
                    raise Al4dstemError(f"{path}: unsupported PNG image mode {im.mode!r}")
                return im.size, im.mode
        except Al4dstemError:
            raise
        except Exception as e:  # PIL raises many types for damaged files
            raise Al4dstemError(f"{path}: cannot read image ({_first_line(e)})") from None

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"PngFolder({str(self.folder)!r}, shape={self.shape}, dtype={self.dtype})"

    def read(self, x: int, y: int) -> np.ndarray:
        """The image at scan column ``x``, row ``y`` as ``(det_rows, det_cols)``."""
        from PIL import Image

        path = self.paths[y][x]
        try:
            with Image.open(path) as im:
                if im.mode in _COLOUR_MODES:
                    im = im.convert("L")
                img = np.asarray(im)
        except Exception as e:
            raise Al4dstemError(f"{path}: cannot read image ({_first_line(e)})") from None
        if img.shape != self.shape[2:]:
            raise Al4dstemError(f"{path}: image changed on disk, now {img.shape[::-1]} pixels")
        return img.astype(self.dtype, copy=False)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if len(key) > 4:
            raise IndexError(f"too many indices for a 4-D array: {len(key)}")
        rows, cols = self.shape[:2]
        row_key = key[0]
        col_key = key[1] if len(key) > 1 else slice(None)
        ys = _axis_indices(row_key, rows)
        xs = _axis_indices(col_key, cols)
        block = np.empty((len(ys), len(xs), *self.shape[2:]), dtype=self.dtype)
        jobs = [(i, j, x, y) for i, y in enumerate(ys) for j, x in enumerate(xs)]

        def fill(job):
            i, j, x, y = job
            block[i, j] = self.read(x, y)

        if READ_THREADS > 1 and len(jobs) >= 2 * READ_THREADS:  # PNG decoding releases the GIL
            with ThreadPoolExecutor(READ_THREADS) as pool:
                list(pool.map(fill, jobs))
        else:
            for job in jobs:
                fill(job)
        # drop the axes that were indexed by integers, then apply detector indices
        squeeze = tuple(a for a, k in enumerate((row_key, col_key)) if _is_int(k))
        block = block.reshape([s for a, s in enumerate(block.shape) if a not in squeeze])
        rest = key[2:]
        return block[(slice(None),) * (2 - len(squeeze)) + rest] if rest else block

    def __array__(self, dtype=None, copy=None):
        arr = self[:]
        return arr if dtype is None else arr.astype(dtype)


def _is_int(k) -> bool:
    return isinstance(k, (int, np.integer))


def _axis_indices(k, n: int) -> list[int]:
    if _is_int(k):
        i = int(k) + n if int(k) < 0 else int(k)
        if not 0 <= i < n:
            raise IndexError(f"index {int(k)} is out of bounds for an axis of size {n}")
        return [i]
    if isinstance(k, slice):
        return list(range(*k.indices(n)))
    raise TypeError(f"PngFolder indices must be ints or slices, not {type(k).__name__}")


def _dtype_for(mode: str):
    return np.uint8 if mode in _COLOUR_MODES else _MODE_DTYPES[mode]


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]

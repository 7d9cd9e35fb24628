"""The format registry: which reader opens a path, one module per format.

Each module in this package describes its format with a ``Format`` and registers it
(``register``). ``find_format`` picks the reader for a path:

1. formats that claim the file's extension, those with a content check (``sniff``) first, in
   registration order (``.h5`` may be a DECTRIS ARINA master file, a HyperSpy file or plain HDF5);
2. a file whose extension no format claims is recognised by its first bytes (``magic``): a Merlin
   frame header, a blockfile, a ``.npy`` or HDF5 signature.

Readers return a ``Dataset`` through ``make_dataset``, which also applies ``--scan-shape``:
frame stacks ``(n, det_rows, det_cols)`` (raw files, flattened stacks, files that stopped early)
become ``(rows, cols, det_rows, det_cols)`` scans, and a 4-D file can be given another scan shape.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from al4dstem.data.arrays import FlatFrames, LazyFrames
from al4dstem.data.calibration import Axis, Calibration
from al4dstem.data.dataset import Dataset
from al4dstem.errors import Al4dstemError

MAGIC_BYTES = 512  # how much of a file the magic checks see


@dataclass(frozen=True)
class Request:
    """What the user asked for: the path, ``--dataset`` and ``--scan-shape`` (rows, cols)."""

    path: Path
    dataset: str | None = None
    scan_shape: tuple[int, int] | None = None
    inferred: bool = False  # the reader chose scan_shape (and said so in a note); the user did not


@dataclass(frozen=True)
class Format:
    """A file format al4dstem reads.

    name : short name (``Dataset.format``, ``al4dstem info``).
    title : what it is, for people.
    extensions : lower-case suffixes it claims (``.mib``); ``folder`` formats claim folders (None: either).
    open : ``open(request) -> Dataset``.
    sniff : ``sniff(path) -> bool``, a content check for extensions several formats share.
    magic : ``magic(first_bytes) -> bool``, recognises the file whatever its name.
    lazy : how the data are read (``memory-mapped``, ``lazy``, ``in memory``), for the docs.
    reader : the library doing the reading.
    takes_dataset : ``--dataset`` picks one of several datasets in such a file.
    """

    name: str
    title: str
    extensions: tuple[str, ...]
    open: Callable[[Request], Dataset]
    sniff: Callable[[Path], bool] | None = None
    magic: Callable[[bytes], bool] | None = None
    lazy: str = "lazy"
    reader: str = "rosettasciio"
    takes_dataset: bool = False
    folder: bool | None = False  # True: a folder; None: a folder or a file


FORMATS: list[Format] = []


def register(fmt: Format) -> Format:
    FORMATS.append(fmt)
    return fmt


def extensions() -> list[str]:
    """Every extension some format claims, in registration order."""
    return list(dict.fromkeys(e for f in FORMATS for e in f.extensions))


def find_format(path: Path) -> Format:
    """The format that reads ``path`` (a file or folder), or an ``Al4dstemError`` listing the choices."""
    ext = path.suffix.lower()
    claims = [f for f in FORMATS if ext in f.extensions and f.folder in (None, path.is_dir())]
    for f in sorted(claims, key=lambda f: f.sniff is None):  # content checks first, fallbacks last
        if f.sniff is None or _sniffs(f, path):
            return f
    if path.is_dir():
        return next(f for f in FORMATS if f.name == "png-folder")
    head = _head(path)
    for f in FORMATS:
        if f.magic is not None and f.magic(head):
            return f
    raise Al4dstemError(f"{path}: unknown data format {ext or '(no extension)'!r} "
                        f"(expected {', '.join(extensions())} or a folder of X_Y*.png)")


def _sniffs(fmt: Format, path: Path) -> bool:
    try:
        return bool(fmt.sniff(path))
    except Exception:  # a sniffer that cannot tell says no; the fallback reader gives the real error
        return False


def _head(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(MAGIC_BYTES)
    except OSError:
        return b""


# ---------------------------------------------------------------- --scan-shape

_SHAPE = re.compile(r"^\s*(\d+)\s*[xX×,]\s*(\d+)\s*$")


def parse_scan_shape(value) -> tuple[int, int] | None:
    """``"34x206"`` (ROWSxCOLS) or ``(34, 206)`` -> ``(34, 206)``; None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        m = _SHAPE.match(value)
        if not m:
            raise Al4dstemError(f"--scan-shape {value!r}: expected ROWSxCOLS, e.g. 34x206 (34 rows of 206 columns)")
        rows, cols = int(m.group(1)), int(m.group(2))
    else:
        try:
            rows, cols = (int(v) for v in value)
        except (TypeError, ValueError):
            raise Al4dstemError(f"scan shape {value!r}: expected (rows, cols)") from None
    if rows < 1 or cols < 1:
        raise Al4dstemError(f"--scan-shape {rows}x{cols}: rows and columns must be at least 1")
    return rows, cols


def make_dataset(array, request: Request, fmt: Format, *, source: str | None = None, size: int | None = None,
                 calibration: Calibration | None = None, reader: str | None = None, notes=()) -> Dataset:
    """A ``Dataset`` of a 3-D frame stack or a 4-D scan, with ``--scan-shape`` applied.

    A stack needs a scan shape; a 4-D scan given one is read frame by frame in scan order.
    ``rows x cols`` must not exceed the frames there are; fewer frames are used from the start
    (a scan that stopped early: its last, incomplete row is left out), and a note says so.
    """
    path = request.path
    source = source or str(path)
    shape = tuple(int(s) for s in array.shape)
    notes = list(notes)
    calibration = calibration or Calibration()
    wanted = request.scan_shape
    if len(shape) == 4 and (wanted is None or tuple(wanted) == shape[:2]):
        if wanted is not None:
            notes.append(f"scan shape {wanted[0]}x{wanted[1]} given, as the file says")
        return _dataset(array, source, fmt, size, calibration, reader, notes, path)
    if len(shape) not in (3, 4):
        raise Al4dstemError(f"{source}: expected a 4-D dataset (scan_rows, scan_cols, det_rows, det_cols) or a "
                            f"stack of frames, got shape {shape}")
    frames = shape[0] * shape[1] if len(shape) == 4 else shape[0]
    det = shape[-2:]
    if wanted is None:
        square = int(round(frames ** 0.5))
        hint = f" (a square scan would be {square}x{square})" if square * square == frames else ""
        raise Al4dstemError(f"{source}: holds {frames:,} frames of {det[0]} x {det[1]} pixels and no scan shape: "
                            f"give --scan-shape ROWSxCOLS{hint}")
    rows, cols = wanted
    if rows * cols > frames:
        raise Al4dstemError(f"{source}: --scan-shape {rows}x{cols} needs {rows * cols:,} frames, the file holds "
                            f"{frames:,} (of {det[0]} x {det[1]} pixels)")
    if rows * cols < frames:
        notes.append(f"scan shape {rows}x{cols}: the first {rows * cols:,} of {frames:,} frames are used")
    elif not request.inferred:
        notes.append(f"--scan-shape {rows}x{cols} given")
    stack = _as_stack(array, shape)
    if isinstance(stack, np.ndarray):  # a memory map stays one (free reshape of its first frames)
        scan = stack[:rows * cols].reshape(rows, cols, *det)
    else:
        scan = FlatFrames(stack, rows, cols)
    if len(shape) == 4:  # the file's own scan axes no longer apply; the detector's still do
        calibration = calibration.with_scan_axes(Axis(name="y"), Axis(name="x"))
    return _dataset(scan, source, fmt, size, calibration, reader, notes, path)


def _as_stack(array, shape):
    """A 3-D ``(frames, det_rows, det_cols)`` view of a 3-D or 4-D array-like."""
    if len(shape) == 3:
        return array
    if isinstance(array, np.ndarray):
        return array.reshape(-1, *shape[2:])
    if isinstance(array, LazyFrames):
        return LazyFrames(array.darray.reshape(-1, *shape[2:]))
    return _ScanAsFrames(array, shape)


class _ScanAsFrames:
    """A 4-D scan read as a stack of frames in scan order (to give it another scan shape)."""

    def __init__(self, array, shape):
        self.array, self.shape4 = array, shape
        self.shape = (shape[0] * shape[1], *shape[2:])
        self.dtype = np.dtype(array.dtype)

    def __getitem__(self, key):
        start, stop, _ = key.indices(self.shape[0])
        cols = self.shape4[1]
        parts = []
        i = start
        while i < stop:
            row, col = divmod(i, cols)
            end = min(stop, (row + 1) * cols)
            parts.append(np.asarray(self.array[row, col:col + end - i]))
            i = end
        return np.concatenate(parts) if parts else np.empty((0, *self.shape[1:]), self.dtype)


def _dataset(array, source, fmt: Format, size, calibration, reader, notes, path) -> Dataset:
    if size is None and path is not None and os.path.isfile(path):
        size = os.path.getsize(path)
    return Dataset(array, source, fmt.name, size, calibration=calibration,
                   reader=reader or f"{fmt.reader}, {fmt.lazy}", notes=notes, path=str(path) if path else None)


def first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


# The modules register their formats on import; the order is the priority among formats that
# share an extension (content checks are tried before the fallback of each extension).
from al4dstem.data.formats import (  # noqa: E402, F401
    arina,
    blockfile,
    digitalmicrograph,
    emd,
    empad,
    hdf5,
    hyperspy,
    merlin,
    mrc,
    nexus,
    npy,
    pngs,
    topspin,
    tvips,
)

"""``.npy``: memory-mapped after checking the header against the file (numpy's own format).

A 4-D array is a scan; a 3-D array is a stack of frames that ``--scan-shape`` lays out.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from al4dstem.data.formats import Format, Request, first_line, make_dataset, register
from al4dstem.errors import Al4dstemError

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a .npz (zip) archive, with members or empty


def open_npy(request: Request):
    path = request.path
    shape, fortran, dtype, offset = check_npy(path)
    if dtype.kind not in "uif":
        raise Al4dstemError(f"{path}: holds {dtype} values, not numbers")
    if len(shape) != 4 and not (len(shape) == 3 and request.scan_shape is not None):
        raise Al4dstemError(
            f"{path}: expected a 4-D dataset (scan_rows, scan_cols, det_rows, det_cols), got shape {shape}"
            + (" (a stack of frames: give --scan-shape ROWSxCOLS)" if len(shape) == 3 else "")
        )
    if min(shape) == 0:
        raise Al4dstemError(f"{path}: empty dataset, shape {shape}")
    try:
        arr = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")
    except (ValueError, OSError) as e:
        raise Al4dstemError(f"{path}: not a readable .npy file, truncated or corrupt ({first_line(e)})") from None
    return make_dataset(arr, request, FORMAT, size=path.stat().st_size)


def check_npy(path) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """``(shape, fortran_order, dtype, data offset)`` of a ``.npy`` file, checked against the file.

    The header is read here rather than by ``np.load``: a forged or damaged header (an absurd
    shape, a cut file, a ``.npz`` archive or pickled objects under a ``.npy`` name, a FIFO that
    would block the reader) becomes one line naming the file, with no numpy overflow warning
    printed before it.
    """
    from al4dstem.data.readers import check_regular

    path = Path(path)
    check_regular(path)
    shape, fortran, dtype, offset = _npy_header(path)
    if dtype.hasobject:
        raise Al4dstemError(f"{path}: holds Python objects (pickled data), not numbers")
    if shape and min(shape) < 0:
        raise Al4dstemError(f"{path}: not a readable .npy file, truncated or corrupt (negative size in shape {shape})")
    need = math.prod(shape) * dtype.itemsize  # Python integers: an absurd shape cannot overflow
    have = path.stat().st_size - offset
    if need > have:
        raise Al4dstemError(f"{path}: not a readable .npy file, truncated or corrupt (its header promises "
                            f"{shape} {dtype}, {need:,} bytes, but {max(have, 0):,} bytes follow the header)")
    return shape, fortran, dtype, offset


def _npy_header(path: Path) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """``(shape, fortran_order, dtype, data offset)`` from a ``.npy`` header, validated by numpy."""
    fmt = np.lib.format
    try:
        with open(path, "rb") as f:
            start = f.read(len(NPY_MAGIC))
            if start.startswith(ZIP_MAGICS):
                raise Al4dstemError(f"{path}: is a .npz archive (zip), not a .npy array: save one array "
                                    f"with numpy.save")
            if start != NPY_MAGIC:
                raise Al4dstemError(f"{path}: not a .npy file (no NUMPY header at the start)")
            f.seek(0)
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = fmt.read_array_header_2_0(f)
            else:  # 3.0 (utf-8 field names) has no public reader; numpy's own keeps its checks
                shape, fortran, dtype = fmt._read_array_header(f, version)
            return tuple(int(s) for s in shape), bool(fortran), np.dtype(dtype), f.tell()
    except (ValueError, OSError, EOFError, SyntaxError, TypeError) as e:
        raise Al4dstemError(f"{path}: not a readable .npy file, truncated or corrupt ({first_line(e)})") from None


FORMAT = register(Format(
    name="npy", title="numpy array", extensions=(".npy",), open=open_npy,
    magic=lambda head: head.startswith(NPY_MAGIC), lazy="memory-mapped", reader="numpy",
))

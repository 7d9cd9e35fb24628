"""Open any supported 4D-STEM source as a lazy ``Dataset``.

Dispatch on what is given:

- a ``Dataset`` (returned as is), a numpy array, or a py4DSTEM ``DataCube`` (axes
  ``(Rx, Ry, Qx, Qy)`` are ``(scan_rows, scan_cols, det_rows, det_cols)``);
- ``.npy``: memory-mapped;
- ``.h5 / .hdf5 / .emd / .py4dstem``: the 4-D dataset inside, read lazily with h5py (this
  covers py4DSTEM-native files, whose DataCube data is such a dataset); ``dataset=`` names
  it when there are several; py4DSTEM-native files without one fall back to ``py4DSTEM.read``;
- ``.dm3 / .dm4 / .mib / .raw``: ``py4DSTEM.import_file`` with a memory map;
- a folder of ``X_Y*.png`` images (see ``png_folder``).

Every problem with the input surfaces as one ``Al4dstemError`` line naming the file.
py4DSTEM takes seconds to import, so it is only imported for the formats that need it.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import stat
import warnings
from pathlib import Path

import numpy as np

from al4dstem.data.dataset import Dataset
from al4dstem.errors import Al4dstemError

HDF5_EXTENSIONS = (".h5", ".hdf5", ".emd", ".py4dstem")
IMPORT_EXTENSIONS = (".dm3", ".dm4", ".mib", ".raw")
EXTENSIONS = (".npy", *HDF5_EXTENSIONS, *IMPORT_EXTENSIONS)
EMPAD_FRAME_BYTES = 130 * 128 * 4  # 128 x 128 float32 pixels plus two rows of metadata
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a .npz (zip) archive, with members or empty


def open_dataset(source, dataset: str | None = None) -> Dataset:
    """A lazy ``Dataset`` for a path, array, DataCube or Dataset.

    ``dataset`` names the HDF5 path of the 4-D dataset when a file holds several.
    """
    if isinstance(source, Dataset):
        return source
    if isinstance(source, np.ndarray):
        return Dataset(source, "<array>", "array")
    if _is_datacube(source):
        return _from_datacube(source, f"<DataCube {getattr(source, 'name', '') or ''}>".replace(" >", ">"))
    if not isinstance(source, (str, os.PathLike)):
        raise Al4dstemError(f"cannot read 4D-STEM data from a {type(source).__name__}")
    path = Path(source)
    if not path.exists():
        raise Al4dstemError(f"{path}: no such file or folder")
    ext = path.suffix.lower()
    if dataset is not None and (path.is_dir() or ext not in HDF5_EXTENSIONS):
        raise Al4dstemError(f"{path}: --dataset only applies to HDF5 files ({', '.join(HDF5_EXTENSIONS)})")
    if path.is_dir():
        return _open_png_folder(path)
    _check_regular(path)
    if path.stat().st_size == 0:
        raise Al4dstemError(f"{path}: empty file")
    if ext == ".npy":
        return _open_npy(path)
    if ext in HDF5_EXTENSIONS:
        return _open_hdf5(path, dataset)
    if ext in IMPORT_EXTENSIONS:
        return _open_imported(path)
    raise Al4dstemError(
        f"{path}: unknown data format {ext or '(no extension)'!r} "
        f"(expected {', '.join(EXTENSIONS)} or a folder of X_Y*.png)"
    )


# ---------------------------------------------------------------- in-memory sources


def _is_datacube(obj) -> bool:
    return type(obj).__name__ == "DataCube" and hasattr(obj, "data")


def _from_datacube(cube, source: str, size_on_disk: int | None = None, fmt: str = "py4DSTEM") -> Dataset:
    data = getattr(cube, "data", None)
    if data is None or getattr(data, "ndim", 0) != 4:
        shape = getattr(data, "shape", None)
        raise Al4dstemError(f"{source}: expected a 4-D DataCube, got data of shape {shape}")
    return Dataset(data, source, fmt, size_on_disk)


# ---------------------------------------------------------------- .npy


def _open_npy(path: Path) -> Dataset:
    """Memory-map a ``.npy`` file after checking its header against the file (``check_npy``)."""
    shape, fortran, dtype, offset = check_npy(path)
    if dtype.kind not in "uif":
        raise Al4dstemError(f"{path}: holds {dtype} values, not numbers")
    if len(shape) != 4:
        raise Al4dstemError(
            f"{path}: expected a 4-D dataset (scan_rows, scan_cols, det_rows, det_cols), got shape {shape}"
        )
    if min(shape) == 0:
        raise Al4dstemError(f"{path}: empty dataset, shape {shape}")
    try:
        arr = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")
    except (ValueError, OSError) as e:
        raise Al4dstemError(f"{path}: not a readable .npy file, truncated or corrupt ({_first_line(e)})") from None
    return Dataset(arr, str(path), "npy", path.stat().st_size)


def check_npy(path) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """``(shape, fortran_order, dtype, data offset)`` of a ``.npy`` file, checked against the file.

    The header is read here rather than by ``np.load``: a forged or damaged header (an absurd
    shape, a cut file, a ``.npz`` archive or pickled objects under a ``.npy`` name, a FIFO that
    would block the reader) becomes one line naming the file, with no numpy overflow warning
    printed before it.
    """
    path = Path(path)
    _check_regular(path)
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


def _check_regular(path: Path) -> None:
    """A FIFO would block the reader forever, a device has no shape: only regular files are data."""
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or \
            stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
        raise Al4dstemError(f"{path}: is {kind}, not a data file")


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
        raise Al4dstemError(f"{path}: not a readable .npy file, truncated or corrupt ({_first_line(e)})") from None


# ---------------------------------------------------------------- HDF5 and py4DSTEM native


def _open_hdf5(path: Path, dataset: str | None) -> Dataset:
    import h5py

    with contextlib.suppress(ImportError):
        import hdf5plugin  # noqa: F401  (registers compression filters, if installed)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise Al4dstemError(f"{path}: not a readable HDF5 file, truncated or corrupt ({_first_line(e)})") from None
    native = _is_py4dstem_native(f)
    fmt = "py4DSTEM" if native else "HDF5"
    size = path.stat().st_size
    found = _datasets_4d(f, h5py)
    if dataset is not None:
        return _named_hdf5_dataset(f, path, dataset, found, fmt, size, h5py)
    if len(found) == 1:
        return Dataset(f[found[0]], f"{path}:{found[0]}", fmt, size)
    if len(found) > 1:
        raise Al4dstemError(
            f"{path}: {len(found)} 4-D datasets ({', '.join(found)}); pick one with --dataset"
        )
    if native:
        f.close()
        return _open_py4dstem_read(path, size)
    raise Al4dstemError(f"{path}: no 4-D dataset in this HDF5 file{_describe_others(f, h5py)}")


def _named_hdf5_dataset(f, path: Path, name: str, found: list[str], fmt: str, size: int, h5py) -> Dataset:
    obj = f.get(name)
    choices = f" (4-D datasets here: {', '.join(found)})" if found else " (the file has no 4-D dataset)"
    if not isinstance(obj, h5py.Dataset):
        what = "a group" if isinstance(obj, h5py.Group) else "no such dataset"
        raise Al4dstemError(f"{path}: --dataset {name!r}: {what}{choices}")
    if obj.ndim != 4:
        raise Al4dstemError(f"{path}: --dataset {name!r} has shape {obj.shape}, not 4-D{choices}")
    return Dataset(obj, f"{path}:{obj.name.lstrip('/')}", fmt, size)


def _datasets_4d(f, h5py) -> list[str]:
    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.ndim == 4 and obj.dtype.kind in "uif":
            found.append(name)

    f.visititems(visit)
    return sorted(found)


def _describe_others(f, h5py) -> str:
    shapes = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.ndim >= 2 and len(shapes) < 3:
            shapes.append(f"{name} {obj.shape}")

    f.visititems(visit)
    return f" (found {', '.join(shapes)})" if shapes else ""


def _is_py4dstem_native(f) -> bool:
    """EMD 1.0 / py4DSTEM files mark their top-level groups with ``emd_group_type``."""
    if "emd_group_type" in f.attrs or "version_major" in f.attrs:
        return True
    for k in f.keys():
        obj = f.get(k)  # None for a dangling soft or external link
        if obj is not None and "emd_group_type" in obj.attrs:
            return True
    return False


def _open_py4dstem_read(path: Path, size: int) -> Dataset:
    py4dstem = _import_py4dstem(path)
    try:
        with _quiet():
            obj = py4dstem.read(str(path))
    except Exception as e:
        raise Al4dstemError(f"{path}: py4DSTEM could not read it ({_first_line(e)})") from None
    if not _is_datacube(obj) or getattr(obj.data, "ndim", 0) != 4:
        raise Al4dstemError(
            f"{path}: no 4-D dataset (py4DSTEM file holding a {type(obj).__name__}, not a DataCube)"
        )
    return _from_datacube(obj, str(path), size)


# ---------------------------------------------------------------- .dm3 / .dm4 / .mib / .raw


def _open_imported(path: Path) -> Dataset:
    ext = path.suffix.lower()
    hint = ""
    if ext == ".raw":
        _check_empad_size(path)
    if ext == ".mib" and not path.with_suffix(".hdr").exists():
        hint = f"; no {path.with_suffix('.hdr').name} beside it to give the scan size"
    py4dstem = _import_py4dstem(path)
    try:
        with _quiet():
            cube = py4dstem.import_file(str(path), mem="MEMMAP")
    except Exception as e:  # readers raise anything, AssertionError included
        raise Al4dstemError(
            f"{path}: py4DSTEM could not import this {ext} file ({_first_line(e)}{hint})"
        ) from None
    if not _is_datacube(cube):
        shape = getattr(getattr(cube, "data", None), "shape", None)
        raise Al4dstemError(f"{path}: py4DSTEM found no 4-D data in it (got shape {shape})")
    return _from_datacube(cube, str(path), path.stat().st_size, path.suffix.lower().lstrip("."))


def _check_empad_size(path: Path) -> None:
    """py4DSTEM reads an EMPAD .raw as a square scan of 130 x 128 float32 frames; say so plainly."""
    size = path.stat().st_size
    frames = size // EMPAD_FRAME_BYTES
    side = int(round(frames ** 0.5))
    if size % EMPAD_FRAME_BYTES or side * side != frames:
        raise Al4dstemError(
            f"{path}: {size:,} bytes is not a square scan of EMPAD frames (130 x 128 float32 each), "
            f"truncated or not an EMPAD file"
        )


@contextlib.contextmanager
def _quiet():
    """py4DSTEM prints and warns as it reads; stdout is for results and stderr for one-line errors."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _import_py4dstem(path: Path):
    try:
        with _quiet():
            import py4DSTEM
    except Exception as e:  # pragma: no cover - a broken installation
        raise Al4dstemError(f"{path}: reading this format needs py4DSTEM, which failed to import "
                            f"({_first_line(e)})") from None
    return py4DSTEM


# ---------------------------------------------------------------- PNG folders


def _open_png_folder(path: Path) -> Dataset:
    from al4dstem.data.png_folder import PngFolder

    stack = PngFolder(path)
    return Dataset(stack, str(path), "png-folder", stack.nbytes_on_disk)


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]

"""Open any supported 4D-STEM source as a lazy ``Dataset``.

Dispatch on what is given:

- a ``Dataset`` (returned as is), a numpy array, or a py4DSTEM ``DataCube`` (axes
  ``(Rx, Ry, Qx, Qy)`` are ``(scan_rows, scan_cols, det_rows, det_cols)``);
- a path: the format registry (``al4dstem.data.formats``) picks the reader by extension and
  content, one module per format: ``.npy`` (memory-mapped), plain HDF5 and py4DSTEM files
  (h5py), and through rosettasciio Merlin ``.mib``, NanoMegas ``.blo`` and ``.app5``,
  ``.dm3/.dm4``, NCEM/Velox ``.emd``, ``.hspy/.zspy``, ``.mrc``, NeXus, EMPAD, TVIPS; DECTRIS
  ARINA master files (h5py); a folder of ``X_Y*.png`` images.

``dataset=`` picks one of several datasets in a file; ``scan_shape=`` (``"ROWSxCOLS"`` or
``(rows, cols)``) lays out frames that have no scan shape, or gives a file another one.
Every problem with the input surfaces as one ``Al4dstemError`` line naming the file.
Heavy libraries (h5py, rosettasciio, dask, py4DSTEM) are imported only by the formats that need them.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np

from al4dstem.data.dataset import Dataset
from al4dstem.errors import Al4dstemError


def open_dataset(source, dataset: str | None = None, scan_shape=None) -> Dataset:
    """A lazy ``Dataset`` for a path, array, DataCube or Dataset.

    ``dataset`` names the dataset (HDF5 path, or number / title of a rosettasciio signal) when a
    file holds several; ``scan_shape`` is ``(rows, cols)`` or ``"ROWSxCOLS"`` (``--scan-shape``).
    """
    from al4dstem.data import formats

    shape = formats.parse_scan_shape(scan_shape)
    if isinstance(source, Dataset):
        if shape is not None and tuple(shape) != source.scan_shape:
            raise Al4dstemError(f"{source.source}: already opened as a {source.scan_shape[0]}x{source.scan_shape[1]} "
                                f"scan; open the file again to give another --scan-shape")
        return source
    if isinstance(source, np.ndarray) or _is_datacube(source):
        return _in_memory(source, shape)
    if not isinstance(source, (str, os.PathLike)):
        raise Al4dstemError(f"cannot read 4D-STEM data from a {type(source).__name__}")
    path = Path(source)
    if not path.exists():
        raise Al4dstemError(f"{path}: no such file or folder")
    if not path.is_dir():
        check_regular(path)
        if path.stat().st_size == 0:
            raise Al4dstemError(f"{path}: empty file")
    fmt = formats.find_format(path)
    if dataset is not None and not fmt.takes_dataset:
        takers = ", ".join(dict.fromkeys(e for f in formats.FORMATS if f.takes_dataset for e in f.extensions))
        raise Al4dstemError(f"{path}: --dataset only applies to files holding several datasets ({takers}); "
                            f"this is a {fmt.title} file")
    return fmt.open(formats.Request(path, dataset, shape))


def _is_datacube(obj) -> bool:
    return type(obj).__name__ == "DataCube" and hasattr(obj, "data")


def _in_memory(source, shape) -> Dataset:
    from al4dstem.data import formats
    from al4dstem.data.formats.hdf5 import PY4DSTEM, datacube_calibration

    if isinstance(source, np.ndarray):
        fmt = formats.Format(name="array", title="numpy array", extensions=(), open=None, reader="numpy",
                             lazy="in memory")
        name, calibration, array = "<array>", None, source
    else:
        array = getattr(source, "data", None)
        if array is None or getattr(array, "ndim", 0) not in (3, 4):
            shape = getattr(array, "shape", None)
            raise Al4dstemError(f"<DataCube>: expected a 4-D DataCube, got data of shape {shape}")
        fmt, calibration = PY4DSTEM, datacube_calibration(source)
        name = f"<DataCube {getattr(source, 'name', '') or ''}>".replace(" >", ">")
    if getattr(array, "ndim", 0) != 4 and shape is None:
        raise Al4dstemError(f"{name}: expected a 4-D dataset (scan_rows, scan_cols, det_rows, det_cols), "
                            f"got shape {tuple(array.shape)}")
    ds = formats.make_dataset(array, formats.Request(None, None, shape), fmt, source=name, calibration=calibration,
                              reader="in memory")
    ds.size_on_disk = None
    return ds


def check_npy(path) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """``(shape, fortran_order, dtype, data offset)`` of a ``.npy`` file, checked against the file
    (see ``al4dstem.data.formats.npy.check_npy``)."""
    from al4dstem.data.formats.npy import check_npy as check

    return check(path)


def check_regular(path: Path) -> None:
    """A FIFO would block the reader forever, a device has no shape: only regular files are data."""
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or \
            stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
        raise Al4dstemError(f"{path}: is {kind}, not a data file")

"""Open any supported 4D-STEM source as a lazy ``Dataset``.

Dispatch on what is given: a ``Dataset`` (returned as is), a numpy array, a py4DSTEM
``DataCube``, or a path (``.npy`` memory-mapped; more formats are added here).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from al4dstem.data.dataset import Dataset
from al4dstem.errors import Al4dstemError


def open_dataset(source, dataset: str | None = None) -> Dataset:
    """A lazy ``Dataset`` for a path, array, DataCube or Dataset.

    ``dataset`` names the HDF5 path of the 4-D dataset when a file holds several.
    """
    if isinstance(source, Dataset):
        return source
    if isinstance(source, np.ndarray):
        return Dataset(source, "<array>", "array")
    if type(source).__name__ == "DataCube" and hasattr(source, "data"):
        return Dataset(source.data, f"<DataCube {getattr(source, 'name', '')}>".replace(" >", ">"), "py4DSTEM")
    if not isinstance(source, (str, os.PathLike)):
        raise Al4dstemError(f"cannot read 4D-STEM data from a {type(source).__name__}")
    path = Path(source)
    if not path.exists():
        raise Al4dstemError(f"{path}: no such file or folder")
    ext = path.suffix.lower()
    if ext == ".npy":
        return _open_npy(path)
    raise Al4dstemError(f"{path}: unknown data format {ext or '(no extension)'!r}")


def _open_npy(path: Path) -> Dataset:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise Al4dstemError(f"{path}: not a readable .npy file, truncated or corrupt ({_first_line(e)})") from None
    return Dataset(arr, str(path), "npy", path.stat().st_size)


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]

"""Plain HDF5 and py4DSTEM's own files (``.h5 / .hdf5 / .emd / .py4dstem``), read lazily with h5py.

The 4-D dataset inside is the scan (py4DSTEM's ``DataCube`` data is such a dataset, axes
``(Rx, Ry, Qx, Qy)`` = ``(scan rows, scan cols, det rows, det cols)``); ``--dataset`` names it
when there are several. With ``--scan-shape``, 3-D frame stacks are candidates too. Calibrations
come from the EMD ``dim0 .. dim3`` vectors beside the data (py4DSTEM / emdfile files). A
py4DSTEM file without such a dataset falls back to ``py4DSTEM.read``.

This is the fallback of these extensions: ARINA master files, HyperSpy files and NCEM/Velox EMD
files are recognised first by their own modules.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

from al4dstem.data.calibration import Axis, Calibration
from al4dstem.data.formats import Format, Request, first_line, make_dataset, register
from al4dstem.errors import Al4dstemError

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def open_h5(path: Path):
    """``h5py.File(path)`` (with compression filters registered), or a one-line error."""
    import h5py

    with contextlib.suppress(ImportError):
        import hdf5plugin  # noqa: F401  (registers compression filters, if installed)
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise Al4dstemError(f"{path}: not a readable HDF5 file, truncated or corrupt ({first_line(e)})") from None


def open_hdf5(request: Request):
    import h5py

    path, dataset = request.path, request.dataset
    f = open_h5(path)
    native = is_py4dstem_native(f)
    fmt = PY4DSTEM if native else FORMAT
    size = path.stat().st_size
    found = datasets_4d(f, h5py)
    stacks = datasets_3d(f, h5py) if request.scan_shape is not None and not found else []
    if dataset is not None:
        return _named(f, request, dataset, found + stacks, fmt, size, h5py)
    candidates = found or stacks
    if len(candidates) == 1:
        return _from_dataset(f[candidates[0]], request, fmt, size)
    if len(candidates) > 1:
        kind = "4-D datasets" if found else "frame stacks"
        raise Al4dstemError(f"{path}: {len(candidates)} {kind} ({', '.join(candidates)}); pick one with --dataset")
    if native:
        f.close()
        return open_py4dstem_read(request, size)
    raise Al4dstemError(f"{path}: no 4-D dataset in this HDF5 file{_describe_others(f, h5py)}")


def _named(f, request: Request, name: str, found: list[str], fmt: Format, size: int, h5py):
    path = request.path
    obj = f.get(name)
    choices = f" (4-D datasets here: {', '.join(found)})" if found else " (the file has no 4-D dataset)"
    if not isinstance(obj, h5py.Dataset):
        what = "a group" if isinstance(obj, h5py.Group) else "no such dataset"
        raise Al4dstemError(f"{path}: --dataset {name!r}: {what}{choices}")
    if obj.ndim != 4 and not (obj.ndim == 3 and request.scan_shape is not None):
        raise Al4dstemError(f"{path}: --dataset {name!r} has shape {obj.shape}, not 4-D{choices}")
    return _from_dataset(obj, request, fmt, size)


def _from_dataset(obj, request: Request, fmt: Format, size: int):
    source = f"{request.path}:{obj.name.lstrip('/')}"
    return make_dataset(obj, request, fmt, source=source, size=size, calibration=emd_dims_calibration(obj))


def emd_dims_calibration(obj) -> Calibration:
    """Axes from the EMD ``dim0, dim1, ...`` datasets beside ``obj`` (first two values: offset, offset + step)."""
    parent = obj.parent
    axes = []
    names = ("y", "x", "qy", "qx")[-obj.ndim:] if obj.ndim <= 4 else ()
    for i in range(obj.ndim):
        dim = parent.get(f"dim{i}")
        if dim is None or getattr(dim, "ndim", 0) != 1 or dim.shape[0] < 1 or dim.dtype.kind not in "uif":
            return Calibration()
        values = dim[:2]
        units = dim.attrs.get("units", "")
        units = units.decode() if isinstance(units, bytes) else str(units)
        step = float(values[1] - values[0]) if len(values) > 1 else 1.0
        if units.strip().lower() in ("pixels", "pixel", "px", "") or step == 0:
            axes.append(Axis(name=names[i] if i < len(names) else ""))
        else:
            axes.append(Axis.from_dict({"scale": step, "offset": float(values[0]), "units": units,
                                        "name": names[i] if i < len(names) else ""}))
    if obj.ndim == 3:  # a frame stack: only the detector axes are known
        axes = [Axis(name="y"), Axis(name="x"), *axes[1:]]
    return Calibration(tuple(axes)) if len(axes) == 4 else Calibration()


def datasets_4d(f, h5py) -> list[str]:
    return _datasets(f, h5py, 4)


def datasets_3d(f, h5py) -> list[str]:
    return _datasets(f, h5py, 3)


def _datasets(f, h5py, ndim: int) -> list[str]:
    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.ndim == ndim and obj.dtype.kind in "uif":
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


def is_py4dstem_native(f) -> bool:
    """EMD 1.0 / py4DSTEM files mark their top-level groups with ``emd_group_type``."""
    if "emd_group_type" in f.attrs or "version_major" in f.attrs:
        return True
    for k in f.keys():
        obj = f.get(k)  # None for a dangling soft or external link
        if obj is not None and "emd_group_type" in obj.attrs:
            return True
    return False


def open_py4dstem_read(request: Request, size: int):
    path = request.path
    py4dstem = import_py4dstem(path)
    try:
        with quiet_py4dstem():
            obj = py4dstem.read(str(path))
    except Exception as e:
        raise Al4dstemError(f"{path}: py4DSTEM could not read it ({first_line(e)})") from None
    if not is_datacube(obj) or getattr(obj.data, "ndim", 0) != 4:
        raise Al4dstemError(
            f"{path}: no 4-D dataset (py4DSTEM file holding a {type(obj).__name__}, not a DataCube)"
        )
    return make_dataset(obj.data, request, PY4DSTEM, size=size, calibration=datacube_calibration(obj),
                        reader="py4DSTEM.read, in memory")


def is_datacube(obj) -> bool:
    return type(obj).__name__ == "DataCube" and hasattr(obj, "data")


def datacube_calibration(cube) -> Calibration:
    """Scan step and detector pixel size of a py4DSTEM ``DataCube`` (``R_pixel_*``, ``Q_pixel_*``)."""
    cal = getattr(cube, "calibration", None)
    if cal is None:
        return Calibration()
    try:
        r, r_units = float(cal.get_R_pixel_size()), cal.get_R_pixel_units()
        q, q_units = float(cal.get_Q_pixel_size()), cal.get_Q_pixel_units()
    except Exception:  # an incomplete calibration reads as none
        return Calibration()
    scan = Axis.from_dict({"scale": r, "units": r_units, "name": "y"})
    det = Axis.from_dict({"scale": q, "units": q_units, "name": "qy"})
    return Calibration((scan, Axis(scan.scale, 0.0, scan.units, "x"), det, Axis(det.scale, 0.0, det.units, "qx")))


@contextlib.contextmanager
def quiet_py4dstem():
    """py4DSTEM prints and warns as it reads; stdout is for results and stderr for one-line errors."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def import_py4dstem(path: Path):
    try:
        with quiet_py4dstem():
            import py4DSTEM
    except Exception as e:  # pragma: no cover - a broken installation
        raise Al4dstemError(f"{path}: reading this format needs py4DSTEM, which failed to import "
                            f"({first_line(e)})") from None
    return py4DSTEM


def h5_check(path: Path, test) -> bool:
    """``test(h5py.File)`` on ``path``, False when it is not HDF5 (for sniffers)."""
    import h5py

    with open(path, "rb") as f:
        if f.read(8) != HDF5_MAGIC:
            return False
    with h5py.File(path, "r") as f:
        return bool(test(f))


FORMAT = register(Format(
    name="HDF5", title="HDF5 with one 4-D dataset", extensions=(".h5", ".hdf5", ".emd", ".py4dstem"),
    open=open_hdf5, magic=lambda head: head.startswith(HDF5_MAGIC), lazy="lazy (h5py)", reader="h5py",
    takes_dataset=True,
))
# py4DSTEM's own files are read by the same code; this entry only names them (Dataset.format)
PY4DSTEM = Format(name="py4DSTEM", title="py4DSTEM / emdfile (EMD 1.0)", extensions=(), open=open_hdf5,
                  lazy="lazy (h5py)", reader="h5py", takes_dataset=True)

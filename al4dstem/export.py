"""Probability maps out to the ecosystem: HyperSpy (``.hspy``, ``.zspy``), EMD 1.0 (``.emd``) and ``.npy``.

The map is a signal of shape ``(scan rows, scan cols, 3)``: two navigation axes ``y`` (scan row)
and ``x`` (scan column) with the scan's calibration, and a signal axis ``class`` (0 none,
1 vertical, 2 horizontal). Positions that could not be classified are NaN rows (the ``.npy``
keeps its uniform 1/3 rows plus ``PREFIX_valid.npy``, as before). Metadata (``al4dstem``
node): the class names, the number of positions classified, and the provenance (model, data
file, labels, sampler, command line, versions) as JSON.

- ``.hspy`` / ``.zspy`` are written by rosettasciio: ``hs.load`` (HyperSpy) or
  ``rsciio.hspy.file_reader`` / ``rsciio.zspy.file_reader`` open them with their axes; HyperSpy
  shows the navigation shape as ``(x, y)`` = ``(cols, rows)``;
- ``.emd`` is EMD 1.0 written with emdfile (py4DSTEM's file library): ``py4DSTEM.read`` opens it
  as an ``Array`` whose ``dim0, dim1`` are the scan (py4DSTEM's ``Rx, Ry`` = rows, cols), and
  rosettasciio's EMD reader opens it too.

Heavy libraries are imported only when such a format is written.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np

from al4dstem.data.calibration import Axis, Calibration
from al4dstem.errors import Al4dstemError
from al4dstem.labels import CLASSES

FORMATS = ("npy", "hspy", "zspy", "emd")
EXTENSIONS = {"npy": ".npy", "hspy": ".hspy", "zspy": ".zspy", "emd": ".emd"}
TITLE = "al4dstem probability map"


def check_format(fmt: str) -> str:
    fmt = str(fmt).lower().lstrip(".")
    if fmt not in FORMATS:
        raise Al4dstemError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    return fmt


def map_data(probs: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """float32 ``(rows, cols, 3)`` with NaN rows where not classified."""
    return np.where(np.asarray(valid, bool)[..., None], probs, np.float32(np.nan)).astype(np.float32)


def _metadata(valid: np.ndarray, provenance: dict | None) -> dict:
    node = {"classes": list(CLASSES), "class_axis": "0 none, 1 vertical, 2 horizontal",
            "positions_classified": int(np.asarray(valid).sum()), "positions": int(np.asarray(valid).size),
            "unclassified": "NaN rows (patterns holding NaN or inf)"}
    if provenance:
        node["provenance_json"] = json.dumps(provenance, sort_keys=True, default=str)
        for key in ("model", "data"):
            value = provenance.get(key)
            if isinstance(value, dict) and value.get("path"):
                node[f"{key}_path"] = str(value["path"])
    return node


def _axes(shape, calibration: Calibration) -> list[dict]:
    rows_axis, cols_axis = calibration.scan
    out = []
    for i, (axis, name) in enumerate(((rows_axis, "y"), (cols_axis, "x"))):
        out.append({"size": int(shape[i]), "index_in_array": i, "name": name, "scale": float(axis.scale),
                    "offset": float(axis.offset), "units": axis.units or "", "navigate": True})
    out.append({"size": len(CLASSES), "index_in_array": 2, "name": "class", "scale": 1.0, "offset": 0.0,
                "units": "", "navigate": False})
    return out


def signal_dict(probs, valid, calibration: Calibration | None = None, provenance: dict | None = None) -> dict:
    """The rosettasciio signal dictionary of a probability map."""
    calibration = calibration or Calibration()
    data = map_data(probs, valid)
    metadata = {"General": {"title": TITLE}, "Signal": {"signal_type": "", "quantity": "probability"},
                "al4dstem": _metadata(valid, provenance)}
    if calibration.beam_energy_kev:
        metadata["Acquisition_instrument"] = {"TEM": {"beam_energy": float(calibration.beam_energy_kev)}}
    return {"data": data, "axes": _axes(data.shape, calibration), "metadata": metadata, "original_metadata": {},
            "tmp_parameters": {}, "attributes": {"_lazy": False, "ragged": False}, "learning_results": {},
            "models": {}, "package_info": {"name": "al4dstem", "version": _version()}}


def _version() -> str:
    from al4dstem import __version__

    return str(__version__)


def write_map(path, fmt: str, probs, valid, calibration: Calibration | None = None,
              provenance: dict | None = None) -> Path:
    """Write the map to ``path`` in ``fmt`` (hspy, zspy or emd); errors are one line."""
    fmt = check_format(fmt)
    path = Path(path)
    try:
        if fmt == "hspy":
            _rsciio_writer("hspy")(str(path), signal_dict(probs, valid, calibration, provenance))
        elif fmt == "zspy":
            _rsciio_writer("zspy")(str(path), signal_dict(probs, valid, calibration, provenance))
        elif fmt == "emd":
            _write_emd(path, probs, valid, calibration or Calibration(), provenance)
        else:
            raise Al4dstemError(f"write_map writes hspy, zspy or emd, not {fmt}")
    except Al4dstemError:
        raise
    except OSError as e:
        raise Al4dstemError(f"{path}: cannot write ({e.strerror or e})") from None
    return path


def _rsciio_writer(plugin: str):
    from al4dstem.data.formats._rsciio import quiet, reader_of

    reader_of(plugin, f"a .{plugin} file")  # a missing rosettasciio or zarr is one line
    import importlib

    module = importlib.import_module(f"rsciio.{plugin}")

    def write(filename, signal):
        with quiet():
            module.file_writer(filename, signal)

    return write


def _write_emd(path: Path, probs, valid, calibration: Calibration, provenance) -> None:
    import emdfile

    data = map_data(probs, valid)
    rows, cols = data.shape[:2]
    dims, units, names = [], [], []
    for axis, n, name in ((calibration.scan[0], rows, "Rx"), (calibration.scan[1], cols, "Ry")):
        dims.append(axis.offset + axis.scale * np.arange(n) if axis.calibrated else np.arange(n))
        units.append(axis.units or "pixels")
        names.append(name)
    dims.append(np.arange(len(CLASSES)))
    units.append("class")
    names.append("class")
    array = emdfile.Array(data=data, name="probabilities", units="probability", dims=dims, dim_units=units,
                          dim_names=names)
    meta = {k: (v if isinstance(v, (str, int, float)) else json.dumps(v))
            for k, v in _metadata(valid, provenance).items()}
    array.metadata = emdfile.Metadata(name="al4dstem", data=meta)
    with _quiet_stdout():
        emdfile.save(str(path), array, mode="o")


def _quiet_stdout():
    import contextlib
    import io

    return contextlib.redirect_stdout(io.StringIO())


def read_map(path) -> tuple[np.ndarray, Calibration, dict]:
    """``(data, calibration of the scan axes, al4dstem metadata)`` of an exported map (hspy, zspy or emd),
    read back with rosettasciio (the check that the files open with their axes)."""
    path = Path(path)
    fmt = check_format(path.suffix)
    from al4dstem.data.formats._rsciio import read_signals

    plugin = {"hspy": "hspy", "zspy": "zspy", "emd": "emd"}[fmt]
    kwargs = {"stack_group": False} if fmt == "emd" else {}
    signals = read_signals(plugin, path, **kwargs)  # lazily: the EMD reader cannot load scalar metadata eagerly
    signal = next(s for s in signals if np.asarray(s["data"]).ndim == 3)
    axes = sorted(signal["axes"], key=lambda a: a.get("index_in_array", 0)) if all(
        "index_in_array" in a for a in signal["axes"]) else signal["axes"]
    scan = [Axis.from_dict({"scale": a.get("scale", 1.0), "offset": a.get("offset", 0.0), "units": a.get("units"),
                            "name": a.get("name", "")}) for a in axes[:2]]
    calibration = Calibration((scan[0], scan[1], Axis(name="class"), Axis(name="")))
    metadata = dict((signal.get("metadata") or {}).get("al4dstem") or {})
    return np.asarray(signal["data"]), calibration, metadata


# ---------------------------------------------------------------- files put in place


def temporary_path(path: Path) -> Path:
    """Where ``path`` is written before it is renamed into place (same folder, hidden)."""
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


def replace(temp: Path, path: Path) -> None:
    """Move ``temp`` to ``path``; a zarr folder (``.zspy``) replaces an old one of the same name."""
    if temp.is_dir():
        if path.is_dir():
            if not is_zarr_folder(path):
                raise Al4dstemError(f"{path}: a folder that is not a .zspy map is in the way")
            old = path.with_name(f".{path.name}.{os.getpid()}.old")
            os.replace(path, old)
            os.replace(temp, path)
            shutil.rmtree(old, ignore_errors=True)
            return
        os.replace(temp, path)
        return
    os.replace(temp, path)


def remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def is_zarr_folder(path: Path) -> bool:
    return (path / ".zgroup").exists() or (path / ".zattrs").exists()


def scale_bar_length(step: float, n: int, target: float = 0.2) -> float:
    """A round length (1, 2 or 5 x 10^k) near ``target`` of a side of ``n`` steps of ``step``."""
    want = max(step, step * n * target)
    power = 10 ** math.floor(math.log10(want))
    for m in (5, 2, 1):
        if m * power <= want:
            return m * power
    return power

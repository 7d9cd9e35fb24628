"""DECTRIS ARINA (NeXus / Eiger-style) master files: ``*_master.h5`` with ``entry/data/data_000001, ...``.

rosettasciio's ARINA reader loads the whole scan into memory, so the frames are read here, lazily,
with h5py (bitshuffle/LZ4 through hdf5plugin): the ``data_*`` datasets (external links to the
data files beside the master) are one stack of frames in scan order. The master does not record
the scan shape: ``--scan-shape`` gives it; without it a square scan is assumed (as rosettasciio
and py4DSTEM do), and said so. Calibrations: beam energy from ``photon_energy``; the detector
pixel in mrad from the pixel pitch over the camera distance, when the distance is recorded.
"""

from __future__ import annotations

from pathlib import Path

from al4dstem.data.arrays import ConcatFrames
from al4dstem.data.calibration import Axis, Calibration
from al4dstem.data.formats import Format, Request, make_dataset, register
from al4dstem.errors import Al4dstemError

DETECTOR = "entry/instrument/detector"


def is_arina_master(path: Path) -> bool:
    from al4dstem.data.formats.hdf5 import h5_check

    def test(f):
        data = f.get("entry/data")
        return (data is not None and any(k.startswith("data_") for k in data.keys())
                and f.get(f"{DETECTOR}/detectorSpecific") is not None)

    return h5_check(path, test)


def open_arina(request: Request):
    from al4dstem.data.formats.hdf5 import open_h5

    path = request.path
    f = open_h5(path)
    group = f["entry/data"]
    parts = []
    for name in sorted(k for k in group.keys() if k.startswith("data_")):
        try:
            part = group[name]
        except (KeyError, OSError) as e:  # a data file of the series is missing
            link = group.get(name, getlink=True)
            where = getattr(link, "filename", name)
            raise Al4dstemError(f"{path}: cannot open its data file {where} ({e})") from None
        if part.ndim != 3:
            raise Al4dstemError(f"{path}: entry/data/{name} has shape {part.shape}, not a stack of frames")
        parts.append(part)
    if not parts:
        raise Al4dstemError(f"{path}: no data_* datasets under entry/data")
    if len({p.shape[1:] for p in parts}) > 1:
        raise Al4dstemError(f"{path}: its data files hold frames of different sizes")
    frames = ConcatFrames(parts)
    notes = []
    if request.scan_shape is None:
        n = frames.shape[0]
        side = int(round(n ** 0.5))
        if side * side == n:
            request = Request(request.path, request.dataset, (side, side), inferred=True)
            notes.append(f"scan shape {side}x{side} assumed (an ARINA master file does not record it): give "
                         f"--scan-shape ROWSxCOLS if the scan was not square")
    return make_dataset(frames, request, FORMAT, size=_series_size(path, parts), calibration=_calibration(f),
                        notes=notes)


def _series_size(path: Path, parts) -> int:
    files = {Path(p.file.filename) for p in parts} | {path}
    return sum(p.stat().st_size for p in files if p.exists())


def _value(f, name: str, scale_to: dict | None = None) -> float | None:
    obj = f.get(name)
    if obj is None:
        return None
    try:
        v = float(obj[()])
    except (TypeError, ValueError):
        return None
    units = obj.attrs.get("units", b"")
    units = units.decode() if isinstance(units, bytes) else str(units)
    if scale_to is not None:
        v *= scale_to.get(units, 1.0)
    return v if v > 0 else None


def _calibration(f) -> Calibration:
    energy_ev = _value(f, f"{DETECTOR}/detectorSpecific/photon_energy", {"keV": 1e3, "eV": 1.0})
    pitch_m = _value(f, f"{DETECTOR}/x_pixel_size", {"m": 1.0, "mm": 1e-3, "um": 1e-6})
    distance_m = _value(f, f"{DETECTOR}/detector_distance", {"m": 1.0, "mm": 1e-3})
    extra = {}
    if pitch_m:
        extra["detector pitch"] = f"{pitch_m * 1e6:g} µm"
    scan = (Axis(name="y"), Axis(name="x"))
    if pitch_m and distance_m:
        mrad = pitch_m / distance_m * 1e3
        det = (Axis(mrad, 0.0, "mrad", "qy"), Axis(mrad, 0.0, "mrad", "qx"))
    else:
        det = (Axis(name="qy"), Axis(name="qx"))
    return Calibration((*scan, *det), energy_ev / 1e3 if energy_ev else None, extra)


FORMAT = register(Format(
    name="arina", title="DECTRIS ARINA master file", extensions=(".h5", ".hdf5"), open=open_arina,
    sniff=is_arina_master, lazy="lazy (h5py, per frame)", reader="h5py + hdf5plugin",
))

"""NanoMegas TopSpin ``.app5`` (HDF5; one or several scanning precession diffraction results); lazy.

rosettasciio's TopSpin reader loads a whole result into memory (it has no lazy mode). A 4-D result is
a group of numbered frames (``0``, ``1``, ... in scan order, each ``Data`` with its ``Metadata``), so
here the frames are read from that group one batch at a time with h5py, while rosettasciio still
finds the results and reads their axes (scan step from the probe positions, detector calibration)
and titles, as it would for the whole read. Should its helpers change, the file is read whole by
rosettasciio instead. Several 4-D results: ``--dataset`` picks one by number or title.
"""

from __future__ import annotations

import numpy as np

from al4dstem.data.arrays import FlatFrames
from al4dstem.data.formats import Format, Request, make_dataset, register
from al4dstem.data.formats._rsciio import open_with_rsciio, pick_signal, rsciio_version, signal_calibration


class _NumberedFrames:
    """The numbered frame groups of one TopSpin result read as a ``(n, det_rows, det_cols)`` stack."""

    def __init__(self, group):
        self.group = group
        first = group["0"]["Data"]
        self.shape = (len(group.keys()), *(int(s) for s in first.shape))
        self.dtype = np.dtype(first.dtype)
        self.ndim = 3

    def __getitem__(self, key) -> np.ndarray:
        start, stop, step = key.indices(self.shape[0])
        if step != 1:
            raise IndexError("frames are read in order, step 1")
        out = np.empty((max(0, stop - start), *self.shape[1:]), self.dtype)
        for i in range(start, stop):
            out[i - start] = self.group[str(i)]["Data"][()]
        return out


def _lazy_results(f, path) -> list[dict]:
    """rosettasciio's signal dictionaries of every result, 4-D ones with lazily read frames."""
    from rsciio.topspin import _api

    def is_guid(name: str) -> bool:
        return [len(part) for part in name.split("-")] == [8, 4, 4, 4, 12]

    if "Metadata" in f:  # one experiment
        tasks = [(name, "Metadata") for name in f.keys() if is_guid(name)]
    else:  # several experiments, each a GUID group with its own Metadata
        tasks = [(f"{top}/{name}", f"{top}/Metadata") for top in f.keys() if is_guid(top)
                 for name in f[top].keys() if is_guid(name)]
    results = []
    for address, meta in tasks:
        original = _api._parse_app5_xml(f[meta][()].decode())
        metadata = _api._parse_hspy_meta(original, str(path))
        item = f[address]
        if hasattr(item, "keys"):  # a 4-D result: numbered frames
            axes = _api._get_4D_axes(item)
            rows, cols = axes[0]["size"], axes[1]["size"]
            frames = _NumberedFrames(item)
            if rows * cols != frames.shape[0]:
                raise ValueError(f"{address}: {frames.shape[0]} frames for a {rows} x {cols} scan")
            data = FlatFrames(frames, rows, cols)
        else:  # a 2-D composite image: listed, never read
            axes, data = [], item
        results.append({"data": data, "axes": axes, "metadata": metadata})
    return results


def open_app5(request: Request):
    from al4dstem.data.formats.hdf5 import open_h5

    f = open_h5(request.path)
    try:
        results = _lazy_results(f, request.path)
    except (ImportError, AttributeError, KeyError, IndexError, TypeError, ValueError):
        # not laid out as this reader expects (or rosettasciio's helpers moved): rosettasciio reads it whole
        f.close()
        return open_with_rsciio(request, FORMAT, "topspin", kwargs={"show_progressbar": False})
    index, signal = pick_signal(results, request)
    source = str(request.path) if len(results) == 1 else f"{request.path}:{index}"
    return make_dataset(signal["data"], request, FORMAT, source=source, calibration=signal_calibration(signal),
                        reader=f"h5py frame by frame (axes by rosettasciio {rsciio_version()}), lazy")


FORMAT = register(Format(
    name="app5", title="NanoMegas TopSpin", extensions=(".app5",), open=open_app5,
    lazy="lazy (h5py, frame by frame)", reader="h5py + rosettasciio", takes_dataset=True,
))

"""HyperSpy's own files: ``.hspy`` (HDF5) and ``.zspy`` (zarr, a folder or a zip), through rosettasciio.

Axes (navigation ``y, x``, signal ``qy, qx``) keep their scale, offset and units; the beam energy
is ``Acquisition_instrument.TEM.beam_energy``. Read lazily: a batch decodes only the chunks it
touches. ``.hdf5`` files written by HyperSpy (``file_format: HyperSpy``) are recognised too.
"""

from __future__ import annotations

from pathlib import Path

from al4dstem.data.formats import Format, Request, register
from al4dstem.data.formats._rsciio import open_with_rsciio


def is_hyperspy_hdf5(path: Path) -> bool:
    from al4dstem.data.formats.hdf5 import h5_check

    def test(f):
        marker = f.attrs.get("file_format", b"")
        return (marker.decode() if isinstance(marker, bytes) else str(marker)) == "HyperSpy"

    return h5_check(path, test)


def open_hspy(request: Request):
    return open_with_rsciio(request, HSPY, "hspy")


def open_zspy(request: Request):
    return open_with_rsciio(request, ZSPY, "zspy")


HSPY = register(Format(
    name="hspy", title="HyperSpy HDF5", extensions=(".hspy",), open=open_hspy, lazy="lazy (dask)",
    takes_dataset=True,
))
register(Format(
    name="hspy", title="HyperSpy HDF5", extensions=(".hdf5", ".h5"), open=open_hspy, sniff=is_hyperspy_hdf5,
    lazy="lazy (dask)", takes_dataset=True,
))
ZSPY = register(Format(
    name="zspy", title="HyperSpy zarr", extensions=(".zspy",), open=open_zspy, lazy="lazy (dask)",
    takes_dataset=True, folder=None,
))

"""EMD files of the NCEM (Berkeley, version 0.x) and ThermoFisher Velox variants, through rosettasciio.

py4DSTEM's own EMD 1.0 files are recognised by ``hdf5`` (read lazily with h5py, calibrations from
their ``dim`` vectors): this module claims only ``.emd`` files that are not EMD 1.0. Velox files
may hold several signals (images, spectra, a 4-D scan): the 4-D one is taken, or ``--dataset``
picks one by number or title.
"""

from __future__ import annotations

from pathlib import Path

from al4dstem.data.formats import Format, Request, register
from al4dstem.data.formats._rsciio import open_with_rsciio


def is_rsciio_emd(path: Path) -> bool:
    from al4dstem.data.formats.hdf5 import h5_check

    def test(f):
        if "Version" in f and "Data" in f:  # Velox
            return True
        major = f.attrs.get("version_major")
        return major is not None and int(major) == 0  # NCEM EMD 0.x (EMD 1.0 is py4DSTEM's)

    return h5_check(path, test)


def open_emd(request: Request):
    return open_with_rsciio(request, FORMAT, "emd")


FORMAT = register(Format(
    name="emd", title="EMD (NCEM or Velox)", extensions=(".emd",), open=open_emd, sniff=is_rsciio_emd,
    lazy="lazy (dask)", takes_dataset=True,
))

"""NanoMegas TopSpin ``.app5`` (HDF5; one or several scanning precession diffraction results), through
rosettasciio; lazy. Several 4-D results: ``--dataset`` picks one by number or title."""

from __future__ import annotations

from al4dstem.data.formats import Format, Request, register
from al4dstem.data.formats._rsciio import open_with_rsciio


def open_app5(request: Request):
    return open_with_rsciio(request, FORMAT, "topspin", kwargs={"show_progressbar": False})


FORMAT = register(Format(
    name="app5", title="NanoMegas TopSpin", extensions=(".app5",), open=open_app5,
    lazy="in memory (rosettasciio reads it whole)", takes_dataset=True,
))

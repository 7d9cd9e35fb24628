"""NeXus ``.nxs`` files (``NXdata`` groups with their axes), through rosettasciio; lazy.

DECTRIS ARINA master files are NeXus too, but are recognised first by ``arina``.
"""

from __future__ import annotations

from al4dstem.data.formats import Format, Request, register
from al4dstem.data.formats._rsciio import open_with_rsciio


def open_nexus(request: Request):
    return open_with_rsciio(request, FORMAT, "nexus", kwargs={"nxdata_only": True})


FORMAT = register(Format(
    name="nexus", title="NeXus", extensions=(".nxs",), open=open_nexus, lazy="lazy (dask)", takes_dataset=True,
))

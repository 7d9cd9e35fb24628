"""MRC files (``.mrc``; Direct Electron 4-D STEM movies with their ``_info.txt``), through rosettasciio.

A plain MRC stack has no scan shape: ``--scan-shape`` lays its frames out. Read lazily.
"""

from __future__ import annotations

from al4dstem.data.formats import Format, Request, register
from al4dstem.data.formats._rsciio import open_with_rsciio


def open_mrc(request: Request):
    return open_with_rsciio(request, FORMAT, "mrc", rechunk_kwargs=lambda signal: {})


FORMAT = register(Format(
    name="mrc", title="MRC (incl. Direct Electron 4-D STEM)", extensions=(".mrc",), open=open_mrc,
    lazy="lazy (memory-mapped chunks)",
))

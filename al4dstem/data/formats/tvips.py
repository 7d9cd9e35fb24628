"""TVIPS stream files (``*_000.tvips``, with their ``_001, _002 ...`` parts), through rosettasciio; lazy.

They hold a stack of frames: ``--scan-shape`` lays them out (from the first frame)."""

from __future__ import annotations

from al4dstem.data.formats import Format, Request, register
from al4dstem.data.formats._rsciio import open_with_rsciio


def open_tvips(request: Request):
    return open_with_rsciio(request, FORMAT, "tvips")


FORMAT = register(Format(
    name="tvips", title="TVIPS stream", extensions=(".tvips",), open=open_tvips, lazy="lazy (dask)",
))

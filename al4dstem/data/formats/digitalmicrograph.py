"""Gatan DigitalMicrograph ``.dm3 / .dm4`` (4-D STEMx scans, or 3-D stacks with ``--scan-shape``),
through rosettasciio: axes calibrations and the beam energy from the file's tags; read lazily."""

from __future__ import annotations

from al4dstem.data.formats import Format, Request, register
from al4dstem.data.formats._rsciio import open_with_rsciio


def open_dm(request: Request):
    return open_with_rsciio(request, FORMAT, "digitalmicrograph", rechunk_kwargs=lambda signal: {})


FORMAT = register(Format(
    name="dm", title="Gatan DigitalMicrograph", extensions=(".dm3", ".dm4"), open=open_dm,
    lazy="lazy (memory-mapped)", takes_dataset=True,
))

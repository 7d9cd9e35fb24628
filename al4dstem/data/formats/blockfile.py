"""NanoMegas blockfiles (``.blo``, precession electron diffraction), through rosettasciio.

Scan step in nm and the detector pixel as the file gives it (its ``SDP`` field, rosettasciio's
unit ``cm``); the beam energy from the header (volts). Read lazily, memory-mapped.
"""

from __future__ import annotations

from dataclasses import replace

from al4dstem.data.formats import Format, Request, register
from al4dstem.data.formats._rsciio import open_with_rsciio


def _header_extras(signal, calibration):
    header = (signal.get("original_metadata") or {}).get("blockfile_header") or {}
    extra = dict(calibration.extra)
    energy = calibration.beam_energy_kev
    try:
        volts = float(header.get("Beam_energy", 0))
        if volts > 0:
            energy = volts / 1e3
    except (TypeError, ValueError):
        pass
    if header.get("Camera_length") not in (None, "", "0"):
        extra["camera"] = f"camera length {header['Camera_length']} (as the file gives it)"
    return replace(calibration, beam_energy_kev=energy, extra=extra)


def open_blo(request: Request):
    return open_with_rsciio(request, FORMAT, "blockfile", rechunk_kwargs=lambda signal: {},
                            calibration_hook=_header_extras)


FORMAT = register(Format(
    name="blo", title="NanoMegas blockfile", extensions=(".blo",), open=open_blo,
    magic=lambda head: head[:6] == b"IMGBLO", lazy="lazy (memory-mapped chunks)",
))

"""EMPAD (Electron Microscope Pixel Array Detector): the ``.xml`` description with its ``.raw`` frames.

- ``.xml``: through rosettasciio (scan shape, scan step, detector calibration and beam energy
  from the description), lazy;
- ``.raw``: the frames alone, memory-mapped here: 128 x 128 float32 pixels followed by two rows
  of metadata each. The scan shape comes from ``--scan-shape``, else from an EMPAD ``.xml``
  beside it that names this file, else from a ``scan_x<COLS>_y<ROWS>.raw`` name; a square scan is
  assumed only as the last resort, and said so. A size that is not a whole number of frames is
  not EMPAD data (one line).
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from al4dstem.data.formats import Format, Request, make_dataset, register
from al4dstem.data.formats._rsciio import open_with_rsciio
from al4dstem.errors import Al4dstemError

FRAME_ROWS, FRAME_COLS, STORED_ROWS = 128, 128, 130
FRAME_BYTES = STORED_ROWS * FRAME_COLS * 4
_NAME = re.compile(r"scan_x(\d+)_y(\d+)", re.IGNORECASE)


def is_empad_xml(path: Path) -> bool:
    head = path.read_bytes()[:65536]
    return b"<raw_file" in head and b"<root" in head


def _voltage(signal, calibration):
    om = signal.get("original_metadata") or {}
    try:
        iom = om["root"]["iom_measurements"]
        volts = float(iom["source.get_voltage"] if "source.get_voltage" in iom else iom["source"]["get_voltage"])
    except (KeyError, TypeError, ValueError):
        return calibration
    return replace(calibration, beam_energy_kev=volts / 1e3) if volts > 0 else calibration


def open_xml(request: Request):
    return open_with_rsciio(request, XML, "empad", calibration_hook=_voltage)


def _xml_naming(raw: Path) -> Path | None:
    """An EMPAD description in the same folder whose ``raw_file`` is ``raw``."""
    for xml in sorted(raw.parent.glob("*.xml")):
        try:
            if is_empad_xml(xml) and f'filename="{raw.name}"'.encode() in xml.read_bytes()[:65536]:
                return xml
        except OSError:
            continue
    return None


def open_raw(request: Request):
    path = request.path
    size = path.stat().st_size
    if size % FRAME_BYTES:
        raise Al4dstemError(f"{path}: {size:,} bytes is not a whole number of EMPAD frames (130 x 128 float32 "
                            f"each, {FRAME_BYTES:,} bytes): truncated, or not an EMPAD file")
    frames = size // FRAME_BYTES
    notes = []
    if request.scan_shape is None:
        xml = _xml_naming(path)
        if xml is not None:
            dataset = open_xml(Request(xml, request.dataset, None))
            dataset.notes = (*dataset.notes, f"read through {xml.name}, the EMPAD description naming this file")
            return dataset
        m = _NAME.search(path.stem)
        side = int(round(frames ** 0.5))
        if m:
            request = Request(path, request.dataset, (int(m.group(2)), int(m.group(1))), inferred=True)
            notes.append(f"scan shape {m.group(2)}x{m.group(1)} from the file name (scan_x<COLS>_y<ROWS>)")
        elif side * side == frames:
            request = Request(path, request.dataset, (side, side), inferred=True)
            notes.append(f"scan shape {side}x{side} assumed (square; no EMPAD .xml names this file): give "
                         f"--scan-shape ROWSxCOLS if not")
        else:
            raise Al4dstemError(f"{path}: {frames:,} EMPAD frames and no scan shape (no .xml names this file): "
                                f"give --scan-shape ROWSxCOLS")
    frame = np.dtype([("data", "<f4", (FRAME_ROWS, FRAME_COLS)),
                      ("footer", "<f4", (STORED_ROWS - FRAME_ROWS, FRAME_COLS))])
    stack = np.memmap(path, dtype=frame, mode="r", shape=(frames,))["data"]
    return make_dataset(stack, request, RAW, size=size, notes=notes)


XML = register(Format(
    name="empad", title="EMPAD description (.xml + .raw)", extensions=(".xml",), open=open_xml, sniff=is_empad_xml,
    lazy="lazy (memory-mapped chunks)",
))
RAW = register(Format(
    name="raw", title="EMPAD frames (.raw)", extensions=(".raw",), open=open_raw, lazy="memory-mapped",
    reader="numpy",
))

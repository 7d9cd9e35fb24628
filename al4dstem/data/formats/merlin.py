"""Quantum Detectors Merlin (Medipix3) ``.mib`` files, with or without their ``.hdr``, through rosettasciio.

rosettasciio finds the scan shape from the ``.hdr`` (frames per trigger) or, failing that, from the
gaps between the frame timestamps (a new scan line starts after the fly-back): a note says when
the shape was guessed so. ``--scan-shape ROWSxCOLS`` overrides it (the frames are then read as
one stack in scan order and laid out here, so a wrong size is one line naming the frame count;
a scan that stopped early is read up to its last complete row). Frames are memory-mapped and
read lazily; as rosettasciio does, each frame is flipped upside down (Merlin stores the
detector's bottom row first). Merlin files hold no calibration.
"""

from __future__ import annotations

from al4dstem.data.formats import Format, Request, register
from al4dstem.data.formats._rsciio import open_with_rsciio
from al4dstem.errors import Al4dstemError


def _frames_in_file(request: Request) -> int:
    import numpy as np
    from rsciio.quantumdetector._api import MIBProperties

    props = MIBProperties()
    try:
        props.parse_file(str(request.path))
        frame = props.head_size + int(np.prod(props.merlin_size)) * np.dtype(props.dtype).itemsize
    except Exception as e:
        raise Al4dstemError(f"{request.path}: not a readable Merlin .mib file (its first frame header: "
                            f"{type(e).__name__}: {e})") from None
    return int(props.file_size // frame)


HDR_KEYS = ("Frames in Acquisition (Number)", "Frames per Trigger (Number)")


def _hdr_fields(hdr) -> dict[str, str]:
    fields = {}
    for line in hdr.read_text(errors="replace").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return fields


def open_mib(request: Request):
    path, hdr = request.path, request.path.with_suffix(".hdr")
    kwargs, notes = {}, []
    if request.scan_shape is not None:
        kwargs["navigation_shape"] = (_frames_in_file(request),)  # one stack; make_dataset lays it out
        return open_with_rsciio(request, FORMAT, "quantumdetector", kwargs=kwargs,
                                rechunk_kwargs=lambda signal: dict(kwargs))
    if hdr.exists():
        fields = _hdr_fields(hdr)
        missing = [k for k in HDR_KEYS if k not in fields]
        if missing:
            raise Al4dstemError(f"{path}: its {hdr.name} has no '{missing[0]}' line to give the scan size: give "
                                f"--scan-shape ROWSxCOLS ({_frames_in_file(request):,} frames)")
        guessed = fields[HDR_KEYS[1]] == "1"
        why = f"{hdr.name} gives 1 frame per trigger"
    else:
        guessed, why = True, f"no {hdr.name} beside it"

    def again(signal):  # the second, finer-chunked read keeps the shape found the first time
        return {"navigation_shape": tuple(int(s) for s in signal["data"].shape[:-2][::-1])}

    if guessed:
        notes.append(f"scan shape from the frame timestamps ({why}): give --scan-shape ROWSxCOLS if wrong")
    no_lines = (f"{path}: {why} and the frame timestamps do not show the scan lines: give --scan-shape ROWSxCOLS "
                f"({_frames_in_file(request):,} frames)")
    try:
        dataset = open_with_rsciio(request, FORMAT, "quantumdetector", kwargs=kwargs, rechunk_kwargs=again,
                                   notes=notes)
    except Al4dstemError as e:
        if guessed and "and no scan shape" in str(e):  # rosettasciio left the frames as a stack
            raise Al4dstemError(no_lines) from None
        raise
    if guessed and dataset.scan_shape[1] == 1 and dataset.n_positions > 1:
        raise Al4dstemError(no_lines)  # every frame made a scan row of its own: no line breaks found
    return dataset


FORMAT = register(Format(
    name="mib", title="Quantum Detectors Merlin (Medipix3)", extensions=(".mib",), open=open_mib,
    magic=lambda head: head.startswith(b"MQ1,"), lazy="lazy (memory-mapped chunks)",
))

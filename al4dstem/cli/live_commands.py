"""``al4dstem live``: map a scan while the detector streams it (LiberTEM-live, extra ``live``)."""

from __future__ import annotations

from pathlib import Path

import typer

from al4dstem.cli.app import app, console, out
from al4dstem.cli.checks import check_at_least
from al4dstem.cli.progress import patterns_bar
from al4dstem.errors import Al4dstemError
from al4dstem.paths import Files, check_outputs


@app.command()
def live(
    model: Path = typer.Option(..., "--model", help="Model checkpoint written by `al4dstem train` (the detector's "
                                                    "frame size)."),
    scan_shape: str = typer.Option(..., "--scan-shape", metavar="ROWSxCOLS", help="Positions of the scan to acquire."),
    out_prefix: Path = typer.Option(..., "--out", metavar="PREFIX",
                                    help="Writes PREFIX.npy + PREFIX_valid.npy (or PREFIX.hspy|zspy|emd), "
                                         "PREFIX.png, PREFIX_figure.png, PREFIX.json."),
    host: str = typer.Option("127.0.0.1", "--host", help="The Merlin's address (data and control server)."),
    data_port: int = typer.Option(6342, "--data-port", help="The Merlin's data port."),
    api_port: int = typer.Option(6341, "--api-port", help="The Merlin's control port."),
    replay: Path | None = typer.Option(None, "--replay", metavar="FILE.mib",
                                       help="No microscope: replay this recorded .mib (its .hdr beside it) through "
                                            "LiberTEM-live's Merlin simulator on loopback, and map that."),
    dwelltime: float | None = typer.Option(None, "--dwelltime", help="--replay: seconds per frame (the detector's "
                                                                     "frame rate; default: as fast as it goes)."),
    batch_size: int = typer.Option(256, "--batch-size", help="Patterns per network batch."),
    figure: bool = typer.Option(True, "--figure/--no-figure", help="Also write PREFIX_figure.png (matplotlib)."),
    fmt: str = typer.Option("npy", "--format", help="Map file: npy, hspy, zspy or emd."),
    scheme: str = typer.Option("paper", "--scheme", help="Map colours: paper or class (colour-blind safe)."),
) -> None:
    """Map a scan while a Merlin detector streams it: arm, trigger, classify the frames as they come.

    Needs LiberTEM-live (the 'live' extra of al4dstem). Try it without a microscope with --replay.
    """
    import contextlib

    from al4dstem.colors import SCHEMES
    from al4dstem.data.formats import parse_scan_shape
    from al4dstem.maps import output_paths, write_prediction

    check_at_least(batch_size, 1, "--batch-size")
    if scheme not in SCHEMES:
        raise Al4dstemError(f"--scheme {scheme!r}: one of {', '.join(SCHEMES)}")
    shape = parse_scan_shape(scan_shape)
    if dwelltime is not None and (replay is None or dwelltime < 0):
        raise Al4dstemError("--dwelltime sets the replay's frame rate: give it with --replay, and not negative")
    try:
        files = list(output_paths(out_prefix, fmt, provenance=True).values())
    except Al4dstemError as e:
        raise Al4dstemError(f"--out {e}") from None
    check_outputs(writes={"--out": Files(out_prefix, files)}, reads={"--model": model, "--replay": replay})
    if replay is not None and not replay.is_file():
        raise Al4dstemError(f"--replay {replay}: no such file")
    try:
        from al4dstem.integrations import live as live_mapping
    except ImportError as e:
        raise Al4dstemError(str(e)) from None
    from al4dstem.models.trained import TrainedNetwork

    clf = TrainedNetwork.load(model)
    source = contextlib.nullcontext({"host": host, "data_port": data_port, "api_port": api_port}) \
        if replay is None else live_mapping.replay(replay, shape, dwelltime=dwelltime)
    with source as where, patterns_bar("mapping live", shape[0] * shape[1]) as progress:
        result = live_mapping.map_live(clf, shape, batch_size=batch_size, progress=progress, **where)
    record = _live_record(model, clf, where, replay)
    paths = write_prediction(out_prefix, result.probs, result.valid, figure=figure, format=fmt, provenance=record,
                             scheme=scheme)
    n_bad = int((~result.valid).sum())
    if n_bad:
        console.print(f"warning: {n_bad} of {result.valid.size} frames hold NaN/inf and were not classified",
                      highlight=False, soft_wrap=True)
    out.print(f"mapped {result.valid.size} frames live in {result.seconds:.2f} s "
              f"({result.patterns_per_second:.0f} patterns/s)", highlight=False, soft_wrap=True)
    for name, path in paths.items():
        out.print(f"  {name:7s} {path}", highlight=False, soft_wrap=True)


def _live_record(model: Path, clf, where: dict, replay: Path | None) -> dict:
    from al4dstem.provenance import file_record, run_record

    trained = clf.payload.get("provenance") or {}
    source = {"detector": "merlin", **where}
    if replay is not None:
        source["replay"] = file_record(replay)
    return {**run_record(), "live": source, "model": {**file_record(model), "network": clf.name,
                                                      "provenance": trained},
            "sampler": trained.get("sampler", "not recorded (model without provenance)")}

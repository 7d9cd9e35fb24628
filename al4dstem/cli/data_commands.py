"""``al4dstem info`` and ``al4dstem simulate``: look at data, make synthetic data."""

from __future__ import annotations

import typer

from al4dstem.cli.app import app, console, out
from al4dstem.cli.checks import check_at_least
from al4dstem.errors import Al4dstemError

MODEL_SUFFIXES = (".pt", ".pth", ".ckpt")


@app.command()
def info(
    data: str = typer.Argument(..., help="4D-STEM data (.npy, .h5/.emd/.py4dstem, .mib, .blo, .dm3/.dm4, .hspy/.zspy, "
                                         ".mrc, .nxs, .app5, EMPAD .xml/.raw, .tvips, ARINA master .h5, a folder "
                                         "of X_Y*.png), or a model file written by `al4dstem train`."),
    dataset: str | None = typer.Option(None, "--dataset", help="Which dataset, in a file holding several "
                                                               "(HDF5 path, or number / title)."),
    scan_shape: str | None = typer.Option(None, "--scan-shape", metavar="ROWSxCOLS",
                                          help="Scan shape for frames without one (raw files, stacks)."),
) -> None:
    """Format, shape, dtype, size, calibration, broken patterns and a virtual bright-field image of DATA;
    for a model file, what it was trained on and how (provenance)."""
    from pathlib import Path

    if Path(data).suffix.lower() in MODEL_SUFFIXES and Path(data).is_file():
        return _model_info(Path(data))
    from al4dstem.data import open_dataset
    from al4dstem.data.preview import ScanImage, describe, nonfinite_note

    ds = open_dataset(data, dataset=dataset, scan_shape=scan_shape)
    if console.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("reading"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console, transient=True) as bar:
            task = bar.add_task("reading", total=ds.n_positions)
            survey = ds.survey(progress=lambda done, _: bar.update(task, completed=done))
    else:
        survey = ds.survey()
    for key, value in describe(ds, survey):
        out.print(f"{key:<11} {value}", highlight=False, soft_wrap=True)
    out.print("virtual bright field (red / '!': non-finite patterns):", highlight=False)
    out.print(ScanImage(survey.marked_image()))
    if len(survey.nonfinite):  # the whole report is printed, and scripts still see bad data by the exit code
        raise Al4dstemError(f"{ds.source}: {nonfinite_note(survey)}")


def _model_info(path) -> None:
    """What ``al4dstem info model.pt`` prints: the network, its training, and its provenance."""
    from al4dstem.models.checkpoint import read_checkpoint
    from al4dstem.provenance import describe

    payload = read_checkpoint(path)
    shape = payload["detector_shape"]
    counts = ", ".join(f"{k} {v}" for k, v in payload.get("label_counts", {}).items()) or "not recorded"
    training = payload.get("training", {})
    size = payload["network_config"].get("input_size")
    lines = [("model", str(path)), ("network", f"{payload['network']} (input {size} px)"),
             ("detector", f"{shape[0]} x {shape[1]} pixels (rows x cols): predict maps data of this size"),
             ("labels", f"{payload.get('n_labels', '?')} ({counts})")]
    if training:
        lines.append(("training", ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                            for k, v in training.items() if not isinstance(v, (dict, list)))))
    if payload.get("versions"):
        lines.append(("written by", ", ".join(f"{k} {v}" for k, v in payload["versions"].items())))
    record = payload.get("provenance")
    lines += describe(record) if record else [("provenance", "not recorded (a model written before al4dstem kept it)")]
    for key, value in lines:
        out.print(f"{key:<11} {value}", highlight=False, soft_wrap=True)


@app.command()
def simulate(
    out_path: str = typer.Argument(..., metavar="OUT", help="Output data file: .npy, .h5 or .hdf5."),
    truth: str | None = typer.Option(None, "--truth", help="Write the ground truth here (CSV x,y,label)."),
    geometry: str = typer.Option("bands", "--geometry",
                                 help="Domain layout: bands, tilted, bullseye, stripes, needles."),
    nx: int = typer.Option(206, "--nx", help="Scan columns."),
    ny: int = typer.Option(34, "--ny", help="Scan rows."),
    detector: int = typer.Option(256, "--detector", help="Detector side in pixels."),
    seed: int = typer.Option(0, "--seed", help="Random seed: same seed, same scan."),
    dose: float = typer.Option(1e5, "--dose", help="Mean electrons per pattern."),
    ghost_strength: float = typer.Option(0.02, "--ghost-strength",
                                         help="Ghost / main disk intensity (realistic 1e-3..5e-2)."),
    wall_width: float = typer.Option(1.0, "--wall-width", help="Domain mixing blur at walls, scan pixels."),
    none_width: float | None = typer.Option(None, "--none-width",
                                            help="Thickness of the none walls, scan pixels (default per geometry)."),
    rotation: float = typer.Option(4.0, "--rotation", help="Crystal axes vs detector axes, degrees."),
    drift: float = typer.Option(0.012, "--drift", help="Largest descan drift, fraction of the detector side."),
    counting: bool = typer.Option(True, "--counting/--no-counting", help="Poisson counting noise."),
    threads: int | None = typer.Option(None, "--threads", help="Worker threads (speed only, not the result)."),
    series: int | None = typer.Option(None, "--series", metavar="FRAMES",
                                      help="An in-situ series of FRAMES scans of a wall moving across the scan and "
                                           "widening (--geometry is not used): OUT.npy (5-D) or a folder OUT of "
                                           "frame_000.npy, ...; --truth gets a scan column and TRUTH_walls.csv."),
) -> None:
    """Simulate a boracite-like 4D-STEM scan with ground truth (see al4dstem.simulate)."""
    from al4dstem.paths import check_outputs
    from al4dstem.simulate import simulate_to_file

    check_at_least(threads, 1, "--threads")
    check_at_least(series, 1, "--series")
    check_outputs(writes={"OUT": out_path, "--truth": truth}, create_folders=True)
    if series is not None:
        _simulate_series(out_path, series, truth, nx=nx, ny=ny, detector=detector, seed=seed, threads=threads,
                         dose=dose, ghost_strength=ghost_strength, wall_width=wall_width, none_width=none_width,
                         rotation=rotation, drift=drift, counting=counting)
        return
    options = dict(out_path=out_path, truth_path=truth, nx=nx, ny=ny, detector=detector, geometry=geometry,
                   seed=seed, threads=threads, dose=dose, ghost_strength=ghost_strength,
                   wall_width=wall_width, none_width=none_width, rotation=rotation, drift=drift,
                   counting=counting)
    if console.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console, transient=True) as bar:
            task = bar.add_task("simulating", total=nx * ny)
            result = simulate_to_file(**options, progress=lambda done, _: bar.update(task, completed=done))
    else:
        result = simulate_to_file(**options)
    counts = ", ".join(f"{name} {n}" for name, n in result.class_counts.items())
    truth_note = f"; truth {result.truth_path}" if result.truth_path else ""
    out.print(f"{result.path}: {geometry} scan {nx} x {ny} (cols x rows), shape {result.shape} uint16; "
              f"{counts}{truth_note}; {result.seconds:.1f} s", highlight=False, soft_wrap=True)


def _simulate_series(out_path: str, frames: int, truth: str | None, **options) -> None:
    from al4dstem.simulate import simulate_series

    if console.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console, transient=True) as bar:
            task = bar.add_task("simulating", total=frames * options["nx"] * options["ny"])
            result = simulate_series(out_path, frames, truth, **options,
                                     progress=lambda done, _: bar.update(task, completed=done))
    else:
        result = simulate_series(out_path, frames, truth, **options)
    truth_note = f"; truth {result.truth_path}" if result.truth_path else ""
    out.print(f"{result.path}: moving-wall series of {frames} frames, shape {result.shape} uint16; wall from x = "
              f"{result.wall_position[0]:.1f} to {result.wall_position[-1]:.1f}{truth_note}; {result.seconds:.1f} s",
              highlight=False, soft_wrap=True)

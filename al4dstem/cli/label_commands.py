"""``al4dstem label`` and ``al4dstem plot-labels``: the labelling loop from the command line."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import typer

from al4dstem.cli.app import app, console, out

STOP_REASONS = {
    "budget": "budget reached",
    "exhausted": "the sampler has nothing more to propose",
    "quit": "stopped; run the same command again to continue",
}


@app.command()
def label(
    data: str = typer.Argument(..., help="4D-STEM data: .npy, .h5, .emd, .dm4, .mib, ... or a PNG folder."),
    labels: Path = typer.Option(..., "--labels", help="Label CSV: answers are appended; rerun to resume."),
    budget: int = typer.Option(..., "--budget", help="Confirmed labels wanted in the file (skips do not count)."),
    sampler: str = typer.Option("grid-midpoint", "--sampler",
                                help="grid-midpoint, random, uncertainty, hybrid, or package.module:Class."),
    step: int | None = typer.Option(None, "--step", help="Grid step of grid-midpoint/hybrid (default: budget)."),
    truth: Path | None = typer.Option(None, "--truth",
                                      help="Answer from this label file (CSV or ghost-hunter YAML), unattended."),
    fill: str = typer.Option("skip", "--fill", help="Positions the truth lacks: skip, or nearest (flagged)."),
    model: Path | None = typer.Option(None, "--model", help="A trained model: drives uncertainty, shows its guess."),
    seed: int = typer.Option(0, "--seed", help="Random state of the sampler and of a new model."),
    dataset: str | None = typer.Option(None, "--dataset", help="HDF5 path of the 4-D dataset, if several."),
    plot: Path | None = typer.Option(None, "--plot", help="Also write the sampling-pattern figure (PNG)."),
    scan_shape: str | None = typer.Option(None, "--scan-shape", metavar="ROWSxCOLS",
                                          help="Scan shape of a file without one (raw frames, stacks)."),
    ui: str = typer.Option("terminal", "--ui", help="Where a person answers: terminal, or browser (a local page)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Browser UI: address to serve on (loopback by default)."),
    port: int = typer.Option(0, "--port", help="Browser UI: port (0 picks a free one)."),
    no_open: bool = typer.Option(False, "--no-open", help="Browser UI: print the URL but open no browser."),
) -> None:
    """Label patterns chosen by a sampler: at the terminal (one key each), in a browser page, or from --truth."""
    import sys

    from al4dstem.cli.checks import check_seed
    from al4dstem.labeller import label as run_label
    from al4dstem.paths import check_outputs

    check_seed(seed)

    reads = {"data file": data, "--truth": truth, "--model": model}
    check_outputs(writes={"--labels": labels, "--plot": plot}, reads=reads)

    def show_url(url: str, warning: str | None) -> None:
        if warning:
            console.print(f"warning: {warning}", highlight=False)
        print(url, flush=True)  # one line on stdout, for scripts and tests

    terminal = truth is None and ui == "terminal"
    oracle_console = None
    if terminal:
        from rich.console import Console

        from al4dstem.oracles.render import color_system

        # draw where the person looks: stderr, or stdout when only stdout is a terminal
        oracle_console = Console(stderr=console.is_terminal or not out.is_terminal,
                                 color_system=color_system() or "auto")
    bar = None
    if truth is not None and console.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        bar = Progress(TextColumn("labelling"), BarColumn(), MofNCompleteColumn(), console=console, transient=True)
    with bar or nullcontext():
        task = bar.add_task("labelling", total=budget) if bar else None
        result = run_label(data, labels, budget, sampler, step=step, truth=truth, fill=fill, model=model, seed=seed,
                           dataset=dataset, scan_shape=scan_shape, ui=ui, host=host, port=port,
                           open_browser=not no_open, console=oracle_console, on_url=show_url,
                           progress=(lambda done, _: bar.update(task, completed=done)) if bar else None)
    if terminal:
        oracle_console.clear()

    classes = ", ".join(f"{name} {n}" for name, n in result.per_class.items())
    out.print(f"{result.labelled} of {budget} labelled ({STOP_REASONS[result.stopped]}): {classes}; "
              f"{result.skips} skipped", highlight=False)
    out.print(f"this run: +{result.added} labels, {result.skipped} skips, {result.undone} undone, "
              f"{result.rounds} rounds; saved in {labels}", highlight=False)
    if plot is not None:
        from al4dstem.data import open_dataset

        _plot_labels(open_dataset(data, dataset=dataset, scan_shape=scan_shape), labels, plot)
    if result.exit_code:
        sys.stdout.flush()
        raise typer.Exit(result.exit_code)


@app.command("plot-labels")
def plot_labels(
    data: str = typer.Argument(..., help="4D-STEM data the labels belong to (its virtual image is the backdrop)."),
    labels: Path = typer.Option(..., "--labels", help="Label file (CSV or ghost-hunter YAML)."),
    out_png: Path = typer.Option(..., "--out", help="PNG to write."),
    dataset: str | None = typer.Option(None, "--dataset", help="HDF5 path of the 4-D dataset, if several."),
    scan_shape: str | None = typer.Option(None, "--scan-shape", metavar="ROWSxCOLS",
                                          help="Scan shape of a file without one (raw frames, stacks)."),
) -> None:
    """Write the sampling-pattern figure: labelled positions coloured by class over the scan."""
    from al4dstem.data import open_dataset
    from al4dstem.labels import read_labels
    from al4dstem.paths import check_outputs

    check_outputs(writes={"--out": out_png}, reads={"data file": data, "--labels": labels})
    read_labels(labels)  # a mistyped label path is an error, not an empty figure
    _plot_labels(open_dataset(data, dataset=dataset, scan_shape=scan_shape), labels, out_png)


def _plot_labels(ds, labels: Path, png: Path) -> None:
    from al4dstem.figures import plot_sampling_pattern
    from al4dstem.labels import read_labels

    rows = read_labels(labels, ds.scan_shape) if labels.exists() else []
    plot_sampling_pattern(png, rows, ds.scan_shape, ds.virtual_image(), title=labels.name)
    out.print(f"sampling pattern written to {png}", highlight=False)

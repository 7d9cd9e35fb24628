"""``al4dstem label`` and ``al4dstem plot-labels``: the labelling loop from the command line."""

from __future__ import annotations

from pathlib import Path

import typer

from al4dstem.cli.app import app, console, out
from al4dstem.errors import Al4dstemError

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
) -> None:
    """Label patterns chosen by a sampler: at the terminal (one key each), or from --truth."""
    from al4dstem.data import open_dataset
    from al4dstem.labels import LabelStore
    from al4dstem.loop import run_labelling

    if budget <= 0:
        raise Al4dstemError(f"--budget must be a positive number of labels, got {budget}")
    if truth is None:
        from al4dstem.oracles.keys import require_terminal

        require_terminal()
    ds = open_dataset(data, dataset=dataset)
    _check_step(step, ds.scan_shape)
    store = LabelStore(labels, ds.scan_shape)
    if store.repaired:
        console.print(f"{labels}: dropped a torn last line (an answer that was never confirmed)")
    oracle = _make_oracle(truth, fill, ds.scan_shape, store)
    chosen = _make_sampler(sampler, step, seed)
    net = _make_model(model, ds, seed, chosen, store)

    if truth is not None and console.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        with Progress(TextColumn("labelling"), BarColumn(), MofNCompleteColumn(), console=console,
                      transient=True) as bar:
            task = bar.add_task("labelling", total=budget, completed=min(budget, len(store.labels)))
            result = run_labelling(ds, store, chosen, oracle, budget, model=net,
                                   progress=lambda done, _: bar.update(task, completed=done))
    else:
        result = run_labelling(ds, store, chosen, oracle, budget, model=net)
        if truth is None:
            oracle.console.clear()

    classes = ", ".join(f"{name} {n}" for name, n in result.per_class.items())
    out.print(f"{result.labelled} of {budget} labelled ({STOP_REASONS[result.stopped]}): {classes}; "
              f"{result.skips} skipped", highlight=False)
    out.print(f"this run: +{result.added} labels, {result.skipped} skips, {result.undone} undone, "
              f"{result.rounds} rounds; saved in {labels}", highlight=False)
    if plot is not None:
        _plot_labels(ds, labels, plot)


@app.command("plot-labels")
def plot_labels(
    data: str = typer.Argument(..., help="4D-STEM data the labels belong to (its virtual image is the backdrop)."),
    labels: Path = typer.Option(..., "--labels", help="Label file (CSV or ghost-hunter YAML)."),
    out_png: Path = typer.Option(..., "--out", help="PNG to write."),
    dataset: str | None = typer.Option(None, "--dataset", help="HDF5 path of the 4-D dataset, if several."),
) -> None:
    """Write the sampling-pattern figure: labelled positions coloured by class over the scan."""
    from al4dstem.data import open_dataset

    _plot_labels(open_dataset(data, dataset=dataset), labels, out_png)


def _plot_labels(ds, labels: Path, png: Path) -> None:
    from al4dstem.figures import plot_sampling_pattern
    from al4dstem.labels import read_labels

    rows = read_labels(labels, ds.scan_shape) if labels.exists() else []
    plot_sampling_pattern(png, rows, ds.scan_shape, ds.virtual_image(), title=labels.name)
    out.print(f"sampling pattern written to {png}", highlight=False)


def _check_step(step: int | None, scan_shape) -> None:
    rows, cols = scan_shape
    if step is not None and not 1 <= step < max(rows, cols):
        raise Al4dstemError(f"--step {step} does not fit the {cols} x {rows} scan (cols x rows): "
                            f"use 1 to {max(rows, cols) - 1}")


def _make_sampler(spec: str, step: int | None, seed: int):
    from al4dstem.strategies import get_sampler

    return get_sampler(spec, step=step, random_state=seed)


def _make_oracle(truth: Path | None, fill: str, scan_shape, store):
    """The terminal oracle, or a truth oracle checked to know at least one unanswered position."""
    if truth is None:
        from al4dstem.oracles import TerminalOracle

        return TerminalOracle(console=console if console.is_terminal or not out.is_terminal else out)
    from al4dstem.loop import unanswered
    from al4dstem.oracles import TruthOracle

    oracle = TruthOracle(truth, fill=fill)
    oracle.table(scan_shape)
    left = unanswered(scan_shape, store)
    if len(left) and not oracle.covers(left).any():
        rows, cols = scan_shape
        raise Al4dstemError(f"{truth}: no label for any of the {len(left)} positions still to label in the "
                            f"{cols} x {rows} scan (a truth file for another scan?)")
    return oracle


def _make_model(path: Path | None, ds, seed: int, sampler, store):
    """The model given, or a new one for a sampler that needs a model, when the labels so far
    (two classes at least) can train it; without one the loop says what is needed."""
    if path is None and (not sampler.needs_model or len(set(store.labels.values())) < 2):
        return None
    from al4dstem.models import CNNClassifier

    if path is not None:
        return CNNClassifier.load(path, dataset=ds)
    return CNNClassifier(dataset=ds, random_state=seed)

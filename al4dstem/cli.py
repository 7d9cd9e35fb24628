"""The ``al4dstem`` command line: parse, call the library, print. No science lives here.

Every mistake a user can make surfaces as ``Al4dstemError`` and leaves as one line on
stderr with exit code 2 (1 for Ctrl-C); tracebacks are kept for real bugs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from al4dstem.errors import Al4dstemError

app = typer.Typer(
    name="al4dstem",
    help="Active-learning polarization domain maps from 4D-STEM scans.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)  # progress and chatter; results go to stdout
out = Console()


def main() -> None:
    """Console-script entry point: one clear line per user error, never a traceback."""
    try:
        app(standalone_mode=False)
    except Al4dstemError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except (typer.Exit, SystemExit) as e:
        code = getattr(e, "exit_code", getattr(e, "code", 0))
        sys.exit(code)
    except Exception as e:
        # Usage errors arrive here in non-standalone mode. Typer >= 0.29 raises its vendored
        # copy of click's exceptions, so recognise them by shape rather than by class.
        if hasattr(e, "format_message") and isinstance(getattr(e, "exit_code", None), int):
            if e.format_message().strip():  # empty after `al4dstem` alone printed the help
                print(f"error: {e.format_message()}", file=sys.stderr)
            sys.exit(e.exit_code or 2)
        if type(e).__name__ == "Abort":  # click's Ctrl-C / EOF at a prompt
            print("interrupted", file=sys.stderr)
            sys.exit(130)
        raise


# ============================================================ data: simulate, info
# (simulate and info commands go here)


@app.command()
def info(
    data: str = typer.Argument(..., help="4D-STEM data: .npy, .h5/.hdf5/.emd/.py4dstem, .dm3/.dm4/.mib/.raw "
                                         "or a folder of X_Y*.png."),
    dataset: str | None = typer.Option(None, "--dataset", help="HDF5 path of the 4-D dataset, if several."),
) -> None:
    """Format, shape, dtype, size, broken patterns and a virtual bright-field image of DATA."""
    from al4dstem.data import open_dataset
    from al4dstem.data.preview import ScanImage, describe, nonfinite_note

    ds = open_dataset(data, dataset=dataset)
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
    if len(survey.nonfinite):
        console.print(f"warning: {ds.source}: {nonfinite_note(survey)}", highlight=False, soft_wrap=True)
    out.print("virtual bright field (red / '!': non-finite patterns):", highlight=False)
    out.print(ScanImage(survey.marked_image()))


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
) -> None:
    """Simulate a boracite-like 4D-STEM scan with ground truth (see al4dstem.simulate)."""
    from al4dstem.simulate import simulate_to_file

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


# ============================================================ labelling: label, plot
# (label command and the sampling-pattern figure go here)

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


# ============================================================ model: train, predict, evaluate, demo
# (train, predict, evaluate and demo commands go here)


@app.command()
def train(
    data: str = typer.Argument(..., help="4D-STEM data the labels belong to."),
    labels: Path = typer.Option(..., "--labels", help="Label file (CSV or ghost-hunter YAML); skips are ignored."),
    out_path: Path = typer.Option(..., "--out", metavar="MODEL.pt", help="Model checkpoint to write."),
    seed: int = typer.Option(0, "--seed", help="Seed of the weights, the 80:20 split and the augmentation."),
    epochs: int | None = typer.Option(None, "--epochs", help="Most epochs (default: scaled to the label count)."),
    network: str = typer.Option("default", "--network", help="default (fast) or paper (the paper's CNN)."),
    dataset: str | None = typer.Option(None, "--dataset", help="HDF5 path of the 4-D dataset, if several."),
    threads: int | None = typer.Option(None, "--threads", help="Torch threads (default: torch's choice)."),
    verbose: bool = typer.Option(False, "--verbose", help="One line per epoch on stderr."),
) -> None:
    """Train a CNN on the labelled positions of DATA and save it as one checkpoint file."""
    from al4dstem.data import open_dataset
    from al4dstem.labels import as_arrays, read_labels
    from al4dstem.models.checkpoint import check_writable

    if epochs is not None and epochs < 1:
        raise Al4dstemError(f"--epochs must be at least 1, got {epochs}")
    ds = open_dataset(data, dataset=dataset)
    positions, classes = as_arrays(read_labels(labels, ds.scan_shape))
    check_writable(out_path)  # refuse before minutes of training, not after
    from al4dstem.models import CNNClassifier  # torch: imported once the cheap checks have passed
    from al4dstem.models.training import check_labels

    try:
        check_labels(classes)
    except Al4dstemError as e:
        raise Al4dstemError(f"{labels}: {e}") from None
    clf = CNNClassifier(network=network, dataset=ds, epochs=epochs, n_threads=threads, random_state=seed,
                        verbose=verbose)
    with _epochs_bar() as progress:
        clf.fit(positions, classes, progress=progress)
    clf.save(out_path)
    s = clf.summary_
    counts = ", ".join(f"{name} {n}" for name, n in clf.label_counts_.items())
    out.print(f"trained the {network} network on {s['n_labels']} labels ({counts}): best validation loss "
              f"{s['best_val_loss']:.4f}, accuracy {s['best_val_accuracy']:.3f} on {s['n_val']} patterns at epoch "
              f"{s['best_epoch']} of {s['epochs_run']} ({s['stopped']}); {s['seconds']:.1f} s; saved {out_path}",
              highlight=False, soft_wrap=True)


def _epochs_bar():
    """A rich epoch bar on a terminal, nothing in a pipe: yields a ``progress(epoch, max, record)`` callback."""
    from contextlib import contextmanager, nullcontext

    if not console.is_terminal:
        return nullcontext(None)

    @contextmanager
    def bar():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                      TimeElapsedColumn(), console=console, transient=True) as p:
            task = p.add_task("", total=None)

            def update(epoch, total, record):
                p.update(task, completed=epoch, total=total,
                         description=f"val loss {record['val_loss']:.3f} acc {record['val_accuracy']:.2f}")

            yield update

    return bar()


# ---- predict, evaluate, demo (al4dstem.engines.local, al4dstem.maps, al4dstem.demo)


def _patterns_bar(label: str, total: int):
    """A rich progress bar on a terminal, nothing in a pipe: yields a ``progress(done, total)`` callback."""
    from contextlib import contextmanager, nullcontext

    if not console.is_terminal:
        return nullcontext(None)

    @contextmanager
    def bar():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console, transient=True) as p:
            task = p.add_task(label, total=total)
            yield lambda done, _total: p.update(task, completed=done)

    return bar()


@app.command()
def predict(
    data: str = typer.Argument(..., help="4D-STEM data: .npy, .h5, .emd, .dm4, .mib, ... or a PNG folder."),
    model: Path = typer.Option(..., "--model", help="Model checkpoint written by `al4dstem train`."),
    out_prefix: Path = typer.Option(..., "--out", metavar="PREFIX",
                                    help="Writes PREFIX.npy, PREFIX_valid.npy, PREFIX.png, PREFIX_figure.png."),
    dataset: str | None = typer.Option(None, "--dataset", help="HDF5 path of the 4-D dataset, if several."),
    labels: Path | None = typer.Option(None, "--labels", help="Label file whose positions the figure marks."),
    batch_size: int = typer.Option(256, "--batch-size", help="Patterns per batch (memory, not the result)."),
    threads: int | None = typer.Option(None, "--threads", help="Network threads (default: chosen for the cores)."),
    figure: bool = typer.Option(True, "--figure/--no-figure", help="Also write PREFIX_figure.png (matplotlib)."),
) -> None:
    """Map a whole scan: PREFIX.npy (float32 rows x cols x 3: none, vertical, horizontal) and PREFIX.png.

    Patterns holding NaN/inf are not classified: uniform 1/3 in PREFIX.npy, False in PREFIX_valid.npy,
    black in the maps, and a warning says how many.
    """
    import time

    from al4dstem.data import open_dataset
    from al4dstem.engines.local import predict_dataset
    from al4dstem.labels import as_arrays, read_labels
    from al4dstem.maps import check_writable, write_prediction

    start = time.perf_counter()
    check_writable(out_prefix)
    ds = open_dataset(data, dataset)
    from al4dstem.models import CNNClassifier  # torch: imported once the cheap checks have passed

    clf = CNNClassifier.load(model, dataset=ds)
    marks = as_arrays(read_labels(labels, ds.scan_shape)) if labels is not None else None
    t0 = time.perf_counter()
    with _patterns_bar("predicting", ds.n_positions) as progress:
        probs, valid = predict_dataset(clf, ds, batch_size=batch_size, progress=progress, n_threads=threads)
    seconds = time.perf_counter() - t0
    paths = write_prediction(out_prefix, probs, valid, labels=marks, figure=figure)
    n_bad = int((~valid).sum())
    if n_bad:
        console.print(f"warning: {n_bad} of {valid.size} patterns hold NaN/inf and were not classified "
                      f"(uniform 1/3 in {paths['probs']}, False in {paths['valid']})", highlight=False,
                      soft_wrap=True)
    out.print(f"mapped {ds.n_positions} patterns in {seconds:.2f} s ({ds.n_positions / max(seconds, 1e-9):.0f} "
              f"patterns/s); {time.perf_counter() - start:.2f} s with loading and writing", highlight=False,
              soft_wrap=True)
    for name, path in paths.items():
        out.print(f"  {name:7s} {path}", highlight=False, soft_wrap=True)


@app.command()
def evaluate(
    prediction: Path = typer.Argument(..., metavar="PREFIX.npy", help="Probabilities written by `al4dstem predict`."),
    truth: Path = typer.Option(..., "--truth", help="Truth label file (CSV x,y,label or ghost-hunter YAML)."),
    exclude: Path | None = typer.Option(None, "--exclude",
                                        help="Leave these labelled positions out (the training labels)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Accuracy, per-class precision / recall / F1 and the confusion matrix of a prediction."""
    import json
    import math

    from al4dstem.labels import CLASSES
    from al4dstem.maps import evaluate as evaluate_map
    from al4dstem.maps import load_prediction, truth_grid

    probs, valid = load_prediction(prediction)
    grid = truth_grid(truth, probs.shape[:2])
    m = evaluate_map(probs, grid, exclude=exclude, valid=valid)
    if as_json:
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in m.items()}
        out.print_json(json.dumps(clean))
        return
    from rich.table import Table

    out.print(f"{prediction}: accuracy [bold]{m['accuracy']:.4f}[/bold] on {m['n_evaluated']} positions "
              f"({m['n_excluded']} excluded, {m['n_unclassified']} not classifiable)", highlight=False, soft_wrap=True)
    scores = Table("class", "precision", "recall", "F1", "support")
    confusion = Table("truth \\ predicted", *CLASSES)
    for i, name in enumerate(CLASSES):
        s = m["per_class"][name]
        scores.add_row(name, f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}", str(s["support"]))
        confusion.add_row(name, *map(str, m["confusion_matrix"][i]))
    for table in (scores, confusion):
        for column in table.columns[1:]:
            column.justify = "right"
        out.print(table)


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("al4dstem-demo"), "--out", help="Folder for the data, labels, model and map."),
    seed: int = typer.Option(0, "--seed", help="Random seed (simulation, sampler, training)."),
    budget: int = typer.Option(50, "--budget", help="Labels to give the model."),
    geometry: str = typer.Option("bands", "--geometry", help="Domain layout: bands, tilted, bullseye, ..."),
) -> None:
    """Simulate a paper-sized scan (206 x 34, 256 x 256 detector), label, train, map and evaluate it."""
    from al4dstem.demo import run_demo

    r = run_demo(out_dir, seed=seed, budget=budget, geometry=geometry,
                 log=lambda line: console.print(line, highlight=False, soft_wrap=True))
    out.print(f"accuracy {r.accuracy:.4f} on {r.metrics['n_evaluated']} positions not labelled "
              f"({r.n_labels} labels); map: {r.outputs['png']}; figure: {r.outputs['figure']}; "
              f"{sum(r.seconds.values()):.0f} s in all", highlight=False, soft_wrap=True)


if __name__ == "__main__":
    main()

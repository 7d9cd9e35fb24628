"""``al4dstem train``, ``predict``, ``evaluate`` and ``demo``: models and maps from the command line."""

from __future__ import annotations

from pathlib import Path

import typer

from al4dstem.cli.app import app, console, out
from al4dstem.cli.checks import check_at_least, check_seed
from al4dstem.cli.progress import epochs_bar, patterns_bar
from al4dstem.errors import Al4dstemError
from al4dstem.paths import Files, check_outputs


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

    check_at_least(epochs, 1, "--epochs")
    check_at_least(threads, 1, "--threads")
    check_seed(seed)
    # refuse before minutes of training, not after; and never write the model over what it learns from
    check_outputs(writes={"--out": out_path}, reads={"data file": data, "--labels": labels})
    ds = open_dataset(data, dataset=dataset)
    positions, classes = as_arrays(read_labels(labels, ds.scan_shape))
    from al4dstem.models import CNNClassifier  # torch: imported once the cheap checks have passed
    from al4dstem.models.training import check_labels

    try:
        check_labels(classes)
    except Al4dstemError as e:
        raise Al4dstemError(f"{labels}: {e}") from None
    clf = CNNClassifier(network=network, dataset=ds, epochs=epochs, n_threads=threads, random_state=seed,
                        verbose=verbose)
    with epochs_bar() as progress:
        clf.fit(positions, classes, progress=progress)
    clf.save(out_path)
    s = clf.summary_
    counts = ", ".join(f"{name} {n}" for name, n in clf.label_counts_.items())
    out.print(f"trained the {network} network on {s['n_labels']} labels ({counts}): best validation loss "
              f"{s['best_val_loss']:.4f}, accuracy {s['best_val_accuracy']:.3f} on {s['n_val']} patterns at epoch "
              f"{s['best_epoch']} of {s['epochs_run']} ({s['stopped']}); {s['seconds']:.1f} s; saved {out_path}",
              highlight=False, soft_wrap=True)


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
    from al4dstem.maps import output_paths, write_prediction

    start = time.perf_counter()
    check_at_least(batch_size, 1, "--batch-size")
    check_at_least(threads, 1, "--threads")
    # all four files, the figure too: --no-figure removes an old one
    try:
        files = output_paths(out_prefix).values()
    except Al4dstemError as e:
        raise Al4dstemError(f"--out {e}") from None
    check_outputs(writes={"--out": Files(out_prefix, files)},
                  reads={"data file": data, "--model": model, "--labels": labels})
    ds = open_dataset(data, dataset)
    from al4dstem.models.trained import TrainedNetwork  # torch: imported once the cheap checks have passed

    clf = TrainedNetwork.load(model)
    marks = as_arrays(read_labels(labels, ds.scan_shape)) if labels is not None else None
    t0 = time.perf_counter()
    try:
        with patterns_bar("predicting", ds.n_positions) as progress:
            probs, valid = predict_dataset(clf, ds, batch_size=batch_size, progress=progress, n_threads=threads)
    except MemoryError:  # the map is scan-sized: a huge scan (or a forged shape) does not fit
        rows, cols = ds.scan_shape
        raise Al4dstemError(f"{ds.source}: the map of a {cols} x {rows} scan ({13 * rows * cols / 1e9:.1f} GB) "
                            f"does not fit in memory") from None
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
    if m["n_evaluated"] == 0:  # an accuracy of NaN with exit 0 would pass for a result in a script
        raise Al4dstemError(_nothing_scored(m, int((grid >= 0).sum()), truth, exclude))
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


def _nothing_scored(m: dict, known: int, truth: Path, exclude: Path | None) -> str:
    if known == 0:
        return f"{truth}: no labelled positions, nothing to score"
    if m["n_excluded"] == known:
        return f"nothing to score: --exclude {exclude} leaves out all {known} positions of --truth {truth}"
    return (f"nothing to score: of the {known} positions of --truth {truth}, {m['n_excluded']} are excluded and "
            f"{m['n_unclassified']} were not classified (NaN/inf patterns)")


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

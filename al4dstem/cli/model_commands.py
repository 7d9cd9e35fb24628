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
    data: list[str] = typer.Argument(..., help="4D-STEM data the labels belong to; several scans when the label "
                                               "file names each row's scan (a scan column)."),
    labels: Path = typer.Option(..., "--labels", help="Label file (CSV or ghost-hunter YAML); skips are ignored."),
    out_path: Path = typer.Option(..., "--out", metavar="MODEL.pt", help="Model checkpoint to write."),
    seed: int = typer.Option(0, "--seed", help="Seed of the weights, the 80:20 split and the augmentation."),
    epochs: int | None = typer.Option(None, "--epochs", help="Most epochs (default: scaled to the label count)."),
    network: str = typer.Option("auto", "--network",
                                help="auto (the default: cross-validate the models below on the labels, keep the "
                                     "best, print every score), default (fast CNN), paper (the paper's CNN), ghost "
                                     "(ghost/Bragg intensities at the lattice's ghost positions), softmax or pca-knn."),
    neighbourhood: int | None = typer.Option(None, "--neighbourhood", metavar="N",
                                             help="Pool each pattern with its N x N scan neighbours (1, 3, 5): more "
                                                  "signal on faint scans, walls blurred by N // 2 positions "
                                                  "(default 1; auto also tries 3 and 5)."),
    orientation: str = typer.Option("detector", "--orientation",
                                    help="CNNs: detector (patterns as recorded) or canonical (each pattern rotated "
                                         "and centred by the scan's lattice so its axes lie along the detector's; "
                                         "predict does the same)."),
    semi_supervised: bool = typer.Option(False, "--semi-supervised",
                                         help="CNNs: also learn from the scan's unlabelled patterns (pseudo-labels "
                                              "that agree under the physics-aware augmentation); about twice as "
                                              "long."),
    class_weight: str = typer.Option("scan", "--class-weight",
                                     help="scan (default: each label counts once, then the classes count equally "
                                          "over their shares in the scan, as the model estimates them: right "
                                          "whatever sampler chose the labels), balanced (each class weighs the "
                                          "same in the loss, by the label counts: wrong for uncertainty sampling, "
                                          "whose labels are mostly walls) or none (each label counts once)."),
    init: Path | None = typer.Option(None, "--init", metavar="MODEL.pt",
                                     help="CNNs: start from this model file's weights (e.g. from `al4dstem "
                                          "pretrain`: a CNN pre-trained on simulated patterns) and fine-tune them on "
                                          "the labels."),
    device: str = typer.Option("auto", "--device", help="Where the CNNs train: auto (a GPU when torch sees one), "
                                                        "cpu or cuda."),
    dataset: str | None = typer.Option(None, "--dataset", help="Which dataset, in a file holding several "
                                                               "(HDF5 path, or number / title)."),
    threads: int | None = typer.Option(None, "--threads", help="Torch threads (default: torch's choice)."),
    verbose: bool = typer.Option(False, "--verbose", help="One line per epoch on stderr."),
    scan_shape: str | None = typer.Option(None, "--scan-shape", metavar="ROWSxCOLS",
                                          help="Scan shape for frames without one (raw files, stacks)."),
    allow_other_calibration: bool = typer.Option(False, "--allow-other-calibration",
                                                 help="Train on scans whose calibrations differ."),
) -> None:
    """Train a model on the labelled positions of DATA (by default the best of several, chosen by cross-validation)
    and save it as one checkpoint file (with its provenance)."""
    from al4dstem.data import open_dataset
    from al4dstem.data.scans import check_same_detector, gather_labels

    check_at_least(epochs, 1, "--epochs")
    check_at_least(threads, 1, "--threads")
    check_seed(seed)
    if class_weight not in ("balanced", "scan", "none"):
        raise Al4dstemError(f"--class-weight must be balanced, scan or none, got {class_weight!r}")
    # refuse before minutes of training, not after; and never write the model over what it learns from
    check_outputs(writes={"--out": out_path}, reads={"data file": data, "--labels": labels,
                                                     "--init": init})
    datasets = [open_dataset(d, dataset=dataset, scan_shape=scan_shape) for d in data]
    check_same_detector(datasets, allow_other_calibration)
    found = gather_labels(labels, data, datasets)
    inputs, classes = found.inputs, found.classes
    if found.left_out:
        console.print(f"note: {found.left_out} rows of {labels} name scans not given here; left out", highlight=False)
    ds = datasets[0]
    from al4dstem.models import CNNClassifier  # torch: imported once the cheap checks have passed
    from al4dstem.models.training import check_labels

    try:
        check_labels(classes)
    except Al4dstemError as e:
        raise Al4dstemError(f"{labels}: {e}") from None
    clf = CNNClassifier(network=network, dataset=ds, epochs=epochs, n_threads=threads, random_state=seed,
                        verbose=verbose, neighbourhood=neighbourhood, orientation=orientation,
                        semi_supervised=semi_supervised, init=init, device=device,
                        class_weight=None if class_weight == "none" else class_weight)
    import warnings

    from al4dstem.models.selection import selection_table
    from al4dstem.models.training import CollapseWarning

    with epochs_bar() as progress, warnings.catch_warnings():
        warnings.simplefilter("ignore", CollapseWarning)  # printed below as one line
        clf.fit(inputs, classes, progress=progress)
    if class_weight == "scan" and len(datasets) > 1:
        clf.balance_to_scans(datasets)  # fit estimated the shares of the first scan only
    clf.save(out_path)
    _record_training(out_path, datasets, labels, found)
    s = clf.summary_
    counts = ", ".join(f"{name} {n}" for name, n in clf.label_counts_.items())
    table = selection_table(s)
    if table:
        out.print(table, highlight=False, soft_wrap=True)
    kept = clf.network_name_ + (f" ({clf.neighbourhood_} x {clf.neighbourhood_} neighbourhood)"
                                if clf.neighbourhood_ > 1 else "")
    if "best_val_loss" in s:
        detail = (f"best validation loss {s['best_val_loss']:.4f}, accuracy {s['best_val_accuracy']:.3f} on "
                  f"{s['n_val']} patterns at epoch {s['best_epoch']} of {s['epochs_run']} ({s['stopped']})")
    else:
        detail = "fitted by scikit-learn"
    out.print(f"trained the {kept} network on {s['n_labels']} labels ({counts}): {detail}; {s['seconds']:.1f} s; "
              f"saved {out_path}", highlight=False, soft_wrap=True)
    if s.get("class_shares"):
        shares = ", ".join(f"{name} {share:.3f}" for name, share in s["class_shares"]["shares"].items())
        out.print(f"class shares in the scan, estimated on {s['class_shares']['positions']} positions: {shares}; the "
                  f"classes count equally over them (--class-weight scan)", highlight=False, soft_wrap=True)
    if s.get("initial_weights"):
        out.print(f"fine-tuned from the weights of {s['initial_weights']}", highlight=False, soft_wrap=True)
    semi = s.get("semi_supervised")
    if semi:
        pseudo = ", ".join(f"{name} {n}" for name, n in semi["pseudo_labels"].items())
        out.print(f"semi-supervised: {sum(semi['pseudo_labels'].values())} pseudo-labels ({pseudo}) from "
                  f"{semi['candidates']} unlabelled patterns", highlight=False, soft_wrap=True)
    for message in s.get("warnings", []):
        console.print(f"warning: {message}", highlight=False, soft_wrap=True)


@app.command()
def pretrain(
    data: str = typer.Argument(..., help="4D-STEM data whose lattice and detector the simulated patterns match."),
    out_path: Path = typer.Option(..., "--out", metavar="MODEL.pt",
                                  help="Model file to write (for `al4dstem train --init`)."),
    patterns: int = typer.Option(3072, "--patterns", help="Simulated patterns to pre-train on."),
    epochs: int = typer.Option(12, "--epochs", help="Passes over the simulated patterns."),
    network: str = typer.Option("default", "--network", help="The CNN to pre-train: default or paper."),
    orientation: str = typer.Option("detector", "--orientation", help="detector or canonical (as train will use)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the simulation and the training."),
    device: str = typer.Option("auto", "--device", help="Where it trains: auto (a GPU when torch sees one), cpu "
                                                        "or cuda."),
    dataset: str | None = typer.Option(None, "--dataset", help="Which dataset, in a file holding several "
                                                               "(HDF5 path, or number / title)."),
    threads: int | None = typer.Option(None, "--threads", help="Torch threads (default: chosen for the cores)."),
    scan_shape: str | None = typer.Option(None, "--scan-shape", metavar="ROWSxCOLS",
                                          help="Scan shape for frames without one (raw files, stacks)."),
) -> None:
    """Pre-train a CNN on simulated patterns matched to DATA's lattice and detector (no labels needed);
    `al4dstem train --init MODEL.pt` then fine-tunes it on the labels."""
    from al4dstem.data import open_dataset

    check_at_least(patterns, 1, "--patterns")
    check_at_least(epochs, 1, "--epochs")
    check_at_least(threads, 1, "--threads")
    check_seed(seed)
    check_outputs(writes={"--out": out_path}, reads={"data file": [data]})
    ds = open_dataset(data, dataset=dataset, scan_shape=scan_shape)
    from al4dstem.models.pretrain import pretrain as run_pretraining  # torch: after the cheap checks

    with epochs_bar() as progress:
        clf = run_pretraining(ds, network=network, n_patterns=patterns, epochs=epochs, random_state=seed,
                              n_threads=threads, orientation=orientation, progress=progress, device=device)
    clf.save(out_path)
    info = clf.summary_["pretraining"]
    lattice = info["matched_lattice"]
    matched = (f"lattice at {lattice['rotation']:.1f} degrees" if lattice else
               "no lattice found in the mean pattern: random rotations")
    out.print(f"pre-trained the {clf.network_name_} network on {info['simulated_patterns']} simulated "
              f"{info['simulated_detector'][0]} x {info['simulated_detector'][1]} patterns ({matched}) in "
              f"{info['seconds']:.1f} s; saved {out_path} (train --init {out_path})", highlight=False, soft_wrap=True)


@app.command()
def predict(
    data: list[str] = typer.Argument(..., help="4D-STEM data: .npy, .h5, .emd, .dm4, .mib, ... or a PNG folder; "
                                               "an in-situ series: several scans, a folder of scans, or one 5-D "
                                               "(frames, rows, cols, det_rows, det_cols) .npy / .h5."),
    model: Path = typer.Option(..., "--model", help="Model checkpoint written by `al4dstem train`."),
    out_prefix: Path = typer.Option(..., "--out", metavar="PREFIX",
                                    help="Writes PREFIX.npy + PREFIX_valid.npy (or PREFIX.hspy|zspy|emd), "
                                         "PREFIX.png, PREFIX_figure.png, PREFIX.json."),
    dataset: str | None = typer.Option(None, "--dataset", help="Which dataset, in a file holding several "
                                                               "(HDF5 path, or number / title)."),
    labels: Path | None = typer.Option(None, "--labels", help="Label file whose positions the figure marks."),
    batch_size: int = typer.Option(256, "--batch-size", help="Patterns per batch (memory, not the result)."),
    threads: int | None = typer.Option(None, "--threads", help="Network threads (default: chosen for the cores)."),
    figure: bool = typer.Option(True, "--figure/--no-figure", help="Also write PREFIX_figure.png (matplotlib)."),
    fmt: str = typer.Option("npy", "--format", help="Map file: npy (+ PREFIX_valid.npy), hspy, zspy (HyperSpy) or "
                                                     "emd (py4DSTEM / EMD 1.0), with axes and metadata."),
    scheme: str = typer.Option("paper", "--scheme", help="Map colours: paper (R none, G vertical, B horizontal) or "
                                                         "class (colour-blind safe)."),
    scan_shape: str | None = typer.Option(None, "--scan-shape", metavar="ROWSxCOLS",
                                          help="Scan shape for frames without one (raw files, stacks)."),
    allow_other_calibration: bool = typer.Option(False, "--allow-other-calibration",
                                                 help="Map a scan whose calibration differs from the model's data."),
    engine: str = typer.Option("local", "--engine", help="Inference engine: local (this machine) or libertem "
                                                         "(LiberTEM, inline or on a Dask cluster; extra 'scale')."),
    workers: int | None = typer.Option(None, "--workers", help="libertem: local Dask workers to start (default: "
                                                               "run inline, in this process)."),
    scheduler: str | None = typer.Option(None, "--scheduler", metavar="tcp://HOST:PORT",
                                         help="libertem: an existing Dask scheduler to run on."),
    device: str = typer.Option("auto", "--device", help="Where the network runs: auto (a GPU when torch sees "
                                                        "one), cpu or cuda."),
) -> None:
    """Map a whole scan: PREFIX.npy (float32 rows x cols x 3: none, vertical, horizontal) and PREFIX.png.

    Patterns holding NaN/inf are not classified: uniform 1/3 in PREFIX.npy, False in PREFIX_valid.npy
    (NaN in .hspy/.zspy/.emd maps), black in the maps, and a warning says how many. PREFIX.json records
    the provenance (data, model, labels, sampler, command line, versions).

    A series (several scans, a folder of scans, a 5-D file) writes PREFIX_series.npy (frames x rows x cols
    x 3) + PREFIX_series_valid.npy, the movie PREFIX.gif (and PREFIX.mp4 with imageio-ffmpeg), and the wall
    position and none-band width against frame: PREFIX_walls.png and PREFIX_walls.csv.
    """
    import time

    from al4dstem.colors import SCHEMES
    from al4dstem.data import open_dataset
    from al4dstem.engines import get_engine, run_engine
    from al4dstem.labels import as_arrays, read_labels
    from al4dstem.maps import output_paths, write_prediction

    start = time.perf_counter()
    check_at_least(batch_size, 1, "--batch-size")
    check_at_least(threads, 1, "--threads")
    check_at_least(workers, 1, "--workers")
    if scheme not in SCHEMES:
        raise Al4dstemError(f"--scheme {scheme!r}: one of {', '.join(SCHEMES)}")
    from al4dstem.series import open_series

    series = open_series(data, dataset, scan_shape=scan_shape)
    if series is not None:
        _predict_series(series, data, model, out_prefix, engine=engine, batch_size=batch_size, threads=threads,
                        workers=workers, scheduler=scheduler, device=device, scheme=scheme,
                        allow_other_calibration=allow_other_calibration, start=start)
        return
    data = data[0]  # one scan (open_series takes several files as a series)
    # all the files, the figure too: --no-figure removes an old one
    try:
        files = [_checkable(p) for p in output_paths(out_prefix, fmt, provenance=True).values()]
    except Al4dstemError as e:
        raise Al4dstemError(f"--out {e}") from None
    check_outputs(writes={"--out": Files(out_prefix, files)},
                  reads={"data file": data, "--model": model, "--labels": labels})
    ds = open_dataset(data, dataset, scan_shape=scan_shape)
    from al4dstem.models.trained import TrainedNetwork  # torch: imported once the cheap checks have passed

    get_engine(engine)  # an unknown or uninstalled engine is refused before the model loads
    clf = TrainedNetwork.load(model).to(device)
    clf.check_compatible(ds)  # the detector shape first: it is never allowed to differ
    if not allow_other_calibration:
        _check_model_calibration(clf, ds, model)
    marks = as_arrays(read_labels(labels, ds.scan_shape)) if labels is not None else None
    t0 = time.perf_counter()
    try:
        with patterns_bar("predicting", ds.n_positions) as progress:
            from al4dstem.models.neighbourhood import model_dataset  # pooled over scan neighbours if trained so

            probs, valid = run_engine(engine, clf, model_dataset(clf, ds), batch_size=batch_size,
                                      progress=progress, n_threads=threads, workers=workers, scheduler=scheduler)
    except MemoryError:  # the map is scan-sized: a huge scan (or a forged shape) does not fit
        rows, cols = ds.scan_shape
        raise Al4dstemError(f"{ds.source}: the map of a {cols} x {rows} scan ({13 * rows * cols / 1e9:.1f} GB) "
                            f"does not fit in memory") from None
    seconds = time.perf_counter() - t0
    record = _prediction_record(ds, model, clf, labels, marks)
    paths = write_prediction(out_prefix, probs, valid, labels=marks, figure=figure, format=fmt,
                             calibration=ds.calibration, provenance=record, scheme=scheme)
    n_bad = int((~valid).sum())
    if n_bad:
        where = f"uniform 1/3 in {paths['probs']}, False in {paths['valid']}" if "valid" in paths \
            else f"NaN in {paths['probs']}"
        console.print(f"warning: {n_bad} of {valid.size} patterns hold NaN/inf and were not classified ({where})",
                      highlight=False, soft_wrap=True)
    out.print(f"mapped {ds.n_positions} patterns in {seconds:.2f} s ({ds.n_positions / max(seconds, 1e-9):.0f} "
              f"patterns/s); {time.perf_counter() - start:.2f} s with loading and writing", highlight=False,
              soft_wrap=True)
    for name, path in paths.items():
        out.print(f"  {name:7s} {path}", highlight=False, soft_wrap=True)


def _predict_series(series, data: list[str], model: Path, out_prefix: Path, *, engine: str, batch_size: int,
                    threads: int | None, workers: int | None, scheduler: str | None, device: str, scheme: str,
                    allow_other_calibration: bool, start: float) -> None:
    """``predict`` of an in-situ series: every frame with one model, then the stack, movie and wall plot."""
    import time

    from al4dstem.engines import get_engine
    from al4dstem.provenance import dataset_record
    from al4dstem.series import map_series, series_paths, write_series

    check_outputs(writes={"--out": Files(out_prefix, list(series_paths(out_prefix).values()))},
                  reads={"data file": data, "--model": model})
    get_engine(engine)
    from al4dstem.models.trained import TrainedNetwork

    clf = TrainedNetwork.load(model).to(device)
    clf.check_compatible(series.frames[0])
    if not allow_other_calibration:
        _check_model_calibration(clf, series.frames[0], model)
    n = series.frames[0].n_positions * len(series)
    t0 = time.perf_counter()
    with patterns_bar(f"predicting {len(series)} frames", n) as progress:
        probs, valid = map_series(clf, series, engine, progress=progress, batch_size=batch_size, n_threads=threads,
                                  workers=workers, scheduler=scheduler)
    seconds = time.perf_counter() - t0
    record = _prediction_record(series.frames[0], model, clf, None, None)
    record["data"] = [dataset_record(ds) for ds in series.frames]
    paths = write_series(out_prefix, probs, valid, scheme=scheme, provenance=record)
    n_bad = int((~valid).sum())
    if n_bad:
        console.print(f"warning: {n_bad} of {valid.size} patterns hold NaN/inf and were not classified",
                      highlight=False, soft_wrap=True)
    out.print(f"mapped {len(series)} frames, {n} patterns in {seconds:.2f} s ({n / max(seconds, 1e-9):.0f} "
              f"patterns/s); {time.perf_counter() - start:.2f} s with loading and writing", highlight=False,
              soft_wrap=True)
    for name, path in paths.items():
        out.print(f"  {name:10s} {path}", highlight=False, soft_wrap=True)


def _record_training(out_path: Path, datasets, labels: Path, found) -> None:
    """Store where the model came from in its checkpoint (``al4dstem info MODEL.pt`` shows it)."""
    from al4dstem.models.checkpoint import add_fields
    from al4dstem.provenance import dataset_record, labels_record, run_record

    labels_info = labels_record(labels, found.used, found.rows)
    record = {**run_record(), "data": [dataset_record(ds) for ds in datasets], "labels": labels_info,
              "sampler": labels_info.get("sampler") or "not recorded in the label file (no sampler column)"}
    if found.left_out:
        record["labels"]["rows_of_other_scans"] = found.left_out
    add_fields(out_path, provenance=record)


def _check_model_calibration(clf, ds, model: Path) -> None:
    """Refuse a scan whose calibration differs from the data the model was trained on."""
    from al4dstem.data.calibration import Calibration
    from al4dstem.data.scans import check_calibration

    trained = (clf.payload.get("provenance") or {}).get("data") or []
    if trained and isinstance(trained[0], dict):
        reference = Calibration.from_dict(trained[0].get("calibration"))
        check_calibration(reference, ds, f"{trained[0].get('path')} (the data {model} was trained on)")


def _prediction_record(ds, model: Path, clf, labels: Path | None, marks) -> dict:
    from al4dstem.provenance import dataset_record, file_record, labels_record, run_record

    trained = clf.payload.get("provenance") or {}
    record = {**run_record(), "data": dataset_record(ds),
              "model": {**file_record(model), "network": clf.name, "provenance": trained},
              "sampler": trained.get("sampler", "not recorded (model without provenance)")}
    if labels is not None:
        record["labels"] = labels_record(labels)
    return record


def _checkable(path: Path) -> Path:
    """The path check_outputs compares: a .zspy map is a folder, replaced whole; its marker file stands for it."""
    if path.suffix == ".zspy" and path.is_dir():
        return path / ".zgroup"
    return path


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

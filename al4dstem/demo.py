"""The demo pipeline: simulate -> label (grid-midpoint sampler, truth oracle) -> train -> predict -> evaluate.

Everything is written under one folder: ``data.npy`` and ``truth.csv`` (the simulated scan),
``labels.csv`` (started afresh each run), ``model.pt``, and the prediction ``map.npy``,
``map_valid.npy``, ``map.png``, ``map_figure.png``. Accuracy is measured on the positions
that were not labelled.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from al4dstem.errors import Al4dstemError

PREFIX = "map"


@dataclass
class DemoResult:
    """What the demo wrote and measured."""

    out_dir: Path
    data: Path
    truth: Path
    labels: Path
    model: Path
    outputs: dict[str, Path]  # probs, valid, png, figure (see al4dstem.maps.write_prediction)
    metrics: dict  # al4dstem.maps.evaluate on the positions that were not labelled
    n_labels: int
    patterns_per_second: float
    seconds: dict[str, float] = field(default_factory=dict)  # per step

    @property
    def accuracy(self) -> float:
        return self.metrics["accuracy"]


def run_demo(out_dir="al4dstem-demo", seed: int = 0, budget: int = 50, geometry: str = "bands",
             nx: int = 206, ny: int = 34, detector: int = 256, network: str = "default",
             epochs: int | None = None, n_threads: int | None = None, preprocessing=None,
             sampler: str = "grid-midpoint", log: Callable[[str], None] | None = None) -> DemoResult:
    """Run the whole pipeline on a simulated scan (paper-sized by default); returns a ``DemoResult``.

    ``epochs``, ``n_threads`` (torch threads for training) and ``preprocessing`` go to
    ``CNNClassifier`` (None: its defaults); ``sampler`` names the sampler that picks the labels;
    ``log`` receives one line per finished step.
    """
    from al4dstem.data import open_dataset
    from al4dstem.engines.local import predict_dataset
    from al4dstem.labels import LabelStore, as_arrays
    from al4dstem.loop import run_labelling
    from al4dstem.maps import evaluate, write_prediction
    from al4dstem.models import CNNClassifier
    from al4dstem.models.training import MIN_LABELS
    from al4dstem.oracles import TruthOracle
    from al4dstem.simulate import GEOMETRIES, simulate_to_file
    from al4dstem.strategies import get_sampler

    if geometry not in GEOMETRIES:  # before any folder is made
        raise Al4dstemError(f"unknown geometry {geometry!r} (one of {', '.join(GEOMETRIES)})")
    if budget < MIN_LABELS:
        raise Al4dstemError(f"--budget {budget} is too small to train a model: at least {MIN_LABELS} labels are needed")
    say = log or (lambda line: None)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise Al4dstemError(f"{out}: cannot create folder ({e.strerror or e})") from None
    data, truth, labels, model_path = out / "data.npy", out / "truth.csv", out / "labels.csv", out / "model.pt"
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(step: str) -> float:
        nonlocal clock
        now = time.perf_counter()
        seconds[step] = now - clock
        clock = now
        return seconds[step]

    sim = simulate_to_file(data, truth, nx=nx, ny=ny, detector=detector, geometry=geometry, seed=seed)
    say(f"simulated a {geometry} scan {nx} x {ny} (cols x rows), detector {detector} x {detector}: "
        f"{data} ({lap('simulate'):.1f} s)")

    dataset = open_dataset(data)
    labels.unlink(missing_ok=True)  # the demo starts from no labels
    with LabelStore(labels, dataset.scan_shape) as store:
        run_labelling(dataset, store, get_sampler(sampler, random_state=seed), TruthOracle(truth), budget)
        positions, classes = as_arrays(store.rows)
    say(f"labelled {len(positions)} positions with the {sampler} sampler: {labels} ({lap('label'):.1f} s)")

    clf = CNNClassifier(network=network, dataset=dataset, epochs=epochs, n_threads=n_threads,
                        preprocessing=preprocessing, random_state=seed, class_weight="scan")  # as `train` does
    clf.fit(positions, classes)
    clf.save(model_path)
    say(f"trained the {network} network: {model_path} ({lap('train'):.1f} s)")

    probs, valid = predict_dataset(clf, dataset)
    rate = dataset.n_positions / max(lap("predict"), 1e-9)
    outputs = write_prediction(out / PREFIX, probs, valid, labels=(positions, classes))
    say(f"mapped {dataset.n_positions} patterns ({rate:.0f} patterns/s): {outputs['png']} ({lap('write'):.1f} s)")

    metrics = evaluate(probs, sim.truth, exclude=positions, valid=valid)
    lap("evaluate")
    return DemoResult(out, data, truth, labels, model_path, outputs, metrics, len(positions), rate, seconds)

"""The evidence behind the sampler and model claims: active learning with the CNN in the loop,
paired over seeds, scored on a held-out test set, beside simple baselines on the same labels.

Used by ``benchmarks/bench_table1.py`` (the paper's Table 1), ``benchmarks/bench_curves.py``
(learning curves) and their ``--smoke`` test. One *job* is one scenario (a simulated scan) and
one seed; for every sampler it labels up to each budget, trains the CNN on those labels, and
scores it and the baselines on the same 1,000 test positions. Everything in a job derives from
its seed (scan noise, test set, sampler, network initialisation), and every sampler of a job
sees the same scan and test set: the comparisons are paired.

Scenarios:

- ``paper``: the paper-sized 206 x 34 scan whose domain layout follows the real hand-labelled
  map of the paper's boracite sample (``PAPER_WALLS``, fitted once from the published labels:
  vertical above the upper wall, a wavy no-polarization band, horizontal below). The simulator
  has no option for a given map, so the scan is made from a ``bands`` scan twice as tall: each
  column's rows are mapped piecewise linearly so that its walls land on the real wall rows.
- a geometry of ``al4dstem.simulate`` (``tilted``, ``bullseye``, ``needles``, ``stripes``,
  ``bands``), optionally on a rung of ``DIFFICULTY_LADDER`` (``bullseye@faint-rotated``).

Imports are light: torch, scikit-learn and matplotlib load inside the functions that use them.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from al4dstem.errors import Al4dstemError
from al4dstem.labels import CLASSES

NONE = 0
PAPER_SCAN = (34, 206)  # rows (Y), cols (X)
#: Wall rows of the paper's boracite map (frame 1), at columns 0, 10, ..., 200, 205: the
#: upper wall (vertical above, none below) and the lower wall (none above, horizontal below).
#: Fitted from the union of the published training and test labels (1,656 positions): per
#: column, two cuts on Y maximising agreement within +-8 columns, smoothed over 9 columns.
#: This two-cut map agrees with 96.9 % of the test labels (human labels are noisy at walls).
PAPER_WALL_COLUMNS = (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150, 160, 170, 180, 190,
                      200, 205)
PAPER_WALLS = (
    (15.0, 15.0, 15.1, 15.0, 15.0, 15.0, 14.4, 14.2, 15.0, 14.5, 14.3, 14.7, 14.1, 14.0, 14.0, 13.7, 13.6, 14.1,
     14.0, 14.0, 14.0, 14.0),
    (20.3, 19.5, 19.3, 19.6, 19.6, 19.1, 19.0, 19.1, 19.0, 18.8, 18.2, 19.0, 19.0, 19.0, 19.1, 18.3, 18.4, 18.2,
     18.0, 18.0, 18.1, 18.1),
)
#: The paper's Table 1 (CNN, % of its 1,000 test labels), for the report.
PAPER_TABLE_1 = {"grid-midpoint": {50: 96.9, 100: 96.3, 250: 96.2}, "random": {50: 95.0, 100: 95.7, 250: 94.2}}
BASELINES = ("coordinate-1nn", "two-cut", "softmax", "pca-knn", "vdf-centroid", "kmeans")
CURVE_BUDGETS = (5, 10, 15, 20, 30, 50, 100, 250)
TABLE_BUDGETS = (50, 100, 250)
SAMPLERS = ("grid-midpoint", "random", "uncertainty", "hybrid")
NESTED = ("random", "uncertainty")  # one run serves every budget (its choices do not plan with the budget)
REFITS = (10, 25, 50, 100, 175, 250, 400)  # labels at which the in-loop CNN is retrained (a fit is ~30 s on 2 cores)
TEST_SIZE = 1000
KMEANS_CLUSTERS = 6  # more clusters than classes, so that walls and odd patterns get their own
PCA_COMPONENTS = 10


# ---------------------------------------------------------------- scans


@dataclass
class Scan:
    """A simulated scan: uint16 ``data (rows, cols, K, K)`` and ``truth (rows, cols)``."""

    name: str
    data: np.ndarray
    truth: np.ndarray
    seconds: float = 0.0

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.truth.shape)


def paper_walls(cols: int = PAPER_SCAN[1]) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower wall rows ``(cols,)`` of the paper's map (interpolated between the knots)."""
    x = np.arange(cols) * (PAPER_SCAN[1] - 1) / max(cols - 1, 1)
    return (np.interp(x, PAPER_WALL_COLUMNS, PAPER_WALLS[0]), np.interp(x, PAPER_WALL_COLUMNS, PAPER_WALLS[1]))


def paper_scan(seed: int = 0, detector: int = 64, threads: int | None = 1, **physics) -> Scan:
    """The paper-sized scan with the real map's walls (see the module doc), from a ``bands`` scan
    of twice the rows: row ``y`` of column ``x`` takes the source row whose position relative to
    the source walls matches ``y``'s relative to the real walls. Patterns keep their mixing at
    walls (sharpened where the band is compressed) and the smooth fields of the source."""
    from al4dstem.simulate import HORIZONTAL, VERTICAL, simulate_scan

    start = time.perf_counter()
    rows, cols = PAPER_SCAN
    src = simulate_scan(nx=cols, ny=2 * rows, detector=detector, geometry="bands", seed=seed, threads=threads,
                        **physics)
    top, bottom = paper_walls(cols)
    data = np.empty((rows, cols, detector, detector), dtype=src.data.dtype)
    truth = np.empty((rows, cols), dtype=np.int64)
    src_rows = 2 * rows
    for x in range(cols):
        column = src.truth[:, x]
        upper = _edge(column, VERTICAL, first=False) + 0.5  # source wall rows (between pixels)
        lower = _edge(column, HORIZONTAL, first=True) - 0.5
        y = np.arange(rows) + 0.0
        source = np.interp(y, [-0.5, top[x] - 0.5, bottom[x] - 0.5, rows - 0.5],
                           [-0.5, upper, lower, src_rows - 0.5])
        pick = np.clip(np.round(source).astype(int), 0, src_rows - 1)
        data[:, x] = src.data[pick, x]
        truth[:, x] = column[pick]
    return Scan("paper", data, truth, time.perf_counter() - start)


def _edge(column: np.ndarray, cls: int, first: bool) -> float:
    where = np.flatnonzero(column == cls)
    if not len(where):
        raise Al4dstemError(f"the source bands scan lacks class {cls} in a column")
    return float(where[0] if first else where[-1])


def geometry_scan(geometry: str, seed: int = 0, nx: int = 72, ny: int = 56, detector: int = 64,
                  rung: str | None = None, threads: int | None = 1) -> Scan:
    """A scan of one of the simulator's geometries, on a rung of the difficulty ladder (None: defaults)."""
    from al4dstem.simulate import ladder_rung, simulate_scan

    start = time.perf_counter()
    physics = ladder_rung(rung).physics if rung else {}
    sim = simulate_scan(nx=nx, ny=ny, detector=detector, geometry=geometry, seed=seed, threads=threads, **physics)
    name = geometry if not rung else f"{geometry}@{rung}"
    return Scan(name, sim.data, sim.truth.astype(np.int64), time.perf_counter() - start)


def make_scan(scenario: str, seed: int, detector: int = 64, smoke: bool = False) -> Scan:
    """``paper``, ``GEOMETRY`` or ``GEOMETRY@RUNG``; ``smoke``: a tiny scan of the same kind."""
    if smoke:
        geometry, _, rung = scenario.partition("@")
        return geometry_scan("bands" if geometry == "paper" else geometry, seed, nx=40, ny=24, detector=32,
                             rung=rung or None)
    if scenario == "paper":
        return paper_scan(seed, detector)
    geometry, _, rung = scenario.partition("@")
    return geometry_scan(geometry, seed, detector=detector, rung=rung or None)


def split_test(shape, seed: int, n: int = TEST_SIZE) -> np.ndarray:
    """Bool ``(rows, cols)``: ``n`` test positions drawn at random, never candidates for labelling."""
    rows, cols = shape
    n = min(int(n), rows * cols // 3)
    mask = np.zeros(rows * cols, dtype=bool)
    mask[np.random.default_rng([int(seed), 1000]).choice(rows * cols, n, replace=False)] = True
    return mask.reshape(rows, cols)


# ---------------------------------------------------------------- metrics


def scores(pred_map: np.ndarray, truth: np.ndarray, test: np.ndarray) -> dict:
    """Accuracy, balanced accuracy, ``none`` recall and F1 on the test positions, and the wall
    position error (scan pixels) of the whole predicted map."""
    p, t = pred_map[test], truth[test]
    recalls = [float((p[t == c] == c).mean()) for c in range(3) if (t == c).any()]
    tp = float(((p == NONE) & (t == NONE)).sum())
    precision = tp / max(float((p == NONE).sum()), 1.0)
    recall = tp / max(float((t == NONE).sum()), 1.0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"accuracy": float((p == t).mean()), "balanced_accuracy": float(np.mean(recalls)),
            "none_recall": recall, "none_f1": f1, "wall_error": wall_error(pred_map, truth)}


def wall_points(label_map: np.ndarray) -> np.ndarray:
    """``(n, 2)`` float (x, y): the midpoint of every pair of 4-neighbours of different classes,
    i.e. where the walls of the map run, between pixels."""
    down = np.argwhere(label_map[:-1] != label_map[1:])  # (y, x) with (y + 1, x) different
    right = np.argwhere(label_map[:, :-1] != label_map[:, 1:])
    return np.concatenate([np.column_stack([down[:, 1], down[:, 0] + 0.5]),
                           np.column_stack([right[:, 1] + 0.5, right[:, 0]])]).astype(float)


def wall_error(pred_map: np.ndarray, truth: np.ndarray) -> float:
    """Mean symmetric distance (scan pixels) between the predicted and the true walls: from each
    point of a true wall to the nearest predicted wall and back, averaged (a wall one row off
    scores 1). A map with no wall where the truth has one scores the scan's diagonal."""
    from scipy.spatial import cKDTree

    true_w, pred_w = wall_points(truth), wall_points(pred_map)
    if not len(true_w) and not len(pred_w):
        return 0.0
    if not len(true_w) or not len(pred_w):
        return float(np.hypot(*truth.shape))
    to_pred = cKDTree(pred_w).query(true_w)[0]
    to_true = cKDTree(true_w).query(pred_w)[0]
    return float((to_pred.sum() + to_true.sum()) / (len(to_pred) + len(to_true)))


def mean_ci(values) -> tuple[float, float]:
    """Mean and the half-width of its 95 % confidence interval (Student t); NaNs dropped."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan")
    if len(v) == 1:
        return float(v[0]), float("nan")
    from scipy.stats import t

    return float(v.mean()), float(t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))


def wilcoxon_p(a, b) -> float:
    """Two-sided paired Wilcoxon signed-rank p-value of ``a`` vs ``b`` (1.0 when all pairs tie)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    keep = np.isfinite(a) & np.isfinite(b)
    d = a[keep] - b[keep]
    if len(d) < 2 or np.all(d == 0):
        return 1.0
    from scipy.stats import wilcoxon

    return float(wilcoxon(a[keep], b[keep], zero_method="zsplit").pvalue)


def aulc(budgets, values) -> float:
    """Area under the learning curve over ``log(budget)``, normalised to the range: a mean
    accuracy in which every doubling of the labels weighs the same."""
    x, y = np.log(np.asarray(budgets, float)), np.asarray(values, float)
    x, y = x[np.isfinite(y)], y[np.isfinite(y)]  # budgets a sampler could not train at are left out
    if len(x) < 2:
        return float(y.mean()) if len(y) else float("nan")
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))


def labels_to_reach(budgets, values, target: float) -> float | None:
    """The smallest label count at which a (mean) curve reaches ``target`` (linear between budgets), or None."""
    kept = [(b, v) for b, v in zip(budgets, values, strict=True) if np.isfinite(v)]  # budgets never scored
    budgets, values = [b for b, _ in kept], [v for _, v in kept]
    for i, (b, v) in enumerate(zip(budgets, values, strict=True)):
        if v >= target:
            if i == 0:
                return float(b)
            b0, v0 = budgets[i - 1], values[i - 1]
            return float(b0 + (b - b0) * (target - v0) / (v - v0)) if v != v0 else float(b)
    return None


# ---------------------------------------------------------------- baselines


@dataclass
class Features:
    """What the baselines read, computed once per scan: binned log patterns, their PCA, the
    virtual dark-field ghost strengths, and the k-means clusters."""

    binned: np.ndarray  # (rows*cols, 32*32)
    pca: np.ndarray  # (rows*cols, PCA_COMPONENTS)
    vdf: np.ndarray | None  # (rows*cols, 3), or None when no lattice was found
    clusters: np.ndarray  # (rows*cols,)
    faintness: np.ndarray | None = None  # (rows, cols) in [0, 1], 1 faintest


def scan_features(scan: Scan, seed: int) -> Features:
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    from al4dstem.data import Preprocessing, open_dataset

    rows, cols = scan.shape
    flat = scan.data.reshape(rows * cols, *scan.data.shape[2:])
    prep = Preprocessing(size=min(32, flat.shape[-1]), scaling="log", normalise="max")
    binned = np.concatenate([np.asarray(prep(flat[i:i + 512]), np.float32).reshape(len(flat[i:i + 512]), -1)
                             for i in range(0, len(flat), 512)])
    centred = (binned - binned.mean(0)) / (binned.std(0) + 1e-6)
    pca = PCA(PCA_COMPONENTS, random_state=seed).fit_transform(centred)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clusters = KMeans(KMEANS_CLUSTERS, n_init=4, random_state=seed).fit_predict(pca)
    vdf, faint = None, None
    try:
        from al4dstem import lattice as lat
        from al4dstem.display import hot_pixel_mask

        ds = open_dataset(scan.data)
        mean = lat.mean_pattern(ds, max_patterns=256)
        maps = lat.ghost_maps(ds, lat.find_lattice(mean), exclude=hot_pixel_mask(mean))
        vdf = maps.reshape(3, -1).T.astype(np.float64)
        strength = np.nan_to_num(maps[1:].max(axis=0))
        top = np.percentile(strength, 95)
        faint = 1 - np.clip(strength / top, 0, 1) if top > 0 else None
    except (Al4dstemError, ValueError):
        pass  # no lattice on this detector: the VDF baseline is reported as missing
    return Features(binned, pca, vdf, clusters, faint)


def baseline_maps(features: Features, shape, positions: np.ndarray, classes: np.ndarray, seed: int) -> dict:
    """Predicted maps ``(rows, cols)`` of every baseline fitted on the same labels (None: not possible)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier, NearestCentroid

    rows, cols = shape
    idx = positions[:, 1] * cols + positions[:, 0]
    ys, xs = np.mgrid[0:rows, 0:cols]
    every = np.column_stack([xs.ravel(), ys.ravel()])
    out: dict = {}
    two_classes = len(np.unique(classes)) >= 2
    out["coordinate-1nn"] = KNeighborsClassifier(1).fit(positions, classes).predict(every).reshape(shape)
    out["two-cut"] = two_cut_rule(positions[:, 1], classes, rows)[ys]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if two_classes:
            x = features.binned
            mu, sd = x[idx].mean(0), x[idx].std(0) + 1e-6
            soft = LogisticRegression(C=1.0, max_iter=500, random_state=seed).fit((x[idx] - mu) / sd, classes)
            out["softmax"] = soft.predict((x - mu) / sd).reshape(shape)
        else:
            out["softmax"] = np.full(shape, classes[0])
    k = min(5, len(classes))
    out["pca-knn"] = KNeighborsClassifier(k, weights="distance").fit(features.pca[idx], classes) \
        .predict(features.pca).reshape(shape)
    if features.vdf is not None and two_classes:
        v = features.vdf
        mu, sd = v[idx].mean(0), v[idx].std(0) + 1e-9
        out["vdf-centroid"] = NearestCentroid().fit((v[idx] - mu) / sd, classes).predict((v - mu) / sd).reshape(shape)
    else:
        out["vdf-centroid"] = None
    out["kmeans"] = name_clusters(features.clusters, idx, classes, features.pca).reshape(shape)
    return out


def two_cut_rule(y: np.ndarray, classes: np.ndarray, rows: int) -> np.ndarray:
    """The class of every scan row from two cuts on the row: ``top`` above ``a``, ``middle`` from
    ``a`` to ``b``, ``bottom`` below, all three classes and both cuts chosen to fit the labels best
    (ties: the middle of the best cuts). The paper's sample is nearly one-dimensional in rows."""
    best, choice = -1, []
    order = np.argsort(y)
    for top in range(3):
        for middle in range(3):
            for bottom in range(3):
                for a in range(rows + 1):
                    above = y < a
                    for b in range(a, rows + 1):
                        pred = np.where(above, top, np.where(y < b, middle, bottom))
                        hits = int((pred == classes).sum())
                        if hits > best:
                            best, choice = hits, [(top, middle, bottom, a, b)]
                        elif hits == best:
                            choice.append((top, middle, bottom, a, b))
    del order
    top, middle, bottom = choice[len(choice) // 2][:3]
    same = [c for c in choice if c[:3] == (top, middle, bottom)]
    a = int(round(np.mean([c[3] for c in same])))
    b = int(round(np.mean([c[4] for c in same])))
    r = np.arange(rows)
    return np.where(r < a, top, np.where(r < b, middle, bottom))


def name_clusters(clusters: np.ndarray, idx: np.ndarray, classes: np.ndarray, pca: np.ndarray) -> np.ndarray:
    """Each cluster takes the majority label of the labelled positions in it; a cluster without
    labels takes the name of the nearest named cluster (centroid distance in PCA space)."""
    k = int(clusters.max()) + 1
    names = np.full(k, -1)
    for c in range(k):
        here = classes[clusters[idx] == c]
        if len(here):
            names[c] = np.bincount(here, minlength=3).argmax()
    if (names < 0).all():
        return np.full(len(clusters), np.bincount(classes, minlength=3).argmax())
    centroids = np.array([pca[clusters == c].mean(0) if (clusters == c).any() else np.full(pca.shape[1], np.inf)
                          for c in range(k)])
    named = np.flatnonzero(names >= 0)
    for c in np.flatnonzero(names < 0):
        d = np.linalg.norm(centroids[named] - centroids[c], axis=1)
        names[c] = names[named[np.argmin(d)]]
    return names[clusters]


# ---------------------------------------------------------------- the active-learning loop


@dataclass
class JobSpec:
    """One scenario and seed: every sampler at every budget, the CNN and the baselines."""

    scenario: str
    seed: int
    samplers: tuple = SAMPLERS
    budgets: tuple = TABLE_BUDGETS
    network: str = "default"
    detector: int = 64
    oracle: str = "truth"  # "truth", or "human:RATE" (HumanLikeOracle at that overall error rate)
    baselines: bool = True
    smoke: bool = False
    epochs: int | None = None
    extra_networks: dict = field(default_factory=dict)  # {"paper": {"budgets": [50], "samplers": [...]}}


class _LazyModel:
    """A CNN fitted on demand on a snapshot of the labels (the hybrid asks for the model's doubt
    only once its grid phase is over: no fit is paid for before)."""

    def __init__(self, fit):
        self._fit, self._labels, self._model = fit, None, None
        self.classes_ = np.arange(3)

    def update(self, positions, classes):
        self._labels, self._model = (positions.copy(), classes.copy()), None

    def ready(self) -> bool:
        return self._labels is not None

    def predict_proba(self, X):
        if self._model is None:
            self._model = self._fit(*self._labels)
        return self._model.predict_proba(X)


def _can_train(classes) -> bool:
    return len(classes) >= 5 and len(np.unique(classes)) >= 2


@dataclass
class JobSetting:
    """What a job's loops share: the scan, its test positions, the oracle, the dataset the models read,
    every scan position (x, y) in scan order, and the baselines' features (None without baselines)."""

    scan: Scan
    test: np.ndarray
    oracle: object
    dataset: object
    every: np.ndarray
    features: Features | None


def job_setting(spec: JobSpec) -> JobSetting:
    """The scan, test split, oracle and dataset of ``spec`` (the same for every sampler of the job)."""
    from al4dstem.data import open_dataset

    scan = make_scan(spec.scenario, spec.seed, spec.detector, spec.smoke)
    test = split_test(scan.shape, spec.seed, 150 if spec.smoke else TEST_SIZE)
    features = scan_features(scan, spec.seed) if spec.baselines else None
    oracle = make_oracle(spec.oracle, scan.truth, spec.seed, features)
    rows, cols = scan.shape
    ys, xs = np.mgrid[0:rows, 0:cols]
    every = np.column_stack([xs.ravel(), ys.ravel()]).astype(np.int64)
    return JobSetting(scan, test, oracle, open_dataset(scan.data), every, features)


def run_job(spec: JobSpec) -> dict:
    """Run one job (see ``JobSpec``); returns a JSON-ready dict of every score."""
    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    started = time.perf_counter()
    setting = job_setting(spec)
    scan, test, oracle, ds, every, features = (setting.scan, setting.test, setting.oracle, setting.dataset,
                                               setting.every, setting.features)
    fits = {"n": 0, "seconds": 0.0}

    def fit(positions, classes, network=spec.network):
        from al4dstem.models import CNNClassifier

        t0 = time.perf_counter()
        model = CNNClassifier(network=network, dataset=ds, random_state=spec.seed, n_threads=1,
                              epochs=2 if spec.smoke else spec.epochs)
        model.fit(positions, classes)
        fits["n"] += 1
        fits["seconds"] += time.perf_counter() - t0
        return model

    def evaluate(positions, classes, model=None, network=spec.network):
        # labels that disagree with the truth (a fallible oracle's errors on the positions this sampler chose)
        wrong = int((classes != scan.truth[positions[:, 1], positions[:, 0]]).sum()) if len(classes) else 0
        if not _can_train(classes):
            return {"n_labels": int(len(classes)), "wrong_labels": wrong, "cnn": None, "baselines": {}}
        model = model if model is not None else fit(positions, classes, network)
        pred = np.asarray(model.predict(every)).reshape(scan.shape)
        out = {"n_labels": int(len(classes)), "wrong_labels": wrong,
               "label_counts": np.bincount(classes, minlength=3).tolist(), "cnn": scores(pred, scan.truth, test)}
        if spec.baselines and network == spec.network:
            maps = baseline_maps(features, scan.shape, positions, classes, spec.seed)
            out["baselines"] = {k: (scores(m, scan.truth, test) if m is not None else None) for k, m in maps.items()}
        return out

    results: dict = {}
    for name in spec.samplers:
        results[name] = {}
        runs = [tuple(spec.budgets)] if name in NESTED else [(b,) for b in spec.budgets]
        for evals in runs:
            results[name].update(active_learning_run(name, spec, scan, test, oracle, evals, fit, evaluate))
    extra = {}
    for network, plan in spec.extra_networks.items():
        extra[network] = {}
        for name in plan.get("samplers", ["grid-midpoint", "random"]):
            extra[network][name] = {}
            for b in plan.get("budgets", [50]):
                labels = label_only(name, spec, scan, test, oracle, b)
                extra[network][name][str(b)] = evaluate(*labels, network=network)
    return {"scenario": spec.scenario, "scan": scan.name, "seed": spec.seed, "shape": list(scan.shape),
            "detector": int(scan.data.shape[-1]), "class_counts": np.bincount(scan.truth.ravel(), minlength=3).tolist(),
            "test_size": int(test.sum()), "oracle": spec.oracle, "network": spec.network,
            "samplers": list(spec.samplers), "epochs": spec.epochs,
            "results": results, "extra_networks": extra, "cnn_fits": fits["n"], "cnn_fit_seconds": fits["seconds"],
            "seconds": time.perf_counter() - started, "simulate_seconds": scan.seconds}


def make_oracle(kind: str, truth: np.ndarray, seed: int, features: Features | None = None):
    """``truth`` answers exactly; ``human:RATE`` is ``HumanLikeOracle`` at that overall error rate
    (faintness from the scan's ghost strength when the lattice was found)."""
    rows, cols = truth.shape
    table = {(x, y): int(truth[y, x]) for y in range(rows) for x in range(cols)}
    if kind == "truth":
        from al4dstem.oracles.truth import TruthOracle

        return TruthOracle(table)
    if kind.startswith("human:"):
        from al4dstem.oracles.noisy import HumanLikeOracle

        faint = features.faintness if features is not None else None
        return HumanLikeOracle(table, error_rate=float(kind.split(":", 1)[1]), faintness=faint, random_state=seed)
    raise Al4dstemError(f"unknown oracle {kind!r} (truth, or human:RATE)")


def _answer(oracle, chosen: np.ndarray) -> list:
    return [a.label for a in oracle.answers(chosen)]


def active_learning_run(name, spec: JobSpec, scan: Scan, test, oracle, evals, fit, evaluate) -> dict:
    """Label with sampler ``name`` up to ``max(evals)``, the CNN retrained in the loop at ``REFITS``
    (samplers that use a model), scored at every budget in ``evals``."""
    from al4dstem.base import QueryContext
    from al4dstem.strategies import get_sampler

    budget = max(evals)
    sampler = get_sampler(name, random_state=spec.seed)
    needs_model = bool(getattr(sampler, "needs_model", False))
    lazy = _LazyModel(fit) if name == "hybrid" else None
    open_ = ~test.copy()
    positions: list = []
    classes: list = []
    model = None  # the fitted in-loop CNN of a model-driven sampler
    stops = sorted({b for b in evals} | ({r for r in REFITS if r < budget} if (needs_model or lazy) else set()))
    out: dict = {}
    while len(positions) < budget:
        n = len(positions)
        nxt = min(s for s in stops if s > n)
        ys, xs = np.nonzero(open_)
        if not len(xs):
            break
        pos = np.array(positions, dtype=np.int64).reshape(-1, 2)
        cls = np.array(classes, dtype=np.int64)
        context_model = model if needs_model else (lazy if lazy is not None and lazy.ready() else None)
        context = QueryContext(scan.shape, np.column_stack([xs, ys]).astype(np.int64), pos, cls,
                               budget if name not in NESTED else None, context_model)
        idx = np.asarray(sampler.query(context, nxt - n), dtype=np.int64)
        if not len(idx):
            break
        chosen = context.candidates[idx]
        for (x, y), label in zip(chosen, _answer(oracle, chosen), strict=True):
            open_[y, x] = False
            if isinstance(label, str):
                continue  # a skip: costs no budget
            positions.append((int(x), int(y)))
            classes.append(int(label))
        n = len(positions)
        pos = np.array(positions, dtype=np.int64).reshape(-1, 2)
        cls = np.array(classes, dtype=np.int64)
        fitted_now = None
        if n in stops and n < budget and _can_train(cls):  # retrain the in-loop model (not after the last label)
            if needs_model:
                model = fitted_now = fit(pos, cls)
            elif lazy is not None:
                lazy.update(pos, cls)
        if n in evals:
            out[str(n)] = evaluate(pos, cls, model=fitted_now)
    pos = np.array(positions, dtype=np.int64).reshape(-1, 2)
    cls = np.array(classes, dtype=np.int64)
    for b in evals:  # the sampler stopped short (nothing left to propose): score what it labelled
        if str(b) not in out:
            out[str(b)] = {**evaluate(pos, cls), "stopped_short": True}
    return out


def label_only(name, spec: JobSpec, scan: Scan, test, oracle, budget: int):
    """Labels of a sampler that needs no model, up to ``budget`` (for reference networks)."""
    from al4dstem.base import QueryContext
    from al4dstem.strategies import get_sampler

    sampler = get_sampler(name, random_state=spec.seed)
    open_ = ~test.copy()
    positions, classes = [], []
    while len(positions) < budget:
        ys, xs = np.nonzero(open_)
        context = QueryContext(scan.shape, np.column_stack([xs, ys]).astype(np.int64),
                               np.array(positions, dtype=np.int64).reshape(-1, 2), np.array(classes, dtype=np.int64),
                               budget)
        idx = np.asarray(sampler.query(context, budget - len(positions)), dtype=np.int64)
        if not len(idx):
            break
        chosen = context.candidates[idx]
        for (x, y), label in zip(chosen, _answer(oracle, chosen), strict=True):
            open_[y, x] = False
            if not isinstance(label, str):
                positions.append((int(x), int(y)))
                classes.append(int(label))
    return np.array(positions, dtype=np.int64).reshape(-1, 2), np.array(classes, dtype=np.int64)


# ---------------------------------------------------------------- running many jobs


def run_jobs(specs: list[JobSpec], jobs: int = 1, raw_dir: Path | None = None, log=print) -> list[dict]:
    """Run ``specs`` in ``jobs`` processes; each result is also saved in ``raw_dir`` as it
    finishes, and a job whose file exists there is not run again (a stopped run resumes)."""
    done, todo = [], []
    for spec in specs:
        path = _raw_path(raw_dir, spec)
        if path is not None and path.exists():
            done.append(json.loads(path.read_text()))
        else:
            todo.append(spec)
    if done:
        log(f"{len(done)} job(s) already done in {raw_dir}, {len(todo)} to run")

    def keep(spec, result):
        path = _raw_path(raw_dir, spec)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(result))
            tmp.replace(path)
        done.append(result)
        log(f"done {spec.scenario} seed {spec.seed} ({spec.oracle}): {result['seconds']:.0f} s, "
            f"{result['cnn_fits']} CNN fits; {len(done)}/{len(specs)}")

    if jobs <= 1:
        for spec in todo:
            keep(spec, run_job(spec))
    else:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(jobs, maxtasksperchild=1) as pool:
            for spec, result in zip(todo, pool.imap(run_job, todo), strict=True):
                keep(spec, result)
    return done


def _raw_path(raw_dir, spec: JobSpec) -> Path | None:
    """``SCENARIO-ORACLE-seedN[-SAMPLERS][-epochsE].json``: a job with other samplers or epochs
    than the default is another file (so samplers can be added to a run later)."""
    if raw_dir is None:
        return None
    oracle = spec.oracle.replace(":", "-")
    tag = "" if tuple(spec.samplers) == SAMPLERS else "-" + "+".join(
        "".join(c if c.isalnum() or c in "-_" else "_" for c in name) for name in spec.samplers)
    if spec.epochs is not None:
        tag += f"-epochs{int(spec.epochs)}"
    return Path(raw_dir) / f"{spec.scenario.replace('@', '_at_')}-{oracle}-seed{spec.seed}{tag}.json"


FIRST_SEEDS = 10  # how many seeds the original draw gives (their jobs' results stay valid)


def seeds_from(master: int, n: int) -> list[int]:
    """``n`` job seeds derived from the master seed (the same list for every sampler: paired).

    A longer list starts with a shorter one, so a run asked for more seeds later resumes with
    the jobs it has. The first ``FIRST_SEEDS`` come from one draw without repeats (the seeds
    of every committed result); more are drawn one by one from a second stream, skipping repeats.
    """
    first = [int(s) for s in np.random.default_rng(int(master)).choice(2**31 - 1, FIRST_SEEDS, replace=False)]
    seeds = first[:max(0, int(n))]
    more = np.random.default_rng([int(master), 1])
    while len(seeds) < n:
        seed = int(more.integers(2**31 - 1))
        if seed not in seeds:
            seeds.append(seed)
    return seeds


# ---------------------------------------------------------------- provenance


def provenance(args: dict, master_seed: int) -> dict:
    """Versions, machine, parameters and master seed of a run, written beside its results."""
    versions = {"python": platform.python_version()}
    for module in ("numpy", "scipy", "sklearn", "torch", "al4dstem", "py4DSTEM"):
        try:
            versions[module] = __import__(module).__version__
        except Exception:  # not installed, or no version: say so
            versions[module] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    gpu = None
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:
        pass
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "command": " ".join(sys.argv),
            "git_commit": commit, "versions": versions,
            "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                        "cpus": os.cpu_count(), "load_average": [round(v, 2) for v in os.getloadavg()],
                        "gpu": gpu or "none (CPU only)"},
            "parameters": args, "master_seed": int(master_seed)}


# ---------------------------------------------------------------- summaries


def merge_jobs(results: list[dict]) -> list[dict]:
    """One result per (scenario, seed): the samplers of jobs run apart on the same scan and seed
    (e.g. model-driven samplers added later) joined; the first job's answer wins a repeat."""
    merged: dict = {}
    for r in results:
        key = (r["scenario"], r["seed"])
        if key not in merged:
            merged[key] = {**r, "results": dict(r["results"])}
            continue
        m = merged[key]
        for name, per_budget in r["results"].items():
            m["results"].setdefault(name, per_budget)
        for total in ("cnn_fits", "cnn_fit_seconds", "seconds"):
            m[total] = m.get(total, 0) + r.get(total, 0)
    return sorted(merged.values(), key=lambda r: (r["scenario"], r["seed"]))


def collect(results: list[dict], model: str = "cnn", metric: str = "accuracy") -> dict:
    """``{scenario: {sampler: {budget: [value per seed, in seed order]}}}`` for one model
    (``cnn``, a baseline name, ``entry`` for a field of the budget's entry such as
    ``wrong_labels``, or ``labels`` for the share of the class named by ``metric`` among the
    labels the sampler asked for) and one metric. Every list of a scenario has one value per seed of that
    scenario (NaN where a sampler was not run or could not train on that seed), so lists pair
    up seed by seed."""
    merged = merge_jobs(results)
    grid: dict = {}
    for r in merged:
        for sampler, per_budget in r["results"].items():
            grid.setdefault(r["scenario"], {}).setdefault(sampler, set()).update(int(b) for b in per_budget)
    out: dict = {}
    for r in merged:
        for sampler, budgets in grid[r["scenario"]].items():
            per_budget = r["results"].get(sampler, {})
            for b in sorted(budgets):
                entry = per_budget.get(str(b)) or {}
                if model == "entry":
                    value = entry.get(metric)
                elif model == "labels":
                    counts = entry.get("label_counts")
                    value = counts[CLASSES.index(metric)] / sum(counts) if counts and sum(counts) else None
                else:
                    score = entry.get("cnn") if model == "cnn" else (entry.get("baselines") or {}).get(model)
                    value = score.get(metric) if score else None
                out.setdefault(r["scenario"], {}).setdefault(sampler, {}).setdefault(b, []).append(
                    float("nan") if value is None else float(value))
    return out


def finished_jobs(raw_dir: Path, oracle: str = "truth", epochs: int | None = None, scenarios=None) -> list[dict]:
    """Every job kept in ``raw_dir`` with this oracle and epochs (any seed, any samplers), so
    that a report covers jobs added by later runs."""
    out = []
    for path in sorted(Path(raw_dir).glob("*.json")):
        r = json.loads(path.read_text())
        if r.get("oracle") == oracle and r.get("epochs") == epochs and \
                (scenarios is None or r["scenario"] in scenarios):
            out.append(r)
    return out


def uses_model(name: str) -> bool:
    """Whether a sampler asks the CNN in the loop (its runs cost CNN fits while labelling)."""
    from al4dstem.strategies import get_sampler

    return name == "hybrid" or bool(getattr(get_sampler(name), "needs_model", False))


def fmt(mean: float, ci: float, scale: float = 100.0, digits: int = 1) -> str:
    if not np.isfinite(mean):
        return "n/a"
    if not np.isfinite(ci):
        return f"{mean * scale:.{digits}f}"
    return f"{mean * scale:.{digits}f} +- {ci * scale:.{digits}f}"


def write_outputs(stem: Path, markdown: str, data: dict, figure=None) -> list[Path]:
    """``stem.md``, ``stem.json`` and (a matplotlib figure) ``stem.png``; returns the paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".md"), stem.with_suffix(".json")]
    paths[0].write_text(markdown)
    paths[1].write_text(json.dumps(data, indent=1, default=_json_default) + "\n")
    if figure is not None:
        figure.savefig(stem.with_suffix(".png"), dpi=110, bbox_inches="tight")
        paths.append(stem.with_suffix(".png"))
    return paths


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def provenance_markdown(prov: dict) -> str:
    v = ", ".join(f"{k} {val}" for k, val in prov["versions"].items() if val)
    m = prov["machine"]
    return (f"Run {prov['date']}, commit {prov['git_commit']}; master seed {prov['master_seed']}.\n"
            f"Machine: {m['platform']}, {m['cpus']} CPUs ({m['processor']}), load average at start "
            f"{m['load_average']}, GPU: {m['gpu']}.\nVersions: {v}.\nCommand: `{prov['command']}`\n")


def sampler_table(results: list[dict], scenario: str, budgets, samplers, model: str = "cnn",
                  metric: str = "accuracy", reference: str = "random", scale: float = 100.0) -> tuple[str, dict]:
    """Markdown rows ``sampler | mean +- CI per budget | Wilcoxon p vs reference`` and the numbers."""
    values = collect(results, model, metric).get(scenario, {})
    head = "| sampler | " + " | ".join(f"{b} labels" for b in budgets) + " | paired Wilcoxon p vs " \
        f"{reference} ({', '.join(str(b) for b in budgets)}) |\n"
    lines = [head, "|---" * (len(budgets) + 2) + "|\n"]
    data: dict = {}
    for name in samplers:
        if name not in values:
            continue
        cells, ps = [], []
        data[name] = {}
        for b in budgets:
            v = values[name].get(b, [])
            m, ci = mean_ci(v)
            p = wilcoxon_p(v, values.get(reference, {}).get(b, [])) if name != reference else float("nan")
            n = int(np.isfinite(v).sum()) if len(v) else 0
            data[name][b] = {"mean": m, "ci95": ci, "n": n, "p_vs_" + reference: p, "values": v}
            # fewer seeds than the scenario has: a sampler not run on every seed, or untrainable labels
            cells.append(fmt(m, ci, scale, 1 if scale == 100 else 2) + (f" (n={n})" if 0 < n < len(v) else ""))
            ps.append("-" if name == reference else f"{p:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {' / '.join(ps)} |\n")
    return "".join(lines), data


def beats(results: list[dict], scenario: str, sampler: str, budget: int, baseline: str,
          metric: str = "accuracy") -> dict:
    """CNN minus a baseline on the same labels: mean difference, its 95 % CI, Wilcoxon p."""
    cnn = collect(results, "cnn", metric).get(scenario, {}).get(sampler, {}).get(budget, [])
    base = collect(results, baseline, metric).get(scenario, {}).get(sampler, {}).get(budget, [])
    d = np.asarray(cnn, float) - np.asarray(base, float)
    m, ci = mean_ci(d)
    return {"diff": m, "ci95": ci, "p": wilcoxon_p(cnn, base), "baseline_mean": mean_ci(base)[0]}


def seconds_text(s: float) -> str:
    return f"{s / 60:.1f} min" if s >= 120 else f"{s:.0f} s"


# ---------------------------------------------------------------- the two benchmarks


def run_table1(out: Path | str = "benchmarks/results/table1", seeds: int = 10, master_seed: int = 2026,
               jobs: int = 1, samplers=SAMPLERS, budgets=TABLE_BUDGETS, oracle: str = "truth",
               reference: Path | str | None = None, paper_seeds: int = 3, detector: int = 64,
               network: str = "default", note: str = "", report_only: bool = False, smoke: bool = False,
               log=print) -> list[Path]:
    """The paper's Table 1 with the CNN in the loop (``benchmarks/bench_table1.py``, ``al4dstem
    benchmark table1``): ``seeds`` paired seeds of the paper-like scan, every sampler at every
    budget, the paper's network at 50 labels on the first ``paper_seeds`` seeds. ``reference``:
    the stem of a perfect-oracle run on the same seeds to set beside a fallible oracle's (its
    jobs read from ``STEM-raw/``, missing ones run there). ``report_only``: no jobs, the report
    from those finished. ``smoke``: tiny scan, 2 seeds, 2 budgets, 2 epochs. Writes ``out``.md,
    .json, .png and ``out-raw/``; returns the written paths."""
    from types import SimpleNamespace

    out = Path(out)
    reference = Path(reference) if reference is not None else None
    samplers, budgets = list(samplers), sorted(int(b) for b in budgets)
    if smoke:
        seeds, budgets, paper_seeds = 2, [10, 20], 1
    _check_run(seeds, jobs, budgets, samplers, oracle)
    args = SimpleNamespace(out=out, seeds=seeds, master_seed=master_seed, jobs=jobs, samplers=samplers,
                           budgets=budgets, oracle=oracle, reference=reference, paper_seeds=paper_seeds,
                           detector=detector, network=network, note=note, report_only=report_only, smoke=smoke)
    seed_list = seeds_from(master_seed, seeds)
    paper_budget = min(budgets) if smoke else 50
    specs = [JobSpec("paper", seed, tuple(samplers), tuple(budgets), network, detector, oracle, smoke=smoke,
                     extra_networks={"paper": {"budgets": [paper_budget], "samplers": ["grid-midpoint", "random"]}}
                     if i < paper_seeds else {})
             for i, seed in enumerate(seed_list)]
    prov = provenance({k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, master_seed)
    start = time.perf_counter()
    raw_dir = out.parent / f"{out.name}-raw"
    if report_only:
        specs = [s for s in specs if _raw_path(raw_dir, s).exists()]
        if not specs:
            raise Al4dstemError(f"no finished jobs in {raw_dir}")
    log(f"{len(specs)} seeds x {len(samplers)} samplers x budgets {budgets}, jobs {jobs}; results in {out}.md")
    results = [r for r in run_jobs(specs, jobs, raw_dir=raw_dir, log=log) if r["seed"] in seed_list]
    ref_results = []
    if reference is not None:
        ref_raw = reference.parent / f"{reference.name}-raw"
        ref_specs = [JobSpec("paper", s.seed, s.samplers, s.budgets, s.network, s.detector, "truth", smoke=s.smoke)
                     for s in specs]  # the seeds run (or, with report_only, finished) here
        if report_only:
            ref_specs = [s for s in ref_specs if _raw_path(ref_raw, s).exists()]
        ref_results = run_jobs(ref_specs, jobs, raw_dir=ref_raw, log=log)
    return _table1_report(results, args, prov, time.perf_counter() - start, ref_results)


def run_curves(out: Path | str = "benchmarks/results/curves", scenarios=None, seeds: int = 3,
               master_seed: int = 2027, jobs: int = 1, samplers=SAMPLERS, budgets=CURVE_BUDGETS,
               model_driven_on=None, oracle: str = "truth", detector: int = 64, network: str = "default",
               note: str = "", report_only: bool = False, smoke: bool = False, log=print) -> list[Path]:
    """Learning curves with the CNN in the loop (``benchmarks/bench_curves.py``, ``al4dstem
    benchmark curves``) on ``scenarios`` (default ``CURVE_SCENARIOS``). The samplers that use the
    CNN while labelling run as separate jobs after each seed's others, only on
    ``model_driven_on`` (default: every scenario). The report covers every job finished in
    ``out-raw/`` with this oracle, whichever run added it. Returns the written paths."""
    from types import SimpleNamespace

    out = Path(out)
    scenarios = list(scenarios) if scenarios else list(CURVE_SCENARIOS)
    samplers, budgets = list(samplers), sorted(int(b) for b in budgets)
    if smoke:
        seeds, budgets = 2, [10, 20]
        scenarios = scenarios[:2] if scenarios != list(CURVE_SCENARIOS) else ["paper", "tilted@faint-rotated"]
    _check_run(seeds, jobs, budgets, samplers, oracle)
    args = SimpleNamespace(out=out, scenarios=scenarios, seeds=seeds, master_seed=master_seed, jobs=jobs,
                           samplers=samplers, budgets=budgets, model_driven_on=model_driven_on, oracle=oracle,
                           detector=detector, network=network, note=note, report_only=report_only, smoke=smoke)
    driven = [name for name in samplers if uses_model(name)]
    plain = [name for name in samplers if name not in driven]
    driven_on = scenarios if model_driven_on is None else list(model_driven_on)
    specs = []
    for seed in seeds_from(master_seed, seeds):  # seed by seed: a run stopped early has whole seeds
        groups = [(s, plain) for s in scenarios] + [(s, driven) for s in scenarios if s in driven_on]
        specs += [JobSpec(s, seed, tuple(names), tuple(budgets), network, detector, oracle, smoke=smoke)
                  for s, names in groups if names]
    prov = provenance({k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, master_seed)
    start = time.perf_counter()
    raw_dir = out.parent / f"{out.name}-raw"
    if report_only and not (raw_dir.is_dir() and finished_jobs(raw_dir, oracle, None, scenarios)):
        raise Al4dstemError(f"no finished jobs in {raw_dir} with oracle {oracle}")
    log(f"{len(scenarios)} scenarios x {seeds} seeds, samplers {samplers}, budgets {budgets}, jobs {jobs}")
    if not report_only:
        run_jobs(specs, jobs, raw_dir=raw_dir, log=log)
    results = finished_jobs(raw_dir, oracle, None, scenarios)
    return _curves_report(results, args, prov, time.perf_counter() - start)


def _check_run(seeds, jobs, budgets, samplers, oracle) -> None:
    """One clear error for settings no benchmark can run with (before any job starts)."""
    if int(seeds) < 1 or int(jobs) < 1:
        raise Al4dstemError(f"seeds and jobs must be >= 1, got {seeds} and {jobs}")
    if not budgets or min(budgets) < 5:
        raise Al4dstemError(f"budgets must be >= 5 labels, got {budgets}")
    if not samplers:
        raise Al4dstemError("no sampler named")
    for name in samplers:
        uses_model(name)  # an unknown sampler fails here, by name
    if oracle != "truth":
        kind, _, rate = oracle.partition(":")
        try:
            ok = kind == "human" and 0 <= float(rate) <= 0.5
        except ValueError:
            ok = False
        if not ok:
            raise Al4dstemError(f"unknown oracle {oracle!r} (truth, or human:RATE with RATE in [0, 0.5])")


# ---------------------------------------------------------------- Table 1 report


_HUMAN_NOTE = (" (HumanLikeOracle: that share of wrong answers over the whole scan, an error up to 8 times "
              "likelier at a wall than far from one, decaying over 2 scan pixels, and up to 4 times likelier on the "
              "faintest ghosts, faintness from the scan's ghost strength; a wrong answer names the class across the "
              "nearest wall; the test set is scored against the truth)")


def _table1_report(results, args, prov, seconds, reference=()) -> list[Path]:
    budgets = sorted(args.budgets)
    samplers = list(args.samplers)
    n = len(results)
    scan = results[0]
    kind = "SMOKE: meaningless figures" if args.smoke else "paper-like scan"
    if args.oracle != "truth":
        kind += f", oracle {args.oracle}"
    md = [f"# Table 1 with the CNN in the loop ({kind})\n\n",
          provenance_markdown(prov), f"\n{args.note}\n" if args.note else "", "\n",
          f"Scan: {scan['shape'][1]} x {scan['shape'][0]} positions ({scan['scan']}), detector {scan['detector']} x "
          f"{scan['detector']} (the paper's: 256; reduced to fit a 2-core machine: the default CNN bins to 64 x 64 "
          f"anyway, the paper's network sees 64 x 64 instead of 256 x 256), classes none / vertical / horizontal "
          f"{scan['class_counts']}. Test set: {scan['test_size']} positions never labelled. Oracle: {args.oracle}"
          f"{_HUMAN_NOTE if args.oracle.startswith('human:') else ''}. "
          f"Model: CNNClassifier(network={args.network!r}), default settings. "
          f"**{n} paired seeds**; mean +- 95 % CI (Student t); p: two-sided paired Wilcoxon signed-rank test "
          f"against random at each budget. Wall time {seconds_text(seconds)} for the jobs run now "
          f"({sum(r['cnn_fits'] for r in results)} CNN fits in all, "
          f"{sum(r['cnn_fit_seconds'] for r in results) / max(1, sum(r['cnn_fits'] for r in results)):.0f} s each "
          f"on average).\n\n"]
    data = {"provenance": prov, "seeds": [r["seed"] for r in results], "tables": {}, "baselines": {}}
    md.append("## Accuracy (%) on the 1,000 test positions\n\n")
    table, numbers = sampler_table(results, "paper", budgets, samplers)
    md.append(table)
    for name, row in PAPER_TABLE_1.items():
        cells = [f"{row[b]:.1f}" if b in row else "-" for b in budgets]
        md.append(f"| paper's CNN, {'binary' if name == 'grid-midpoint' else name} (1 run, their 1,000 test labels) | "
                  + " | ".join(cells) + " | - |\n")
    data["tables"]["accuracy"] = numbers
    md.append("\n" + _grid_vs_random(numbers, budgets) + "\n")
    for metric, title, scale in (("balanced_accuracy", "Balanced accuracy (%)", 100.0),
                                 ("none_recall", "Recall of `none` (the walls, %)", 100.0),
                                 ("none_f1", "F1 of `none` (%)", 100.0),
                                 ("wall_error", "Wall position error (scan pixels, lower is better)", 1.0)):
        table, numbers = sampler_table(results, "paper", budgets, samplers, metric=metric, scale=scale)
        data["tables"][metric] = numbers
        md.append(f"\n## {title}\n\n{table}")
    md.append("\n## Baselines on the same labels (accuracy %, and CNN minus baseline)\n\n")
    md.append("CNN - baseline: mean difference in accuracy points +- 95 % CI, paired Wilcoxon p. Bold: the CNN is "
              "better beyond the seed spread (CI above 0).\n\n")
    for sampler in [s for s in ("grid-midpoint", "random") if s in samplers]:
        md.append(f"\n### Labels from {sampler}\n\n| baseline | " + " | ".join(f"{b} labels" for b in budgets)
                  + " |\n" + "|---" * (len(budgets) + 1) + "|\n")
        for base in BASELINES:
            cells = []
            for b in budgets:
                v = collect(results, base).get("paper", {}).get(sampler, {}).get(b, [])
                m, ci = mean_ci(v)
                d = beats(results, "paper", sampler, b, base)
                data["baselines"].setdefault(sampler, {}).setdefault(base, {})[b] = {"mean": m, "ci95": ci, **d}
                diff = f"{d['diff'] * 100:+.1f} +- {d['ci95'] * 100:.1f}, p {d['p']:.3f}" if len(v) > 1 else "n/a"
                if len(v) > 1 and d["diff"] - d["ci95"] > 0:
                    diff = f"**{diff}**"
                cells.append(f"{fmt(m, ci)} ({diff})")
            md.append(f"| {base} | " + " | ".join(cells) + " |\n")
    md.append(_paper_network(results, args))
    if reference:
        md.append(_oracle_comparison(results, reference, budgets, samplers, args.oracle, data))
    md.append("\n## Reading\n\nSee README \"Evidence\"; raw scores of every seed are in the JSON file.\n")
    fig = _table1_figure(data, budgets, samplers)
    paths = write_outputs(args.out, "".join(md), data, fig)
    return paths


def _oracle_comparison(results, reference, budgets, samplers, oracle, data) -> str:
    """The fallible oracle's run beside the perfect oracle's on the seeds both finished, paired."""
    common = sorted({r["seed"] for r in results} & {r["seed"] for r in reference})
    if not common:
        return ""
    ours = [r for r in results if r["seed"] in common]
    ref = [r for r in reference if r["seed"] in common]
    out = [f"\n## Perfect oracle vs {oracle}, the same {len(common)} seeds\n\n"
           "Wrong labels: the share of the labels a sampler collected that the oracle got wrong (the oracle's rate "
           "is over the whole scan; a sampler that labels near walls or faint patterns hears more errors). "
           "Difference: fallible minus perfect, accuracy points, paired per seed, mean +- 95 % CI, Wilcoxon p; "
           "**bold**: beyond the seed spread.\n\n"
           "| sampler | labels | wrong labels (%) | accuracy, perfect | accuracy, fallible | difference | "
           "`none` recall, perfect -> fallible | wall error (px), perfect -> fallible |\n"
           "|---|---|---|---|---|---|---|---|\n"]
    table: dict = {}
    wrong = collect(ours, "entry", "wrong_labels").get("paper", {})
    n_labels = collect(ours, "entry", "n_labels").get("paper", {})
    for name in samplers:
        for b in budgets:
            row = {}
            for metric in ("accuracy", "none_recall", "wall_error"):
                a = collect(ref, "cnn", metric).get("paper", {}).get(name, {}).get(b, [])
                f = collect(ours, "cnn", metric).get("paper", {}).get(name, {}).get(b, [])
                if len(a) != len(f) or not len(a):
                    break
                d = np.asarray(f, float) - np.asarray(a, float)
                row[metric] = {"perfect": mean_ci(a), "fallible": mean_ci(f), "diff": mean_ci(d),
                               "p": wilcoxon_p(f, a), "perfect_values": a, "fallible_values": f}
            if len(row) < 3:
                continue
            w, n = wrong.get(name, {}).get(b, []), n_labels.get(name, {}).get(b, [])
            share = mean_ci([x / y for x, y in zip(w, n, strict=True) if y]) if len(w) and len(n) == len(w) \
                else (float("nan"), float("nan"))
            row["wrong_label_share"] = share
            table.setdefault(name, {})[b] = row
            m, ci = row["accuracy"]["diff"]
            diff = f"{m * 100:+.1f}" + (f" +- {ci * 100:.1f}" if np.isfinite(ci) else "") + \
                f", p {row['accuracy']['p']:.3f}"
            diff = f"**{diff}**" if np.isfinite(ci) and abs(m) > ci else diff
            rec, wall = row["none_recall"], row["wall_error"]
            out.append(f"| {name} | {b} | {fmt(*share)} | {fmt(*row['accuracy']['perfect'])} | "
                       f"{fmt(*row['accuracy']['fallible'])} | {diff} | {rec['perfect'][0] * 100:.1f} -> "
                       f"{rec['fallible'][0] * 100:.1f} (p {rec['p']:.3f}) | {wall['perfect'][0]:.2f} -> "
                       f"{wall['fallible'][0]:.2f} (p {wall['p']:.3f}) |\n")
    data["oracle_comparison"] = {"seeds": common, "oracle": oracle, "table": table}
    return "".join(out)


def _grid_vs_random(numbers, budgets) -> str:
    if "grid-midpoint" not in numbers or "random" not in numbers:
        return ""
    parts = []
    for b in budgets:
        g, r = numbers["grid-midpoint"][b], numbers["random"][b]
        diff = [x - y for x, y in zip(g["values"], r["values"], strict=True)]
        m, ci = mean_ci(diff)
        verdict = "beats random beyond the seed spread" if m - ci > 0 else \
            "loses to random beyond the seed spread" if m + ci < 0 else "is within the seed spread of random"
        parts.append(f"at {b} labels grid-midpoint {verdict} ({m * 100:+.1f} +- {ci * 100:.1f} points, "
                     f"p = {g['p_vs_random']:.3f})")
    return "Grid-midpoint vs random, paired differences: " + "; ".join(parts) + ".\n"


def _paper_network(results, args) -> str:
    rows = [r for r in results if r.get("extra_networks", {}).get("paper")]
    if not rows:
        return ""
    out = ["\n## The paper's network (reference)\n\n| labels from | budget | paper's network "
           "| default CNN (same seeds) | seeds |\n|---|---|---|---|---|\n"]
    for sampler in ("grid-midpoint", "random"):
        budgets = sorted({int(b) for r in rows for b in r["extra_networks"]["paper"].get(sampler, {})})
        for b in budgets:
            paper = [r["extra_networks"]["paper"][sampler][str(b)]["cnn"]["accuracy"] for r in rows
                     if (r["extra_networks"]["paper"][sampler][str(b)].get("cnn"))]
            ours = [r["results"].get(sampler, {}).get(str(b), {}).get("cnn", {}).get("accuracy", float("nan"))
                    for r in rows]
            out.append(f"| {sampler} | {b} | {fmt(*mean_ci(paper))} | {fmt(*mean_ci(ours))} | "
                       f"{len(paper)} |\n")
    return "".join(out)


def _table1_figure(data, budgets, samplers):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, metric, title in zip(axes, ("accuracy", "none_recall", "wall_error"),
                                 ("accuracy (%)", "recall of none (%)", "wall position error (px)"), strict=True):
        scale = 1.0 if metric == "wall_error" else 100.0
        for i, name in enumerate(samplers):
            row = data["tables"][metric].get(name)
            if not row:
                continue
            x = [b * (1 + 0.03 * (i - 1.5)) for b in budgets]
            bars = ax.errorbar(x, [row[b]["mean"] * scale for b in budgets],
                               yerr=[row[b]["ci95"] * scale for b in budgets], marker="o", capsize=3, label=name)
            perfect = data.get("oracle_comparison", {}).get("table", {}).get(name)
            if perfect and all(b in perfect for b in budgets):  # the perfect oracle's run, same seeds: dashed
                ax.plot(x, [perfect[b][metric]["perfect"][0] * scale for b in budgets], ls="--", lw=1,
                        color=bars[0].get_color(), label=f"{name}, perfect oracle")
        if metric == "accuracy":
            for name, row in PAPER_TABLE_1.items():
                label = "paper binary" if name == "grid-midpoint" else f"paper {name}"
                ax.plot([b for b in budgets if b in row], [row[b] for b in budgets if b in row],
                        "k--" if name == "grid-midpoint" else "k:", marker="x", label=label)
        ax.set_xscale("log")
        ax.minorticks_off()  # only the budgets are ticked
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.set_xlabel("labels")
        ax.set_title(title)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- learning-curve report


CURVE_SCENARIOS = ("paper", "tilted", "bullseye", "needles", "stripes", "bullseye@faint-rotated")
CURVE_METRICS = (("accuracy", "accuracy (%)", 100.0), ("balanced_accuracy", "balanced accuracy (%)", 100.0),
           ("none_recall", "recall of none (%)", 100.0), ("none_f1", "F1 of none (%)", 100.0),
           ("wall_error", "wall position error (scan pixels)", 1.0))


def _curve_summary(results, scenario, budgets, samplers) -> dict:
    """AULC per seed, labels to reach random's largest-budget accuracy (random's mean over the
    seeds this sampler was scored on, so that a sampler run on fewer seeds is still paired), the
    99 % budget."""
    acc = collect(results, "cnn", "accuracy").get(scenario, {})
    top = max(budgets)
    out = {}
    random_top = np.array(acc["random"][top], dtype=float) if "random" in acc and top in acc["random"] else None
    for name in samplers:
        if name not in acc:
            continue
        per_seed = np.array([acc[name][b] for b in budgets], dtype=float)  # (budgets, seeds)
        aulcs = [aulc(budgets, per_seed[:, i]) for i in range(per_seed.shape[1])]
        means = np.nanmean(per_seed, axis=1)
        shared = np.isfinite(per_seed[-1]) & np.isfinite(random_top) if random_top is not None else None
        reach = None
        if shared is not None and shared.any():  # this sampler's and random's curves on the same seeds
            reach = labels_to_reach(budgets, np.nanmean(per_seed[:, shared], axis=1),
                                    float(np.mean(random_top[shared])))
        own = labels_to_reach(budgets, means, 0.99 * means[-1])
        out[name] = {"aulc": mean_ci(aulcs), "aulc_values": aulcs, "labels_to_random_top": reach,
                     "speedup": (top / reach) if reach else None, "budget_99pc_own_top": own,
                     "mean_curve": means.tolist()}
    return out


def _curves_report(results, args, prov, seconds) -> list[Path]:
    budgets = sorted(args.budgets)
    present = {name for r in results for name in r["results"]}
    samplers = [s for s in (*args.samplers, *SAMPLERS) if s in present]
    samplers = list(dict.fromkeys(samplers + sorted(present - set(samplers))))
    top = max(budgets)
    md = [f"# Learning curves with the CNN in the loop{' (SMOKE: meaningless figures)' if args.smoke else ''}\n\n",
          provenance_markdown(prov), f"\n{args.note}\n" if args.note else "",
          f"\nDetector {args.detector} x {args.detector} (reduced from the paper's 256 to fit a 2-core machine). "
          f"Oracle: {args.oracle}. Model: CNNClassifier(network={args.network!r}), default settings; uncertainty "
          f"retrains it in the loop at every budget and at {', '.join(str(r) for r in REFITS if r < top)} labels, "
          f"the hybrid when its wall phase asks. Test set: up to 1,000 positions never labelled. Mean +- 95 % CI over "
          f"seeds; p: paired Wilcoxon against random (with 5 seeds or fewer no two-sided p can fall below 0.05; "
          f"the CI of the paired difference is the test used here). `(n=K)`: only K seeds scored (a sampler not "
          f"run on every seed, or labels it could not train on). "
          f"Wall time {seconds_text(seconds)} for the jobs run now.\n"]
    data = {"provenance": prov, "scenarios": {}}
    md.append(_overview(results, args.scenarios, budgets, samplers, data))
    for scenario in args.scenarios:
        rows = [r for r in merge_jobs(results) if r["scenario"] == scenario]  # one per seed, its jobs joined
        if not rows:
            continue
        r0 = rows[0]
        md.append(f"\n## {scenario}: {r0['shape'][1]} x {r0['shape'][0]} scan, classes {r0['class_counts']}, "
                  f"**{len(rows)} seeds**\n")
        entry = {"seeds": [r["seed"] for r in rows], "tables": {}}
        for metric, title, scale in CURVE_METRICS:
            table, numbers = sampler_table(results, scenario, budgets, samplers, metric=metric, scale=scale)
            entry["tables"][metric] = numbers
            md.append(f"\n### {title}\n\n{table}")
        # where a sampler's labels fall: uncertainty sampling asks mostly for wall patterns
        table, numbers = sampler_table(results, scenario, budgets, samplers, model="labels", metric="none")
        entry["tables"]["none_label_share"] = numbers
        md.append(f"\n### Share of `none` (wall) patterns among the labels asked for (%)\n\n{table}")
        summary = _curve_summary(results, scenario, budgets, samplers)
        entry["summary"] = summary
        md.append("\n### Area under the accuracy curve, speed-up, 99 % budget\n\n"
                  "| sampler | AULC (%, log labels, over the budgets it could train at) | "
                  f"labels to reach random's {top}-label accuracy (on the same seeds) | speed-up | smallest budget "
                  f"with 99 % of its own "
                  f"{top}-label accuracy |\n|---|---|---|---|---|\n")
        for name, s in summary.items():
            reach = f"{s['labels_to_random_top']:.0f}" if s["labels_to_random_top"] else f"not reached by {top}"
            speed = f"{s['speedup']:.1f} x" if s["speedup"] else "-"
            own = f"{s['budget_99pc_own_top']:.0f}" if s["budget_99pc_own_top"] else "-"
            md.append(f"| {name} | {fmt(*s['aulc'])} | {reach} | {speed} | {own} |\n")
        md.append(_baseline_matrix(results, scenario, budgets, samplers, entry))
        data["scenarios"][scenario] = entry
    fig = _curves_figure(data, budgets, samplers)
    paths = write_outputs(args.out, "".join(md), data, fig)
    return paths


def _overview(results, scenarios, budgets, samplers, data) -> str:
    """Each sampler minus random per scenario and budget (paired over seeds), and the budget at
    which each sampler's mean curve reaches 99 % of its largest-budget accuracy."""
    top = max(budgets)
    acc = collect(results, "cnn", "accuracy")
    out = ["\n## Overview\n"]
    data["minus_random"] = {}
    for name in (s for s in samplers if s != "random"):
        table = _minus_random(acc, scenarios, budgets, name)
        if not table:
            continue
        data["minus_random"][name] = {scenario: numbers for scenario, (_, numbers) in table.items()}
        out.append(f"\n### {name[0].upper() + name[1:]} minus random, accuracy points (paired per seed, mean +- "
                   "95 % CI; **bold**: beyond the seed spread, 3 seeds or more)\n\n| scenario | seeds | "
                   + " | ".join(f"{b}" for b in budgets) + " |\n" + "|---" * (len(budgets) + 2) + "|\n")
        out.extend(line for line, _ in table.values())
    data["grid_minus_random"] = data["minus_random"].get("grid-midpoint", {})
    out.append(f"\n### Smallest budget at which the mean curve reaches 99 % of its {top}-label accuracy "
               f"(labels, linear between budgets)\n\n| scenario | " + " | ".join(samplers) + " |\n"
               + "|---" * (len(samplers) + 1) + "|\n")
    data["budget_99pc"] = {}
    for scenario in scenarios:
        if scenario not in acc:
            continue
        cells = []
        for name in samplers:
            curve = acc[scenario].get(name)
            if not curve:
                cells.append("-")
                continue
            means = np.array([np.nanmean(curve[b]) if np.isfinite(curve[b]).any() else np.nan for b in budgets])
            own = labels_to_reach(budgets, means, 0.99 * means[-1]) if np.isfinite(means[-1]) else None
            data["budget_99pc"].setdefault(scenario, {})[name] = own
            n = min(int(np.isfinite(curve[b]).sum()) for b in (top,))
            cells.append(f"{own:.0f} (n={n})" if own else "-")
        out.append(f"| {scenario} | " + " | ".join(cells) + " |\n")
    return "".join(out)


def _minus_random(acc, scenarios, budgets, name) -> dict:
    """``{scenario: (table row, numbers)}``: sampler ``name`` minus random, paired over the seeds both ran."""
    table = {}
    for scenario in scenarios:
        rows = acc.get(scenario, {})
        if name not in rows or "random" not in rows:
            continue
        cells, numbers = [], {}
        for b in budgets:
            d = np.asarray(rows[name].get(b, []), float) - np.asarray(rows["random"].get(b, []), float)
            m, ci = mean_ci(d)
            k = int(np.isfinite(d).sum())
            numbers[b] = {"diff": m, "ci95": ci, "n": k, "values": d.tolist()}
            if not np.isfinite(m):
                cells.append("n/a")
                continue
            text = f"{m * 100:+.1f}" + (f" +- {ci * 100:.1f}" if np.isfinite(ci) else "") + f" (n={k})"
            cells.append(f"**{text}**" if k >= 3 and np.isfinite(ci) and abs(m) > ci else text)
        seeds = int(np.isfinite(np.asarray(rows[name].get(max(budgets), []), float)).sum())
        table[scenario] = (f"| {scenario} | {seeds} | " + " | ".join(cells) + " |\n", numbers)
    return table

def _baseline_matrix(results, scenario, budgets, samplers, entry) -> str:
    """Per baseline and budget: CNN - baseline accuracy on grid-midpoint and random labels."""
    out = ["\n### CNN vs baselines on the same labels (accuracy points, CNN minus baseline, mean over seeds; "
           "`>` CNN better beyond the 95 % CI, `<` worse, `=` within)\n\n| labels | baseline | "
           + " | ".join(str(b) for b in budgets) + " |\n" + "|---" * (len(budgets) + 2) + "|\n"]
    entry["baselines"] = {}
    for sampler in [s for s in ("grid-midpoint", "random") if s in samplers]:
        for base in BASELINES:
            cells = []
            for b in budgets:
                d = beats(results, scenario, sampler, b, base)
                entry["baselines"].setdefault(sampler, {}).setdefault(base, {})[b] = d
                if not np.isfinite(d["diff"]):
                    cells.append("n/a")
                    continue
                mark = ">" if d["diff"] - (d["ci95"] if np.isfinite(d["ci95"]) else np.inf) > 0 else \
                    "<" if d["diff"] + (d["ci95"] if np.isfinite(d["ci95"]) else np.inf) < 0 else "="
                cells.append(f"{mark} {d['diff'] * 100:+.1f}")
            out.append(f"| {sampler} | {base} | " + " | ".join(cells) + " |\n")
    return "".join(out)


def _curves_figure(data, budgets, samplers):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(data["scenarios"])
    fig, axes = plt.subplots(2, max(1, len(scenarios)), figsize=(3.3 * max(1, len(scenarios)), 6.2), squeeze=False)
    for j, scenario in enumerate(scenarios):
        for i, (metric, title) in enumerate((("accuracy", "accuracy (%)"), ("none_recall", "recall of none (%)"))):
            ax = axes[i, j]
            for name in samplers:
                row = data["scenarios"][scenario]["tables"][metric].get(name)
                if not row:
                    continue
                m = np.array([row[b]["mean"] for b in budgets]) * 100
                ci = np.nan_to_num(np.array([row[b]["ci95"] for b in budgets]) * 100)
                ax.plot(budgets, m, marker="o", ms=3, label=name)
                ax.fill_between(budgets, np.clip(m - ci, 0, 100), np.clip(m + ci, 0, 100), alpha=0.15)  # percentages
            ax.set_xscale("log")
            ax.set_xticks(budgets, [str(b) for b in budgets], fontsize=7)
            ax.minorticks_off()
            ax.set_title(f"{scenario}\n{title}" if i == 0 else title, fontsize=9)
            ax.set_xlabel("labels")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig

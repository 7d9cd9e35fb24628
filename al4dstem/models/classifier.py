"""``CNNClassifier``: every model (the CNNs and the baselines) behind the scikit-learn-style ``Model`` contract.

``X`` is either scan positions ``(n, 2)`` as (x, y), whose patterns are read lazily from the
classifier's ``dataset``, or raw patterns ``(n, det_rows, det_cols)``. Either way patterns are
read once and preprocessed once per call, in chunks, so memory stays bounded. modAL's query
functions and ``ActiveLearner`` drive it like any scikit-learn classifier.

``network`` picks the model: the CNNs ``default`` and ``paper``, the baselines ``ghost``,
``softmax`` and ``pca-knn`` (``al4dstem.models.baselines``), or ``auto``: all of them scored by
cross-validation on the labels, the best kept (``al4dstem.models.selection``). Every one is a
torch module in the same checkpoint format. Before training, the scan's lattice is found from
its mean pattern (``al4dstem.models.features``): its angle decides which detector symmetries
are valid augmentations, its ghost positions give the ghost model its features. After
training, a temperature fitted on held-out labels calibrates the probabilities
(``al4dstem.models.calibration``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
import warnings
import weakref

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import NotFittedError

from al4dstem.base import Model
from al4dstem.data import Preprocessing, finite_mask, open_dataset
from al4dstem.errors import Al4dstemError
from al4dstem.labels import CLASSES
from al4dstem.models import checkpoint
from al4dstem.models.augment import Finish
from al4dstem.models.networks import (
    CHOICES,
    CNN_NETWORKS,
    INPUT_SIZES,
    LEARNING_RATES,
    build_network,
    network_config,
    set_class_bias,
    set_temperature,
)
from al4dstem.models.trained import TrainedNetwork, check_detector
from al4dstem.models.training import (
    CollapseWarning,
    Progress,
    TrainConfig,
    check_labels,
    collapse_message,
    train_network,
)

CHUNK = 256  # patterns read and preprocessed at a time (bounded memory for any number of positions)
N_CLASSES = len(CLASSES)
# hyper-parameters a checkpoint keeps (dataset and preprocessing are stored their own way)
# (run-time settings such as verbose and n_threads belong to the machine and run, not the model)
_STORED_PARAMS = ("epochs", "batch_size", "lr", "weight_decay", "patience", "augment", "class_weight",
                  "random_state", "symmetries", "calibrate", "cv", "neighbourhood", "orientation", "schedule",
                  "keep", "semi_supervised")
SYMMETRY_CHOICES = ("lattice", "rotations", "aligned")
ORIENTATIONS = ("detector", "canonical")
CLASS_WEIGHTS = ("balanced", "scan", "none", None)
SHARE_POSITIONS = 4096  # positions per scan (a regular grid) whose probabilities estimate its class shares
MIN_SHARE = 1e-3  # a class the model hardly sees is offset as if it held 0.1 % of the scan
HELDOUT_FOLDS = 5  # folds of the baselines' own cross-validation (held-out logits for the temperature)
_LATTICES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # dataset -> (mean pattern, lattice)


def default_preprocessing(network: str, detector_shape) -> Preprocessing:
    """The preprocessing a network is designed for, made no larger than the detector.

    log scaling (counts span decades; ghosts are 1e-3..5e-2 of the main disks) and per-pattern
    max normalisation, binned to the network's input size (64 for ``default``, 256 for ``paper`` as in
    the paper). At 64 pixels the half-order spacing of a 256 or 512 detector's pattern is still
    ~4.6 pixels and a ghost disk ~2 pixels across: resolved (``benchmarks/bench_accuracy.py
    --size`` compares input sizes).
    """
    if network == "ghost":
        from al4dstem.models.features import ghost_preprocessing

        return ghost_preprocessing(detector_shape)
    size = INPUT_SIZES.get(network, 64)
    smallest = int(min(detector_shape))
    if smallest < size:
        size = max(16, smallest - smallest % 8)
    return Preprocessing(size=size, scaling="log", normalise="max")


@contextlib.contextmanager
def torch_threads(n: int | None):
    """Run with ``n`` torch intra-op threads (None: leave the current setting), then restore."""
    import torch

    old = torch.get_num_threads()
    want = old if n is None else max(1, int(n))
    if want != old:
        torch.set_num_threads(want)
    try:
        yield
    finally:
        if want != old:
            torch.set_num_threads(old)


def share_grid(scan_shape, most: int) -> np.ndarray:
    """``(m, 2)`` positions (x, y) on a regular grid over the scan, every position when it has at most
    ``most``; a grid, not a random draw, so that domains count by their area and chunked files are read
    along rows."""
    rows, cols = (int(v) for v in scan_shape)
    most = max(1, int(most))
    step = max(1, int(np.ceil(np.sqrt(rows * cols / most))))
    while -(-rows // step) * -(-cols // step) > most:  # a long narrow scan: the square root undercounts
        step += 1
    half = (step - 1) // 2  # centred in each step, yet never past a short side
    ys, xs = np.mgrid[min(half, rows - 1):rows:step, min(half, cols - 1):cols:step]
    return np.column_stack([xs.ravel(), ys.ravel()]).astype(np.int64)


def _describe(positions: np.ndarray, limit: int = 5) -> str:
    shown = "; ".join(f"x={x}, y={y}" for x, y in positions[:limit])
    more = f" and {len(positions) - limit} more" if len(positions) > limit else ""
    return shown + more


class CNNClassifier(ClassifierMixin, BaseEstimator, Model):
    """A classifier of diffraction patterns into none / vertical / horizontal: a small CNN or a baseline.

    Parameters
    ----------
    network : "default" (fast CNN, few parameters), "paper" (the paper's CNN), "ghost" (logistic
        regression on ghost / Bragg intensities at the lattice's ghost positions), "softmax"
        (softmax regression on 32 x 32 log patterns), "pca-knn" (PCA + k nearest neighbours), or
        "auto" (all of them cross-validated on the labels; the best is kept, every score is in
        ``summary_["selection"]``).
    preprocessing : a ``Preprocessing``; None picks the network's own for the detector.
    dataset : where positions are read from (a ``Dataset`` or anything ``open_dataset`` takes).
    epochs : most epochs; None scales with the label count (100 for 50 labels, 50 for 500).
    batch_size, weight_decay : AdamW training (weight decay: the paper's 2e-3).
    lr : AdamW learning rate; None picks the network's (``LEARNING_RATES``: the paper's 4e-4
        for ``paper``; 2e-3 for ``default``, whose batch norm takes the larger steps that make
        50 labels train in about 20 s; at 4e-4 it was still improving after 100 epochs).
    patience : epochs without validation progress before stopping early (None: a quarter of
        the epochs, at least 25).
    augment : physics-aware augmentation (symmetries with label swap, intensity, shifts).
    class_weight : "balanced" (each class weighs the same in the loss, by the label counts), None
        (each label counts once) or "scan": trained as None, then the logits are offset so that the
        classes count equally over the scan's own class shares, estimated by the model
        (``balance_to_scans``). "balanced" suits labels drawn in the scan's proportions (grid,
        random); the labels of uncertainty sampling are mostly walls, and balancing by their
        counts then weighs the walls down; "scan" does not depend on the label mix.
    n_threads : torch threads while fitting and predicting (None: ``engines.local.default_threads``,
        one thread on a machine of two cores or fewer: these networks are too small to gain from
        more, and on shared cores OpenMP threads waiting for each other made training 18 times
        slower, 366 s instead of 20 s for 50 labels).
    random_state : seed of the initial weights, the split, the shuffling and the augmentation.
    verbose : print one line per epoch to stderr.
    symmetries : which detector symmetries augmentation may use: "lattice" (those that map the
        scan's lattice onto itself: the 90-degree rotations always, mirrors only for a lattice
        aligned with the detector or at 45 degrees), "rotations", or "aligned" (all eight, as for
        a lattice along the detector axes: wrong for a rotated lattice).
    calibrate : fit a temperature on held-out labels (the probabilities become calibrated).
    cv : folds of the cross-validation that ``network="auto"`` scores the models by.
    neighbourhood : pool each pattern with its ``n x n`` scan neighbours before classification
        (1, 3 or 5; ``al4dstem.models.neighbourhood``: up to n times the signal-to-noise, walls
        blurred by n // 2 positions). None: 1, and with "auto" cross-validation also tries 3 x 3
        and 5 x 5 for the ghost model and 3 x 3 for softmax. Needs positions, not pattern batches;
        ``neighbourhood.model_dataset(model, dataset)`` gives what to map.
    orientation : "detector" (patterns as recorded) or "canonical" (CNNs: every pattern rotated and
        centred by the scan's lattice so the crystal axes lie along the detector axes before the
        network sees it; a step of the network, so the checkpoint applies it at predict time too;
        all eight symmetries of the square then augment).
    schedule : learning-rate schedule of the CNNs: "cosine" (over the epochs), "plateau" (halved when
        the validation loss stalls) or "constant".
    keep : CNN weights kept: "last" (after the full schedule) or "best" (lowest validation loss, with
        early stopping). With ten validation patterns the validation loss is too noisy to choose by:
        on faint scans "best" kept weights from the first epochs and collapsed (``training``).
    semi_supervised : CNNs also learn from the scan's unlabelled patterns (pseudo-labels that agree
        under the physics-aware augmentation; ``al4dstem.models.semi``). Needs positions. Takes
        about twice as long.
    init : a model file whose CNN weights training starts from instead of random ones (typically
        ``al4dstem.models.pretrain``'s, trained on simulated patterns: ``al4dstem pretrain``); the same
        network with the same input size. Fine-tuning then trains them on the labels as usual.
        Baselines ignore it.
    device : where the CNNs train: "cpu", "cuda", "cuda:N" or "auto" (a GPU when torch sees one).
        Asking for a GPU torch cannot see is an ``Al4dstemError``. Augmentation stays on the CPU; the
        trained network comes back to the CPU (checkpoints, predict and the baselines are unchanged).

    Learned: ``network_`` (eval mode), ``network_name_`` (which network: with "auto", the kept
    one), ``preprocessing_``, ``detector_shape_``, ``classes_`` (always 0, 1, 2), ``history_``
    (one dict per epoch), ``summary_`` (training summary: selection scores, calibration,
    lattice, warnings).
    """

    def __init__(self, network="default", preprocessing=None, dataset=None, epochs=None, batch_size=32,
                 lr=None, weight_decay=2e-3, patience=None, augment=True, class_weight="balanced",
                 n_threads=None, random_state=0, verbose=False, symmetries="lattice", calibrate=True, cv=3,
                 neighbourhood=None, orientation="detector", schedule="cosine", keep="last", semi_supervised=False,
                 init=None, device="cpu"):
        self.network = network
        self.preprocessing = preprocessing
        self.dataset = dataset
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.augment = augment
        self.class_weight = class_weight
        self.n_threads = n_threads
        self.random_state = random_state
        self.verbose = verbose
        self.symmetries = symmetries
        self.calibrate = calibrate
        self.cv = cv
        self.neighbourhood = neighbourhood
        self.orientation = orientation
        self.schedule = schedule
        self.keep = keep
        self.semi_supervised = semi_supervised
        self.init = init
        self.device = device

    # ------------------------------------------------------------------ set-up
    def initialize(self, detector_shape) -> CNNClassifier:
        """Build ``network_``, ``preprocessing_`` and ``detector_shape_`` with untrained weights.

        ("auto" builds the default CNN until ``fit`` has chosen; a baseline's weights are zero.)
        """
        import torch

        if self.network not in CHOICES:
            raise Al4dstemError(f"unknown network {self.network!r} (one of {', '.join(CHOICES)})")
        if self.symmetries not in SYMMETRY_CHOICES:
            raise Al4dstemError(f"unknown symmetries {self.symmetries!r} (one of {', '.join(SYMMETRY_CHOICES)})")
        if self.orientation not in ORIENTATIONS:
            raise Al4dstemError(f"unknown orientation {self.orientation!r} (one of {', '.join(ORIENTATIONS)})")
        from al4dstem.models.neighbourhood import check_size

        name = "default" if self.network == "auto" else self.network
        self.neighbourhood_ = check_size(1 if self.neighbourhood is None else self.neighbourhood)
        self.detector_shape_ = tuple(int(s) for s in detector_shape)
        if len(self.detector_shape_) != 2 or min(self.detector_shape_) < 1:
            raise Al4dstemError(f"detector shape must be (rows, cols), got {detector_shape}")
        prep = self.preprocessing
        if isinstance(prep, dict):
            prep = Preprocessing.from_dict(prep)
        self.preprocessing_ = prep if prep is not None else default_preprocessing(name, self.detector_shape_)
        prep_size = self.preprocessing_.output_shape[0]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.random_state or 0))
            self.network_ = build_network(name, prep_size).eval()
        self.network_name_ = name
        self._load_initial_weights()
        self.classes_ = np.arange(N_CLASSES)
        self.history_ = []
        self.summary_ = {}
        self.label_counts_ = {}
        self._fast = None
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "network_")

    def _check_fitted(self) -> None:
        if not hasattr(self, "network_"):
            raise NotFittedError("this CNNClassifier is not trained yet: call fit (or load a model file)")

    def _dataset(self):
        if self.dataset is None:
            raise Al4dstemError("positions were given but the classifier has no dataset to read them from "
                                "(pass dataset=...)")
        if not hasattr(self, "_dataset_cache") or self._dataset_cache[0] is not self.dataset:
            self._dataset_cache = (self.dataset, open_dataset(self.dataset))
        return self._dataset_cache[1]

    def _source(self):
        """The dataset as the model sees it: pooled over ``neighbourhood_`` (cached)."""
        from al4dstem.models.neighbourhood import pooled

        raw = self._dataset()
        size = getattr(self, "neighbourhood_", 1)
        cache = getattr(self, "_source_cache", None)
        if cache is None or cache[0] is not raw or cache[1] != size:
            self._source_cache = (raw, size, pooled(raw, size))
        return self._source_cache[2]

    def check_compatible(self, dataset) -> None:
        """Refuse a dataset whose detector differs from the one the model was trained on."""
        self.trained_network().check_compatible(dataset)

    def _check_detector(self, shape, source: str) -> None:
        check_detector(self.detector_shape_, shape, source)

    # ------------------------------------------------------------------ input
    @staticmethod
    def _kind(X) -> tuple[str, np.ndarray]:
        """("positions", (n, 2) int64) or ("patterns", (n, rows, cols)) for any accepted ``X``."""
        if hasattr(X, "detector_shape") and hasattr(X, "get"):
            raise Al4dstemError("pass positions or patterns, not a whole dataset (use predict_dataset)")
        X = np.asarray(X)
        if X.ndim == 2 and X.shape[1] == 2:
            pos = X.astype(np.int64)
            if X.dtype.kind == "f" and not np.array_equal(pos, X):
                raise Al4dstemError("positions must be whole numbers (x, y)")
            return "positions", pos
        if X.ndim == 3:
            return "patterns", X
        raise Al4dstemError(f"expected positions (n, 2) or patterns (n, rows, cols), got an array of shape {X.shape}")

    def _chunks(self, X):
        """Yield ``(raw patterns, finite mask, positions or None)`` chunk by chunk."""
        kind, arr = self._kind(X)
        if kind == "positions":
            ds = self._source()
            self._check_detector(tuple(ds.detector_shape), ds.source)
            for i in range(0, len(arr), CHUNK):
                raw = ds.get(arr[i:i + CHUNK])
                yield raw, finite_mask(raw), arr[i:i + CHUNK]
        else:
            self._check_detector(tuple(arr.shape[1:]), "the given pattern batch")
            if getattr(self, "neighbourhood_", 1) > 1:
                raise Al4dstemError(f"this model pools {self.neighbourhood_} x {self.neighbourhood_} scan neighbours: "
                                    "pass scan positions (x, y), not pattern batches")
            for i in range(0, len(arr), CHUNK):
                raw = arr[i:i + CHUNK]
                yield raw, finite_mask(raw), None

    # ------------------------------------------------------------------ training
    def fit(self, X, y, progress: Progress | None = None) -> CNNClassifier:
        """Train on positions or patterns ``X`` with classes ``y`` (0 none, 1 vertical, 2 horizontal).

        ``progress(step, steps, record)`` is called after every epoch (and, with "auto", after every
        fold; ``record["stage"]`` then says what runs).
        """
        start = time.perf_counter()
        y = np.asarray(y).reshape(-1)
        if y.dtype.kind not in "iu" or (len(y) and (y.min() < 0 or y.max() >= N_CLASSES)):
            raise Al4dstemError(f"labels must be class indices 0..{N_CLASSES - 1} ({', '.join(CLASSES)})")
        kind, arr = self._kind(X)
        if len(arr) != len(y):
            raise Al4dstemError(f"{len(arr)} {kind} but {len(y)} labels")
        check_labels(y)
        if self.network not in CHOICES:
            raise Al4dstemError(f"unknown network {self.network!r} (one of {', '.join(CHOICES)})")
        self._check_params()
        if self.class_weight == "scan" and self.dataset is None:
            raise Al4dstemError('class_weight="scan" estimates the class shares of the scan: pass dataset=...')
        shape = self._dataset().detector_shape if kind == "positions" else arr.shape[1:]
        self._check_finite(kind, arr)
        learned = {k: v for k, v in vars(self).items() if k.endswith("_") or k == "_fast"}
        try:
            with torch_threads(self._threads()):
                if self.network == "auto":
                    from al4dstem.models.selection import fit_auto

                    fit_auto(self, X, y, shape, progress)
                else:
                    self.initialize(shape)
                    mean, lattice = self.scan_lattice(X)
                    x, counts = self._read_training_patterns(X)
                    if self.semi_supervised and self.network_name_ in CNN_NETWORKS:
                        from al4dstem.models.semi import fit_semi_supervised

                        if kind != "positions":
                            raise Al4dstemError("semi-supervised training learns from the scan's unlabelled "
                                                "patterns: pass scan positions (x, y), not pattern batches")
                        fit_semi_supervised(self, arr, y, x, counts, mean, lattice, progress)
                    else:
                        self._fit_arrays(x, y, counts, mean, lattice, progress, calibrate=bool(self.calibrate))
                if self.class_weight == "scan":
                    self.balance_to_scans()
        except BaseException:
            self._restore(learned)  # a refused or interrupted fit leaves a trained model as it was
            raise
        counts = np.bincount(y, minlength=N_CLASSES)
        self.label_counts_ = {name: int(c) for name, c in zip(CLASSES, counts, strict=True)}
        self.summary_ = {**self.summary_, "network": self.network_name_, "n_labels": int(len(y)),
                         "label_counts": self.label_counts_, "seconds": time.perf_counter() - start}
        for message in self.summary_.get("warnings", []):
            warnings.warn(message, CollapseWarning, stacklevel=2)
        self._fast = None
        return self

    # ------------------------------------------------------------------ the lattice
    def scan_lattice(self, X):
        """``(mean raw pattern, Lattice or None)`` of the scan ``X`` comes from (its dataset's mean
        pattern for positions, cached per dataset; the batch's mean for patterns)."""
        from al4dstem.models.features import find_scan_lattice, mean_raw_pattern

        kind, arr = self._kind(X)
        if kind == "positions":
            ds = self._dataset()
            try:
                cached = _LATTICES.get(ds)
            except TypeError:
                cached = None
            if cached is None:
                mean = mean_raw_pattern(ds)
                cached = (mean, find_scan_lattice(mean))
                with contextlib.suppress(TypeError):
                    _LATTICES[ds] = cached
            return cached
        mean = mean_raw_pattern(arr)
        return mean, find_scan_lattice(mean)

    def _symmetry_group(self, lattice):
        from al4dstem.models.augment import D4, ROTATIONS, lattice_symmetries

        if self._canonical_active():
            return lattice_symmetries(0.0)  # the network sees the lattice aligned with its axes
        if self.symmetries == "rotations":
            return ROTATIONS
        if self.symmetries == "aligned":
            return D4
        return lattice_symmetries(None if lattice is None else lattice.rotation)

    # ------------------------------------------------------------------ training
    def _fit_arrays(self, x: np.ndarray, y: np.ndarray, counts: bool, mean, lattice,
                    progress: Progress | None = None, calibrate: bool = True) -> None:
        """Fit ``network_`` (already initialised) on binned linear patterns ``x``; sets ``history_`` and
        ``summary_``. ``calibrate``: fit the temperature on held-out logits."""
        from al4dstem.models.features import lattice_dict

        info = {"lattice": lattice_dict(lattice)}
        if self.network_name_ in CNN_NETWORKS:
            info["orientation"] = self._orient_network(lattice)
            if self.init is not None:
                info["initial_weights"] = str(self.init)
        group = self._symmetry_group(lattice)
        info["n_symmetries"] = len(group)
        if self.network_name_ in CNN_NETWORKS:
            result, heldout = self._train(x, y, counts, progress, group)
            self.history_ = result.history
            self.summary_ = {**result.summary(), **info}
        else:
            heldout = self._fit_baseline(x, y, mean, lattice, group, calibrate)
            self.history_ = []
            self.summary_ = {**info, "warnings": []}
            message = collapse_message(self.predict_binned(x).argmax(1), y)
            if message is not None:
                self.summary_["warnings"].append(message)
        if calibrate and heldout is not None:
            self.set_calibration(*heldout)

    def _canonical_active(self) -> bool:
        canonical = getattr(getattr(self, "network_", None), "canonical", None)
        return bool(getattr(canonical, "active", False))

    def _orient_network(self, lattice) -> str:
        """With ``orientation="canonical"``, rebuild ``network_`` (untrained) so that it resamples its
        inputs into the lattice's frame; returns what the network sees."""
        import torch

        if self.orientation != "canonical":
            return "detector"
        if lattice is None:
            return "detector (no lattice found in the mean pattern to orient by)"
        from al4dstem.models.features import lattice_on_grid

        grid = lattice_on_grid(lattice, self.detector_shape_, self.preprocessing_)
        config = {k: v for k, v in network_config(self.network_).items() if k != "orient"}
        config["orient"] = {"rotation": float(grid.rotation), "centre": [float(c) for c in grid.centre]}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.random_state or 0))
            self.network_ = build_network(self.network_name_, **config).eval()
        self._load_initial_weights()
        self._fast = None
        return f"canonical (lattice at {grid.rotation:.1f} degrees turned onto the detector axes)"

    def _load_initial_weights(self) -> None:
        """With ``init``, put that model file's weights into ``network_`` (a CNN, untrained)."""
        if self.init is None or self.network_name_ not in CNN_NETWORKS:
            return
        from al4dstem.models.pretrain import initial_weights

        initial_weights(self.init, self.network_name_, self.network_)

    def balance_to_scans(self, datasets=None) -> dict:
        """Offset the logits so the classes count equally over the scans' own class shares.

        The shares are the model's mean probabilities over a regular grid of at most
        ``SHARE_POSITIONS`` positions per scan (``datasets``; None: the classifier's own), with the
        offset at zero; the offsets are ``-log(share)``, centred. A model fitted without class
        weights on labels chosen by position (any sampler: it picks positions, never classes)
        estimates the class probabilities under the scan's class mix; the offsets turn them into
        those under equal shares, which is what "balanced" weighting aims at with the label counts.
        Returns the record also kept in ``summary_["class_shares"]``.
        """
        from al4dstem.models.neighbourhood import pooled

        self._check_fitted()
        set_class_bias(self.network_, None)
        self._fast = None
        size = getattr(self, "neighbourhood_", 1)
        sources = [self._source()] if datasets is None else [pooled(open_dataset(d), size) for d in datasets]
        light = self.trained_network()
        total, n = np.zeros(N_CLASSES), 0
        with torch_threads(self._threads()):
            for source in sources:  # each scan as the model sees it (pooled over its neighbourhood)
                positions = share_grid(source.scan_shape, SHARE_POSITIONS)
                for i in range(0, len(positions), CHUNK):
                    probs, ok = light.classify(source.get(positions[i:i + CHUNK]))
                    total += probs[ok].sum(axis=0)
                    n += int(ok.sum())
        if n == 0:
            raise Al4dstemError("no classifiable pattern to estimate the scan's class shares from")
        shares = np.maximum(total / n, MIN_SHARE)
        shares /= shares.sum()
        bias = -np.log(shares)
        bias -= bias.mean()
        set_class_bias(self.network_, bias.tolist())
        self._fast = None
        record = {"shares": dict(zip(CLASSES, shares.round(4).tolist(), strict=True)), "positions": n,
                  "bias": bias.round(4).tolist()}
        self.summary_ = {**getattr(self, "summary_", {}), "class_shares": record}
        return record

    def set_calibration(self, logits: np.ndarray, y: np.ndarray) -> dict:
        """Fit the temperature on held-out ``logits`` (at temperature 1) and classes ``y``; records the
        ECE before and after in ``summary_["calibration"]``."""
        from al4dstem.models.calibration import calibration_report, fit_temperature

        t = fit_temperature(logits, y)
        set_temperature(self.network_, t)
        self._fast = None
        report = calibration_report(logits, y, t)
        self.summary_ = {**getattr(self, "summary_", {}), "calibration": report}
        return report

    def _train(self, x: np.ndarray, y: np.ndarray, counts: bool, progress: Progress | None, group, split=None,
               epochs=None):
        import torch

        lr = LEARNING_RATES[self.network_name_] if self.lr is None else float(self.lr)
        from al4dstem.engines.device import resolve_device

        config = TrainConfig(epochs=self.epochs if epochs is None else epochs, batch_size=self.batch_size, lr=lr,
                             weight_decay=self.weight_decay, patience=self.patience, augment=self.augment,
                             class_weight=self.class_weight, seed=int(self.random_state or 0), symmetries=group,
                             schedule=self.schedule, keep=self.keep, split=split,
                             device=_gpu_or_none(resolve_device(self.device)))
        log = (lambda line: print(line, file=sys.stderr)) if self.verbose else None
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore", CollapseWarning)  # fit warns once, for whichever model is kept
            torch.manual_seed(int(self.random_state or 0))
            finish = self._finish()
            result = train_network(self.network_, x, y, config, finish, counts=counts, progress=progress, log=log)
        return result, result.heldout

    def _threads(self) -> int:
        from al4dstem.engines.local import default_threads

        return int(self.n_threads) if self.n_threads is not None else default_threads()[0]

    def _finish(self) -> Finish:
        return Finish(self.preprocessing_.scaling, self.preprocessing_.normalise)

    def _inputs(self, x: np.ndarray) -> np.ndarray:
        """Network inputs ``(n, size, size)`` float32 from binned linear patterns."""
        import torch

        return self._finish()(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    def predict_binned(self, x: np.ndarray, temperature: bool = True) -> np.ndarray:
        """Logits ``(n, 3)`` of ``network_`` for binned linear patterns (divided by the temperature or not)."""
        import torch

        net = self.network_.eval()
        t = getattr(net, "temperature", 1.0) if not temperature else 1.0
        bias = getattr(net, "class_bias", None)
        bias = np.zeros(N_CLASSES, np.float32) if temperature or bias is None else bias.cpu().numpy()
        with torch.inference_mode():
            out = [(net(torch.from_numpy(self._inputs(x[i:i + CHUNK]))[:, None]).numpy() - bias) * t
                   for i in range(0, len(x), CHUNK)]
        return np.concatenate(out) if out else np.empty((0, N_CLASSES), np.float32)

    def _fit_baseline(self, x, y, mean, lattice, group, heldout: bool):
        """Fit a baseline on binned linear patterns; returns held-out ``(logits, y)`` from its own
        cross-validation (or None)."""
        fit = self._baseline_fitter(mean, lattice, group)
        inputs = x if self.network_name_ == "ghost" else self._inputs(x)
        self.network_ = fit(inputs, y)
        if not heldout:
            return None
        return oof_logits(fit, inputs, y, HELDOUT_FOLDS, int(self.random_state or 0))

    def _baseline_fitter(self, mean, lattice, group):
        """``fit(inputs, y) -> module`` for this baseline (inputs: its network inputs)."""
        from al4dstem.models import baselines
        from al4dstem.models.features import ghost_masks, lattice_dict

        seed = int(self.random_state or 0)
        if self.network_name_ == "ghost":
            if lattice is None:
                raise Al4dstemError("the ghost model needs the scan's lattice, and no lattice of Bragg disks was "
                                    "found in the mean pattern: use a CNN (--network default)")
            masks = ghost_masks(lattice, mean, self.detector_shape_, self.preprocessing_)
            info = lattice_dict(lattice)
            return lambda inputs, y: baselines.fit_ghost(inputs, y, masks, info, seed)
        if self.network_name_ == "softmax":
            return lambda inputs, y: baselines.fit_softmax(inputs, y, group, seed)
        return lambda inputs, y: baselines.fit_knn(inputs, y, group, seed)

    def _restore(self, learned: dict) -> None:
        for k in [k for k in vars(self) if k.endswith("_") or k == "_fast"]:
            delattr(self, k)
        vars(self).update(learned)

    def _check_params(self) -> None:
        """Refuse a bad setting before any work (with "auto" it would otherwise only skip every candidate)."""
        from al4dstem.models.neighbourhood import check_size
        from al4dstem.models.training import KEEPS, SCHEDULES

        if self.neighbourhood is not None:
            check_size(self.neighbourhood)
        from al4dstem.engines.device import resolve_device

        resolve_device(self.device)  # a GPU asked for and not there: said now, not after the baselines
        if self.init is not None:  # an unreadable or mismatched file: said before any training
            from al4dstem.models.pretrain import initial_weights

            network = "default" if self.network == "auto" else self.network
            if network in CNN_NETWORKS:
                initial_weights(self.init, network)
        if self.class_weight not in CLASS_WEIGHTS:
            raise Al4dstemError(f"unknown class weighting {self.class_weight!r} (balanced, scan or none)")
        for name, value, choices in (("symmetries", self.symmetries, SYMMETRY_CHOICES),
                                     ("orientation", self.orientation, ORIENTATIONS),
                                     ("schedule", self.schedule, SCHEDULES), ("keep", self.keep, KEEPS)):
            if value not in choices:
                raise Al4dstemError(f"unknown {name} {value!r} (one of {', '.join(choices)})")

    def _check_finite(self, kind: str, arr: np.ndarray) -> None:
        """Refuse labelled patterns holding NaN or inf, as read from the data (before any pooling:
        a pooled model would otherwise learn a broken pattern's neighbours under its label)."""
        bad_pos, bad_idx = [], []
        for i in range(0, len(arr), CHUNK):
            if kind == "positions":
                raw = self._dataset().get(arr[i:i + CHUNK])
            else:
                raw = arr[i:i + CHUNK]
            ok = finite_mask(raw)
            if kind == "positions":
                bad_pos.extend(arr[i:i + CHUNK][~ok].tolist())
            bad_idx.extend((i + np.flatnonzero(~ok)).tolist())
        if bad_idx:
            raise _nonfinite_error(bad_pos, bad_idx)

    def _read_training_patterns(self, X) -> tuple[np.ndarray, bool]:
        """The labelled patterns, read and binned once (linear, for augmentation), and whether
        they are counts (integer data). NaN/inf patterns are an error that names them."""
        binning = dataclasses.replace(self.preprocessing_, scaling="linear", normalise="none")
        parts, bad_pos, bad_idx, offset, counts = [], [], [], 0, True
        for raw, ok, pos in self._chunks(X):
            counts = counts and raw.dtype.kind in "ui"
            if not ok.all():
                if pos is not None:
                    bad_pos.extend(pos[~ok].tolist())
                bad_idx.extend((offset + np.flatnonzero(~ok)).tolist())
            parts.append(binning(raw))
            offset += len(raw)
        if bad_idx:
            raise _nonfinite_error(bad_pos, bad_idx)
        return np.concatenate(parts), counts

    # ------------------------------------------------------------------ inference
    def forward_preprocessed(self, x: np.ndarray) -> np.ndarray:
        """Softmax probabilities ``(n, 3)`` float32 for preprocessed patterns ``(n, size, size)``."""
        return self.trained_network().forward_preprocessed(x)

    def trained_network(self) -> TrainedNetwork:
        """The light inference object (``models.trained``) of the current weights: what ``predict`` loads
        from a checkpoint, so both classify with the same code. Rebuilt when the weights or the
        temperature change."""
        self._check_fitted()
        state = (float(getattr(self.network_, "temperature", 1.0)), self.network_.config.get("class_bias"),
                 self.preprocessing_, tuple(self.detector_shape_))
        cached = getattr(self, "_fast", None)
        if cached is None or cached[0] is not self.network_ or cached[1] != state:
            light = TrainedNetwork(self.network_name_, self.network_, self.preprocessing_, self.detector_shape_, {})
            self._fast = (self.network_, state, light)
        return self._fast[2]

    def predict_proba(self, X) -> np.ndarray:
        """``(n, 3)`` probabilities (none, vertical, horizontal) for positions or raw patterns.

        A pattern holding NaN or inf is not classifiable: its row is NaN.
        """
        self._check_fitted()
        parts = []
        with torch_threads(self._threads()):
            for raw, ok, _ in self._chunks(X):
                p = self.forward_preprocessed(self.preprocessing_(raw))
                p[~ok] = np.nan
                parts.append(p)
        return np.concatenate(parts) if parts else np.empty((0, N_CLASSES), np.float32)

    def predict(self, X) -> np.ndarray:
        """Class indices; -1 where the pattern is not classifiable (NaN or inf)."""
        p = self.predict_proba(X)
        ok = np.isfinite(p).all(axis=1)
        out = np.full(len(p), -1, dtype=np.int64)
        out[ok] = self.classes_[np.argmax(p[ok], axis=1)]
        return out

    # ------------------------------------------------------------------ files
    def save(self, path) -> None:
        """Write one checkpoint file (see ``al4dstem.models.checkpoint``)."""
        self._check_fitted()
        params = {k: getattr(self, k) for k in _STORED_PARAMS}
        params["neighbourhood"] = int(getattr(self, "neighbourhood_", 1))  # what the model needs, "auto" resolved
        checkpoint.write_checkpoint(path, {
            "network": self.network_name_,
            "network_config": network_config(self.network_),
            "state_dict": self.network_.state_dict(),
            "preprocessing": _plain(self.preprocessing_.to_dict()),
            "classes": list(CLASSES),
            "detector_shape": list(self.detector_shape_),
            "label_counts": dict(self.label_counts_),
            "n_labels": int(sum(self.label_counts_.values())),
            "params": _plain(params),
            "training": _plain(self.summary_),
            "history": _plain(self.history_),
        })

    @classmethod
    def load(cls, path, dataset=None) -> CNNClassifier:
        """A trained classifier from a checkpoint file; ``dataset`` is where positions are read."""
        trained = TrainedNetwork.load(path)
        payload = trained.payload
        params = {k: v for k, v in payload.get("params", {}).items() if k in _STORED_PARAMS}
        try:
            model = cls(network=trained.name, preprocessing=trained.preprocessing_, dataset=dataset, **params)
        except TypeError as e:
            raise Al4dstemError(f"{path}: damaged al4dstem model ({e})") from None
        model.network_ = trained.network_
        model.network_name_ = trained.name
        from al4dstem.models.neighbourhood import model_neighbourhood

        try:
            model.neighbourhood_ = model_neighbourhood(trained)
        except Al4dstemError as e:
            raise Al4dstemError(f"{path}: damaged al4dstem model ({e})") from None
        model.preprocessing_ = trained.preprocessing_
        model.detector_shape_ = trained.detector_shape_
        model.classes_ = np.arange(N_CLASSES)
        model.label_counts_ = dict(payload.get("label_counts", {}))
        model.summary_ = dict(payload.get("training", {}))
        model.history_ = list(payload.get("history", []))
        model.versions_ = dict(payload.get("versions", {}))
        model._fast = None
        return model


def _gpu_or_none(device):
    """``device`` when it is a GPU, else None (training on the CPU moves nothing)."""
    return device if device.type != "cpu" else None


def _nonfinite_error(bad_pos: list, bad_idx: list) -> Al4dstemError:
    where = (f"at {_describe(np.array(bad_pos))}" if bad_pos
             else f"number {', '.join(str(i) for i in bad_idx[:5])}" + (" ..." if len(bad_idx) > 5 else ""))
    return Al4dstemError(f"{len(bad_idx)} labelled pattern(s) {where} contain NaN or inf and cannot be "
                         "learned: remove those labels or repair the data")


def oof_logits(fit, inputs: np.ndarray, y: np.ndarray, folds: int, seed: int):
    """Out-of-fold logits ``(logits, y)`` of ``fit(inputs, y) -> module`` (temperature 1), or None when
    the labels are too few to hold any out."""
    import torch

    splits = cv_splits(y, folds, seed)
    if not splits:
        return None
    logits = np.full((len(y), N_CLASSES), np.nan, np.float32)
    for train, test in splits:
        try:
            net = fit(inputs[train], y[train])
        except (Al4dstemError, ValueError):
            continue
        with torch.inference_mode():
            logits[test] = net(torch.from_numpy(np.ascontiguousarray(inputs[test], dtype=np.float32))[:, None]).numpy()
    ok = np.isfinite(logits).all(axis=1)
    return (logits[ok], y[ok]) if ok.sum() >= 2 else None


def cv_splits(y: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified ``(train, test)`` index pairs, deterministic for a seed; [] when too few labels
    (fewer than two per fold). Every training part holds at least two classes or is left out."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y)
    folds = int(min(folds, len(y) // 2))
    if folds < 2:
        return []
    counts = np.bincount(y, minlength=N_CLASSES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a class with fewer labels than folds: sklearn warns, still splits
        if counts[counts > 0].min() < folds:
            from sklearn.model_selection import KFold

            splitter = KFold(folds, shuffle=True, random_state=seed)
        else:
            splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
        pairs = list(splitter.split(np.zeros(len(y)), y))
    return [(tr, te) for tr, te in pairs if len(np.unique(y[tr])) >= 2]


def _plain(obj):
    """Numbers, strings, lists and dicts only (what ``torch.load(weights_only=True)`` reads back)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


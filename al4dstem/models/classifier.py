"""``CNNClassifier``: the CNN behind the scikit-learn-style ``Model`` contract.

``X`` is either scan positions ``(n, 2)`` as (x, y), whose patterns are read lazily from the
classifier's ``dataset``, or raw patterns ``(n, det_rows, det_cols)``. Either way patterns are
read once and preprocessed once per call, in chunks, so memory stays bounded. modAL's query
functions and ``ActiveLearner`` drive it like any scikit-learn classifier.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time

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
    INPUT_SIZES,
    LEARNING_RATES,
    NETWORKS,
    build_network,
    inference_network,
    network_config,
)
from al4dstem.models.trained import TrainedNetwork, check_detector, forward
from al4dstem.models.training import Progress, TrainConfig, check_labels, train_network

CHUNK = 256  # patterns read and preprocessed at a time (bounded memory for any number of positions)
N_CLASSES = len(CLASSES)
# hyper-parameters a checkpoint keeps (dataset and preprocessing are stored their own way)
# (run-time settings such as verbose and n_threads belong to the machine and run, not the model)
_STORED_PARAMS = ("epochs", "batch_size", "lr", "weight_decay", "patience", "augment", "class_weight",
                  "random_state")


def default_preprocessing(network: str, detector_shape) -> Preprocessing:
    """The preprocessing a network is designed for, made no larger than the detector.

    log scaling (counts span decades; ghosts are 1e-3..5e-2 of the main disks) and per-pattern
    max normalisation, binned to the network's input size (64 for ``default``, 256 for ``paper`` as in
    the paper). At 64 pixels the half-order spacing of a 256 or 512 detector's pattern is still
    ~4.6 pixels and a ghost disk ~2 pixels across: resolved (``benchmarks/bench_accuracy.py
    --size`` compares input sizes).
    """
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


def _describe(positions: np.ndarray, limit: int = 5) -> str:
    shown = "; ".join(f"x={x}, y={y}" for x, y in positions[:limit])
    more = f" and {len(positions) - limit} more" if len(positions) > limit else ""
    return shown + more


class CNNClassifier(ClassifierMixin, BaseEstimator, Model):
    """A small CNN classifying diffraction patterns into none / vertical / horizontal.

    Parameters
    ----------
    network : "default" (fast, few parameters) or "paper" (the paper's network).
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
    class_weight : "balanced" or None.
    n_threads : torch threads while fitting and predicting (None: leave torch's setting).
    random_state : seed of the initial weights, the split, the shuffling and the augmentation.
    verbose : print one line per epoch to stderr.

    Learned: ``network_`` (eval mode), ``preprocessing_``, ``detector_shape_``, ``classes_``
    (always 0, 1, 2), ``history_`` (one dict per epoch), ``summary_`` (training summary).
    """

    def __init__(self, network="default", preprocessing=None, dataset=None, epochs=None, batch_size=32,
                 lr=None, weight_decay=2e-3, patience=None, augment=True, class_weight="balanced",
                 n_threads=None, random_state=0, verbose=False):
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

    # ------------------------------------------------------------------ set-up
    def initialize(self, detector_shape) -> CNNClassifier:
        """Build ``network_``, ``preprocessing_`` and ``detector_shape_`` with untrained weights."""
        import torch

        if self.network not in NETWORKS:
            raise Al4dstemError(f"unknown network {self.network!r} (one of {', '.join(NETWORKS)})")
        self.detector_shape_ = tuple(int(s) for s in detector_shape)
        if len(self.detector_shape_) != 2 or min(self.detector_shape_) < 1:
            raise Al4dstemError(f"detector shape must be (rows, cols), got {detector_shape}")
        prep = self.preprocessing
        if isinstance(prep, dict):
            prep = Preprocessing.from_dict(prep)
        self.preprocessing_ = prep if prep is not None else default_preprocessing(self.network, self.detector_shape_)
        prep_size = self.preprocessing_.output_shape[0]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.random_state or 0))
            self.network_ = build_network(self.network, prep_size).eval()
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

    def check_compatible(self, dataset) -> None:
        """Refuse a dataset whose detector differs from the one the model was trained on."""
        self._check_fitted()
        ds = open_dataset(dataset)
        self._check_detector(tuple(ds.detector_shape), ds.source)

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
            ds = self._dataset()
            self._check_detector(tuple(ds.detector_shape), ds.source)
            for i in range(0, len(arr), CHUNK):
                raw = ds.get(arr[i:i + CHUNK])
                yield raw, finite_mask(raw), arr[i:i + CHUNK]
        else:
            self._check_detector(tuple(arr.shape[1:]), "the given pattern batch")
            for i in range(0, len(arr), CHUNK):
                raw = arr[i:i + CHUNK]
                yield raw, finite_mask(raw), None

    # ------------------------------------------------------------------ training
    def fit(self, X, y, progress: Progress | None = None) -> CNNClassifier:
        """Train on positions or patterns ``X`` with classes ``y`` (0 none, 1 vertical, 2 horizontal).

        ``progress(epoch, max_epochs, record)`` is called after every epoch.
        """
        start = time.perf_counter()
        y = np.asarray(y).reshape(-1)
        if y.dtype.kind not in "iu" or (len(y) and (y.min() < 0 or y.max() >= N_CLASSES)):
            raise Al4dstemError(f"labels must be class indices 0..{N_CLASSES - 1} ({', '.join(CLASSES)})")
        kind, arr = self._kind(X)
        if len(arr) != len(y):
            raise Al4dstemError(f"{len(arr)} {kind} but {len(y)} labels")
        check_labels(y)
        shape = self._dataset().detector_shape if kind == "positions" else arr.shape[1:]
        learned = {k: v for k, v in vars(self).items() if k.endswith("_") or k == "_fast"}
        try:
            self.initialize(shape)
            x, counts = self._read_training_patterns(X)
            result = self._train(x, y, counts, progress)
        except BaseException:
            self._restore(learned)  # a refused or interrupted fit leaves a trained model as it was
            raise
        counts = np.bincount(y, minlength=N_CLASSES)
        self.label_counts_ = {name: int(c) for name, c in zip(CLASSES, counts, strict=True)}
        self.history_ = result.history
        self.summary_ = {**result.summary(), "n_labels": int(len(y)), "label_counts": self.label_counts_,
                         "seconds": time.perf_counter() - start}
        self._fast = None
        return self

    def _train(self, x: np.ndarray, y: np.ndarray, counts: bool, progress: Progress | None):
        import torch

        lr = LEARNING_RATES[self.network] if self.lr is None else float(self.lr)
        config = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=lr,
                             weight_decay=self.weight_decay, patience=self.patience, augment=self.augment,
                             class_weight=self.class_weight, seed=int(self.random_state or 0))
        log = (lambda line: print(line, file=sys.stderr)) if self.verbose else None
        with torch_threads(self.n_threads), torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(self.random_state or 0))
            finish = Finish(self.preprocessing_.scaling, self.preprocessing_.normalise)
            return train_network(self.network_, x, y, config, finish, counts=counts, progress=progress, log=log)

    def _restore(self, learned: dict) -> None:
        for k in [k for k in vars(self) if k.endswith("_") or k == "_fast"]:
            delattr(self, k)
        vars(self).update(learned)

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
            where = (f"at {_describe(np.array(bad_pos))}" if bad_pos
                     else f"number {', '.join(str(i) for i in bad_idx[:5])}" + (" ..." if len(bad_idx) > 5 else ""))
            raise Al4dstemError(f"{len(bad_idx)} labelled pattern(s) {where} contain NaN or inf and cannot be "
                                "learned: remove those labels or repair the data")
        return np.concatenate(parts), counts

    # ------------------------------------------------------------------ inference
    def forward_preprocessed(self, x: np.ndarray) -> np.ndarray:
        """Softmax probabilities ``(n, 3)`` float32 for preprocessed patterns ``(n, size, size)``."""
        self._check_fitted()
        return forward(self._fast_network(), x, self.preprocessing_.output_shape)

    def _fast_network(self):
        if getattr(self, "_fast", None) is None or self._fast[0] is not self.network_:
            self._fast = (self.network_, inference_network(self.network_))
        return self._fast[1]

    def predict_proba(self, X) -> np.ndarray:
        """``(n, 3)`` probabilities (none, vertical, horizontal) for positions or raw patterns.

        A pattern holding NaN or inf is not classifiable: its row is NaN.
        """
        self._check_fitted()
        parts = []
        with torch_threads(self.n_threads):
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
        checkpoint.write_checkpoint(path, {
            "network": self.network,
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
        model.preprocessing_ = trained.preprocessing_
        model.detector_shape_ = trained.detector_shape_
        model.classes_ = np.arange(N_CLASSES)
        model.label_counts_ = dict(payload.get("label_counts", {}))
        model.summary_ = dict(payload.get("training", {}))
        model.history_ = list(payload.get("history", []))
        model.versions_ = dict(payload.get("versions", {}))
        model._fast = None
        return model


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


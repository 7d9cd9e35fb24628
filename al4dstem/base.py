"""The three contracts: Sampler, Oracle, Model (the labelling loop uses nothing else), and the
inference seam: ``PatternModel`` (what an engine needs from a model) and ``Engine`` (what an
engine is). See docs/design.md.

They follow scikit-learn habits: hyper-parameters and ``random_state`` are stored in
``__init__`` unchanged (no logic there), learned attributes end in ``_``, ``fit`` returns self.
Positions are ``(x, y)`` = (scan column, scan row), 0-based; classes are indices into
``al4dstem.labels.CLASSES`` (0 none, 1 vertical, 2 horizontal).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

SKIP = "skip"  # an oracle's answer for "I can't tell": remembered, never learned
UNDO = "undo"  # an answer that takes back the last live answer (a retraction row in the store)


class QuitLabelling(Exception):
    """Raised by an oracle when the person quits (q, Ctrl-C, a closed terminal or page).

    Every answer yielded before it is already on disk: quitting loses nothing.
    """

    def __init__(self, message: str = "labelling stopped by the user"):
        super().__init__(message)


@dataclass(frozen=True)
class Answer:
    """One answer: ``label`` is a class index, ``SKIP`` or ``UNDO`` for position ``(x, y)``.

    An answer may name any unanswered position of the scan, not only one the oracle was
    asked about (a person clicking on the scan map). ``UNDO`` ignores the position: it takes
    back the last live answer. ``source`` tags the store's ``source`` column (None: the
    oracle's own ``source``).
    """

    x: int
    y: int
    label: int | str
    source: str | None = None


@dataclass
class QueryContext:
    """What a sampler may look at when choosing positions.

    ``candidates`` are the positions it may propose: inside the scan, not labelled, not
    skipped, not pending. ``labelled_positions``/``labelled_classes`` are the confirmed
    labels so far (skips left out), in the order they were given.
    """

    scan_shape: tuple[int, int]  # (rows, cols)
    candidates: np.ndarray  # (m, 2) int64, (x, y)
    labelled_positions: np.ndarray = field(default_factory=lambda: np.empty((0, 2), np.int64))
    labelled_classes: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    budget: int | None = None  # total labels the run aims for (some samplers plan with it)
    model: Any = None  # a fitted Model, or None
    dataset: Any = None  # the al4dstem Dataset, or None


class Sampler(ABC):
    """Chooses which scan positions to label next."""

    #: True when ``query`` needs a fitted model in ``context.model``.
    needs_model: bool = False

    @abstractmethod
    def query(self, context: QueryContext, n: int) -> np.ndarray:
        """Indices into ``context.candidates`` of at most ``n`` distinct positions to label.

        An empty result means the sampler has nothing more to propose. Deterministic for a
        given ``random_state`` and context.
        """


class Oracle(ABC):
    """Answers which class a pattern belongs to, one answer at a time."""

    #: what the label store's ``source`` column records for this oracle's answers
    source: str = "oracle"

    @abstractmethod
    def answers(self, positions: np.ndarray, session) -> Iterator[Answer]:
        """Yield one ``Answer`` at a time for the ``(n, 2)`` positions ``(x, y)`` asked.

        The caller records each answer durably (on disk, fsynced) before it asks the
        generator for the next one, so an oracle that shows the next pattern after a
        ``yield`` shows it only once the previous answer is safe. ``session`` is the
        ``al4dstem.session.LabellingSession`` (read it, don't change it): dataset, labels so
        far, examples per class, the model's guess, progress.

        Stopping early leaves the remaining positions unanswered (they stay candidates);
        yielding ``UNDO`` ends the round once recorded. Raise ``QuitLabelling`` to stop.
        """


class Model(ABC):
    """A scikit-learn-style classifier over scan positions or pattern batches.

    ``X`` is either positions ``(n, 2)`` (patterns read lazily from the model's dataset)
    or patterns ``(n, det_rows, det_cols)``. modAL's query functions drive it as they would
    any scikit-learn classifier.
    """

    classes_: np.ndarray

    @abstractmethod
    def fit(self, X, y) -> Model:
        """Learn from labelled examples; returns self."""

    @abstractmethod
    def predict_proba(self, X) -> np.ndarray:
        """``(n, n_classes)`` probabilities in the order of ``classes_``."""

    def predict(self, X) -> np.ndarray:
        return np.asarray(self.classes_)[np.argmax(self.predict_proba(X), axis=1)]


# ---------------------------------------------------------------- the inference seam


@runtime_checkable
class PatternModel(Protocol):
    """What an inference engine needs from a model: the preprocessing and a batch classifier.

    ``classify`` owns the rules every engine must apply the same way: a pattern holding NaN or
    inf is not classifiable (``ok`` False, its probability row NaN), nor is one whose network
    output is not finite; the batch is split into network calls of a size the model chooses.
    ``classify_preprocessed`` is its second half, for engines that preprocess on another
    thread or process than the network runs on. ``al4dstem.models.trained.TrainedNetwork``
    implements it; ``al4dstem.models.trained.as_pattern_model`` adapts any fitted model with
    ``preprocessing_`` and ``forward_preprocessed``.
    """

    preprocessing_: Any  # al4dstem.data.Preprocessing: raw (n, det_rows, det_cols) -> network input
    detector_shape_: tuple[int, int]

    def check_compatible(self, dataset) -> None:
        """Raise ``Al4dstemError`` (one line) if ``dataset`` has another detector shape than the model's."""

    def classify(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(probs, ok)`` for raw patterns ``(n, det_rows, det_cols)``: float32 ``(n, 3)``
        (NaN rows where not ``ok``) and bool ``(n,)``."""

    def classify_preprocessed(self, x: np.ndarray, ok: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``classify`` from already preprocessed patterns and their finite mask (``finite_mask(raw)``)."""


class Engine(Protocol):
    """An inference engine: streams a whole scan through a ``PatternModel`` into a probability map.

    Engines are plain functions registered by name (``al4dstem.engines.get_engine``; the
    ``al4dstem.engines`` entry-point group for other packages). Each takes its own keyword
    options (threads, workers, a scheduler address, a device) after these.
    """

    def __call__(self, model: PatternModel, dataset, *, batch_size: int = 256, progress=None,
                 **options) -> tuple[np.ndarray, np.ndarray]:
        """``(probs, valid)``: float32 ``(rows, cols, 3)`` in class order with NaN rows where not
        valid, and bool ``(rows, cols)``. ``progress(done, total)`` is called as positions finish.
        Equal, within float rounding (max abs difference 1e-4), to ``model.classify`` of every pattern."""

"""The three contracts: Sampler, Oracle, Model. The labelling loop uses nothing else.

They follow scikit-learn habits: hyper-parameters and ``random_state`` are stored in
``__init__`` unchanged (no logic there), learned attributes end in ``_``, ``fit`` returns self.
Positions are ``(x, y)`` = (scan column, scan row), 0-based; classes are indices into
``al4dstem.labels.CLASSES`` (0 none, 1 vertical, 2 horizontal).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

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

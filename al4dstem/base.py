"""The three contracts: Sampler, Oracle, Model. The labelling loop uses nothing else.

They follow scikit-learn habits: hyper-parameters and ``random_state`` are stored in
``__init__`` unchanged (no logic there), learned attributes end in ``_``, ``fit`` returns self.
Positions are ``(x, y)`` = (scan column, scan row), 0-based; classes are indices into
``al4dstem.labels.CLASSES`` (0 none, 1 vertical, 2 horizontal).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SKIP = "skip"  # an oracle's answer for "I can't tell": remembered, never learned
UNDO = "undo"  # a terminal oracle's answer: take back the last confirmed label


class QuitLabelling(Exception):
    """Raised by an oracle when the person quits (q or Ctrl-C).

    ``answers`` holds the answers given before quitting, for the first positions asked.
    """

    def __init__(self, answers=()):
        super().__init__("labelling stopped by the user")
        self.answers = list(answers)


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
    """Answers which class a pattern belongs to."""

    #: what the label store's ``source`` column records for this oracle's answers
    source: str = "oracle"
    #: set by ``label`` when some answers need another tag (e.g. "truth-nearest"), one per answer
    last_sources: list[str] | None = None

    def observe(self, context: QueryContext) -> None:  # noqa: B027 (an optional hook)
        """Told what the loop knows before each ``label`` call (labels so far, budget, model).

        Optional: an oracle that shows a person the context uses it, others ignore it.
        """

    @abstractmethod
    def label(self, positions: np.ndarray, dataset) -> list:
        """Answers in order, one per position: a class index, ``SKIP``, or (terminal) ``UNDO``.

        A shorter list leaves the remaining positions unanswered (they stay candidates).
        ``UNDO`` takes back the last answer recorded and ends the list. To stop the session
        it raises ``QuitLabelling(answers_so_far)``.
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

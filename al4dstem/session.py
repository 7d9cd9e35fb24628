"""One labelling session, whatever shows it: the terminal, a browser page, or no one at all.

A ``LabellingSession`` owns what a labelling run knows: the label store (its whole memory),
the sampler's queue for the current round, the examples of each class, the model and its
guess, progress, and retraining. Views (the terminal oracle, the browser page, a notebook)
read its state and hand it answers; ``al4dstem.loop.run_labelling`` drives it with any
``Oracle``. Every answer goes to the store (appended, fsynced) inside ``record`` before
``record`` returns, so whatever asks the next question asks it after the last answer is safe.

State changes happen under ``lock`` (views may live in other threads, e.g. a web server);
``version`` grows by one at every change, so a view can poll for news cheaply.
"""

from __future__ import annotations

import copy
import signal
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from al4dstem.base import SKIP, UNDO, Answer, QueryContext, Sampler
from al4dstem.errors import Al4dstemError
from al4dstem.labels import CLASSES, LabelStore
from al4dstem.provenance import describe_sampler

MODEL_ROUND = 10  # labels per round when a model is retrained between rounds
PATTERN_CACHE = 64  # patterns kept in memory for the views (current, examples, gallery)
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@dataclass
class LabellingResult:
    """What a labelling run did. ``stopped`` is "budget", "exhausted" (the sampler had
    nothing left to propose) or "quit"; counts of this run and totals of the file.
    ``exit_code`` is 0, or the shell's code for the signal that stopped the run (130 Ctrl-C)."""

    stopped: str
    labelled: int  # confirmed labels in the file at the end
    added: int = 0  # confirmed labels recorded by this run
    skipped: int = 0  # skips recorded by this run
    undone: int = 0
    rounds: int = 0
    per_class: dict[str, int] = field(default_factory=dict)  # totals in the file
    skips: int = 0  # skip rows in the file
    exit_code: int = 0


class LabellingSession:
    """The state of one labelling run and the only way to change it.

    Parameters
    ----------
    dataset : the lazy 4D-STEM ``Dataset`` (patterns are read one at a time).
    store : an open ``LabelStore``; answers are appended to it, one fsynced row each.
    sampler : the ``Sampler`` that proposes positions, round after round.
    budget : confirmed labels wanted in the store (skips do not count).
    model : a scikit-learn-style classifier over positions, or None. It is (re)fitted on all
        confirmed labels before a round when ``retrain`` (default: the sampler needs a model).
    round_size : positions asked per round (default: what the budget leaves, or
        ``MODEL_ROUND`` when a model is retrained).
    background_retrain : fit the model in a thread while the person labels on (the sampler
        uses the latest fitted model); off by default, so unattended runs replay exactly.
    """

    def __init__(self, dataset, store: LabelStore, sampler: Sampler, budget: int, model=None,
                 round_size: int | None = None, retrain: bool | None = None,
                 background_retrain: bool = False):
        if int(budget) <= 0:
            raise Al4dstemError(f"the budget must be a positive number of labels, got {budget}")
        self.dataset, self.store, self.sampler, self.budget = dataset, store, sampler, int(budget)
        self.model = model
        self.retrain = bool(getattr(sampler, "needs_model", False)) if retrain is None else retrain
        if round_size is not None and int(round_size) <= 0:
            raise Al4dstemError(f"the round size must be positive, got {round_size}")
        if round_size is None and self.retrain and model is not None:
            round_size = MODEL_ROUND
        self.round_size = round_size
        self.background_retrain = background_retrain
        _check_model(sampler, model, store, self.retrain)
        self.sampler_description = describe_sampler(sampler)  # stamped on every answer (provenance)

        self.lock = threading.RLock()
        self.version = 0
        self.queue: list[tuple[int, int]] = []
        self.round = _last_round(store)
        self.stopped: str | None = None
        self.exit_code = 0
        self.message = ""
        self.result = LabellingResult(stopped="budget", labelled=len(store.labels))
        self._patterns: OrderedDict = OrderedDict()
        self._overview = None
        self._lattice = None
        self._redo: tuple[int, int] | None = None  # a retracted position, asked again first
        # a model that arrives fitted is refitted only once this run changes the labels
        self._fitted_at = 0 if model is not None and hasattr(model, "classes_") else None
        self._fit_thread: threading.Thread | None = None
        self.model_version = 0  # grows after every completed fit (views cache predictions by it)
        self._fit_error: Exception | None = None

    # ------------------------------------------------------------ what the views read

    @property
    def scan_shape(self) -> tuple[int, int]:
        return tuple(int(n) for n in self.dataset.scan_shape)

    @property
    def labels(self) -> dict[tuple[int, int], int]:
        """Confirmed labels ``{(x, y): class}`` in the store."""
        return self.store.labels

    @property
    def done(self) -> int:
        """Confirmed labels in the store (what the budget counts)."""
        return len(self.store.labels)

    @property
    def finished(self) -> bool:
        return self.stopped is not None or self.done >= self.budget

    @property
    def current(self) -> tuple[int, int] | None:
        """The position to show next: the head of the round's queue."""
        return self.queue[0] if self.queue else None

    @property
    def model_ready(self) -> bool:
        return self.model is not None and hasattr(self.model, "classes_")

    @property
    def retraining(self) -> bool:
        return self._fit_thread is not None and self._fit_thread.is_alive()

    def examples(self, cls: int, n: int | None = None) -> list[tuple[int, int]]:
        """Positions labelled ``cls``, most recent first (at most ``n``)."""
        found = [r.position for r in reversed(self.store.rows) if r.label == cls]
        return found if n is None else found[:n]

    def pattern(self, position) -> np.ndarray:
        """The raw pattern at ``(x, y)``, from a small cache."""
        key = (int(position[0]), int(position[1]))
        with self.lock:
            if key in self._patterns:
                self._patterns.move_to_end(key)
                return self._patterns[key]
        found = np.asarray(self.dataset.pattern(*key))
        with self.lock:
            self._patterns[key] = found
            while len(self._patterns) > PATTERN_CACHE:
                self._patterns.popitem(last=False)
        return found

    def overview(self) -> np.ndarray:
        """The scan's virtual bright-field image (streams the scan once, then cached)."""
        if self._overview is None:
            self._overview = np.asarray(self.dataset.virtual_image())
        return self._overview

    def lattice(self):
        """The crystal lattice found in the scan's mean pattern (``al4dstem.lattice.Lattice``),
        or None where none is found; computed once, from at most 64 patterns."""
        if self._lattice is None:
            from al4dstem import lattice

            try:
                self._lattice = lattice.find_lattice(lattice.mean_pattern(self.dataset, max_patterns=64))
            except Al4dstemError:
                self._lattice = False  # looked, found none: don't look again
        return self._lattice or None

    def guess(self, position) -> np.ndarray | None:
        """The model's probabilities ``(3,)`` (none, vertical, horizontal) at ``(x, y)``, or None."""
        model = self.model
        if model is None or not hasattr(model, "classes_"):
            return None
        proba = np.asarray(model.predict_proba(np.array([position], dtype=np.int64)))[0]
        full = np.zeros(len(CLASSES))
        full[np.asarray(model.classes_, dtype=int)] = proba
        return full

    def context(self) -> QueryContext:
        """What the sampler may see: every position not yet answered, and the labels so far."""
        labels = self.store.labels
        return QueryContext(
            scan_shape=self.scan_shape,
            candidates=unanswered(self.scan_shape, self.store),
            labelled_positions=np.array(list(labels), dtype=np.int64).reshape(-1, 2),
            labelled_classes=np.array(list(labels.values()), dtype=np.int64),
            budget=self.budget,
            model=self.model if self.model_ready else None,
            dataset=self.dataset,
        )

    def state(self) -> dict:
        """A JSON-ready snapshot of everything a view shows (positions as ``[x, y]``)."""
        with self.lock:
            rows, cols = self.scan_shape
            return {
                "version": self.version,
                "scan_shape": [rows, cols],
                "budget": self.budget,
                "done": self.done,
                "per_class": {name: n for name, n in _per_class(self.store).items()},
                "skips": sum(1 for r in self.store.rows if r.label is None),
                "queue": [list(p) for p in self.queue],
                "current": list(self.current) if self.current else None,
                "labels": [[r.x, r.y, r.label if r.label is not None else SKIP] for r in self.store.rows],
                "round": self.round,
                "stopped": self.stopped,
                "message": self.message,
                "model": self.model_ready,
                "retraining": self.retraining,
                "can_undo": bool(self.store.rows),
            }

    # ------------------------------------------------------------ what changes it

    def next_round(self) -> np.ndarray:
        """Ask the sampler for the next round; ``(n, 2)`` positions, empty when finished."""
        with self.lock:
            if self.finished:
                return np.empty((0, 2), np.int64)
            self._refit()
            context = self.context()
            left = self.budget - self.done
            if self._redo is not None and self._redo not in self.store.seen:
                chosen_positions = np.array([self._redo], dtype=np.int64)  # undo: ask that one again
            elif not len(context.candidates):
                chosen_positions = np.empty((0, 2), np.int64)
            else:
                n = left if self.round_size is None else min(int(self.round_size), left)
                chosen = _check_query(self.sampler, self.sampler.query(context, n), context, n)
                chosen_positions = context.candidates[chosen]
            self._redo = None
            if not len(chosen_positions):
                self._stop("exhausted")
                return chosen_positions
            self.round += 1
            self.result.rounds += 1
            self.queue = [(int(x), int(y)) for x, y in chosen_positions]
            self._changed()
            return chosen_positions

    def record(self, answer: Answer, source: str = "oracle"):
        """Write one answer to the store (fsynced) and update the state; returns the row.

        ``UNDO`` appends a retraction of the last live answer, ends the round and asks that
        position again first. Signals that stop the labeller wait until the row is written.
        """
        if not isinstance(answer, Answer):
            raise Al4dstemError(f"an oracle must yield al4dstem.base.Answer objects, not {type(answer).__name__}")
        with self.lock, _signals_deferred():
            stamp = {"round": self.round, "source": answer.source or source,
                     "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                     "sampler": self.sampler_description}
            if isinstance(answer.label, str) and answer.label == UNDO:
                taken = self.store.retract(**stamp)
                if taken is not None:
                    self.result.undone += 1
                    self._redo = taken.position
                    self.message = f"took back {taken.name} at x={taken.x}, y={taken.y}"
                self.queue = []
                self._changed()
                return taken
            position = (int(answer.x), int(answer.y))
            label = self.check_answer(position, answer.label)
            row = self.store.append(*position, label, **stamp)
            if label is None:
                self.result.skipped += 1
            else:
                self.result.added += 1
            if position in self.queue:
                self.queue.remove(position)
            if self.done >= self.budget:
                self._stop("budget")
            self._changed()
            return row

    def stop(self, reason: str = "quit", exit_code: int = 0) -> None:
        """End the session (the person quit, or a signal stopped the program)."""
        with self.lock:
            self.exit_code = exit_code
            self._stop(reason)
            self._changed()

    def finish(self) -> LabellingResult:
        """The run's result, with the file's totals (waits for a background fit)."""
        if self._fit_thread is not None:
            self._fit_thread.join()
        result = self.result
        result.stopped = self.stopped or ("budget" if self.done >= self.budget else "quit")
        result.exit_code = self.exit_code
        result.labelled = self.done
        result.per_class = _per_class(self.store)
        result.skips = sum(1 for r in self.store.rows if r.label is None)
        return result

    # ------------------------------------------------------------ internals

    def _changed(self) -> None:
        self.version += 1

    def _stop(self, reason: str) -> None:
        if self.stopped is None:
            self.stopped = reason
        self.queue = []

    def check_answer(self, position, label) -> int | None:
        """The label to store for an answer at ``position`` (None: skip); raises Al4dstemError
        for a position outside the scan or answered already, or an unknown answer."""
        rows, cols = self.scan_shape
        x, y = position
        if not (0 <= x < cols and 0 <= y < rows):
            raise Al4dstemError(f"position x={x}, y={y} is outside the {cols} x {rows} scan (cols x rows)")
        if position in self.store.seen:
            raise Al4dstemError(f"position x={x}, y={y} is answered already (undo it first)")
        if isinstance(label, str):
            if label == SKIP:
                return None
            raise Al4dstemError(f"unknown answer {label!r}: expected a class 0..{len(CLASSES) - 1}, "
                                f"{SKIP!r} or {UNDO!r}")
        if isinstance(label, (bool, np.bool_)) or not isinstance(label, (int, np.integer)) \
                or not 0 <= int(label) < len(CLASSES):
            raise Al4dstemError(f"unknown answer {label!r}: expected a class 0..{len(CLASSES) - 1}, "
                                f"{SKIP!r} or {UNDO!r}")
        return int(label)

    def _refit(self) -> None:
        """Refit the model on all confirmed labels when they changed since the last fit."""
        if not self.retrain or self.model is None:
            return
        if self._fit_error is not None:
            error, self._fit_error = self._fit_error, None
            raise error
        changes = self.result.added + self.result.undone
        if self._fitted_at == changes or self.retraining:
            return
        labels = dict(self.store.labels)
        if len(set(labels.values())) < 2:
            if not self.model_ready:
                self.message = "no model yet (the labels so far show one class); labelling a seed batch first"
            return  # one class teaches nothing; keep the model as it is
        self._fitted_at = changes
        if self.background_retrain and self.model_ready:
            self._fit_thread = threading.Thread(target=self._fit_in_background, args=(labels,), daemon=True)
            self._fit_thread.start()
        elif not self.model_ready:
            self._first_fit(labels)
        else:
            _fit(self.model, labels)
            self.model_version += 1

    def _first_fit(self, labels) -> None:
        """Train the first model; while the labels cannot train one yet (too few, or of one class),
        the run goes on without a model: the sampler keeps proposing its seed batch."""
        try:
            _fit(self.model, labels)
        except Al4dstemError as e:
            if self.model_ready:  # a fit that failed half-way must not leave a broken model behind
                raise
            self.message = f"no model yet ({e}); labelling a space-filling seed batch first"
            return
        self.model_version += 1
        self.message = f"model trained on {len(labels)} labels"

    def _fit_in_background(self, labels) -> None:
        # fit a shallow copy and swap it in when done: a fit rebuilds the model's learned
        # attributes one by one, and the views and the sampler keep using the old model meanwhile
        candidate = copy.copy(self.model)
        try:
            _fit(candidate, labels)
        except Exception as e:  # reported at the next round, in the session's thread
            self._fit_error = e
        with self.lock:
            if self._fit_error is None:
                self.model = candidate
                self.model_version += 1
            self._changed()


# ---------------------------------------------------------------- helpers


@contextmanager
def _signals_deferred():
    """Hold SIGINT/SIGTERM/SIGHUP while a row is written, so a stop never cuts an answer in two
    (or leaves the file and the summary disagreeing). Only the main thread receives signals."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def unanswered(scan_shape, store: LabelStore) -> np.ndarray:
    """``(m, 2)`` positions ``(x, y)`` the store has no live answer for, in scan order."""
    free = np.ones(tuple(scan_shape), dtype=bool)
    for x, y in store.seen:
        free[y, x] = False
    yy, xx = np.nonzero(free)
    return np.stack([xx, yy], axis=1).astype(np.int64)


def _per_class(store: LabelStore) -> dict[str, int]:
    labels = store.labels
    return {name: sum(1 for c in labels.values() if c == i) for i, name in enumerate(CLASSES)}


def _check_query(sampler, chosen, context: QueryContext, n: int) -> np.ndarray:
    """The sampler's indices, checked against the contract (custom samplers may break it)."""
    chosen = np.asarray(chosen).reshape(-1)
    name = type(sampler).__name__
    if len(chosen) and not np.issubdtype(chosen.dtype, np.integer):
        raise Al4dstemError(f"sampler {name} returned {chosen.dtype} values; it must return indices "
                            "into the candidates")
    chosen = chosen.astype(np.int64)
    if len(chosen) > n:
        raise Al4dstemError(f"sampler {name} returned {len(chosen)} positions when asked for at most {n}")
    if len(chosen) and (chosen.min() < 0 or chosen.max() >= len(context.candidates)):
        raise Al4dstemError(f"sampler {name} returned an index outside the {len(context.candidates)} candidates")
    if len(np.unique(chosen)) != len(chosen):
        raise Al4dstemError(f"sampler {name} returned the same position twice in one round")
    return chosen


def _check_model(sampler, model, store: LabelStore, retrain: bool) -> None:
    """Refuse early (before any question) a sampler that needs a model it cannot have.

    An untrained model is fine when the run retrains it: the sampler starts from nothing (it
    sees ``context.model`` None and proposes its seed batch) until the labels can train one.
    """
    if not getattr(sampler, "needs_model", False):
        return
    name = type(sampler).__name__
    if model is None:
        raise Al4dstemError(f"sampler {name} needs a model: give one (--model MODEL.pt) or start with "
                            "--sampler grid-midpoint")
    if not retrain and not hasattr(model, "classes_"):
        raise Al4dstemError(f"sampler {name} needs a trained model, and this run does not train one: "
                            "give a trained model or let the run retrain it")


def _last_round(store: LabelStore) -> int:
    rounds = [r.extra.get("round", "") for r in store.history]
    return max((int(r) for r in rounds if r.strip().isdigit()), default=-1)


def _fit(model, labels: dict) -> None:
    model.fit(np.array(list(labels), dtype=np.int64), np.array(list(labels.values()), dtype=np.int64))

"""The active-learning loop: sampler -> oracle -> label store -> model, round after round.

Only the contracts of ``al4dstem.base`` are used, so any sampler, oracle or model that keeps
them plugs in. The label store is the loop's whole memory: every answer is on disk before
the next question, and a rerun on the same file continues where the last one stopped
(samplers replay from the labels).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from al4dstem.base import SKIP, UNDO, Model, Oracle, QueryContext, QuitLabelling, Sampler
from al4dstem.errors import Al4dstemError
from al4dstem.labels import CLASSES, LabelStore

MODEL_ROUND = 10  # labels per round when a model is retrained between rounds


@dataclass
class LabellingResult:
    """What a labelling run did. ``stopped`` is "budget", "exhausted" (the sampler had
    nothing left to propose) or "quit"; counts of this run and totals of the file."""

    stopped: str
    labelled: int  # confirmed labels in the file at the end
    added: int = 0  # confirmed labels recorded by this run
    skipped: int = 0  # skips recorded by this run
    undone: int = 0
    rounds: int = 0
    per_class: dict[str, int] = field(default_factory=dict)  # totals in the file
    skips: int = 0  # skip rows in the file


def run_labelling(dataset, store: LabelStore, sampler: Sampler, oracle: Oracle, budget: int,
                  model: Model | None = None, round_size: int | None = None,
                  retrain: bool | None = None,
                  progress: Callable[[int, int], None] | None = None) -> LabellingResult:
    """Label until ``budget`` confirmed labels are in ``store`` (skips do not count).

    Each round asks ``sampler`` for up to ``round_size`` positions (default: what the budget
    leaves, or ``MODEL_ROUND`` when a model is retrained), then ``oracle`` for their answers,
    each recorded at once. ``UNDO`` removes the last answer and ends the round, so the undone
    position can be proposed again. ``retrain`` (default: when the sampler needs a model)
    refits ``model`` on all confirmed labels before each round that has new ones.
    ``progress(labelled, budget)`` is called after every answer.
    """
    if int(budget) <= 0:
        raise Al4dstemError(f"the budget must be a positive number of labels, got {budget}")
    retrain = sampler.needs_model if retrain is None else retrain
    if round_size is None:
        round_size = MODEL_ROUND if retrain and model is not None else None
    elif int(round_size) <= 0:
        raise Al4dstemError(f"the round size must be positive, got {round_size}")
    _check_model(sampler, model, store, retrain)

    result = LabellingResult(stopped="budget", labelled=len(store.labels))
    next_round = _last_round(store) + 1
    # a model that arrives fitted is refitted only once this run changes the labels
    fitted_at = 0 if model is not None and hasattr(model, "classes_") else None
    try:
        while len(store.labels) < budget:
            if retrain and model is not None and fitted_at != result.added + result.undone:
                _fit(model, store, sampler)
                fitted_at = result.added + result.undone
            context = _context(dataset, store, budget, model)
            if not len(context.candidates):
                result.stopped = "exhausted"
                break
            left = budget - len(context.labelled_classes)
            n = left if round_size is None else min(int(round_size), left)
            chosen = _check_query(sampler, sampler.query(context, n), context, n)
            if not len(chosen):
                result.stopped = "exhausted"
                break
            positions = context.candidates[chosen]
            oracle.observe(context)
            quit_ = False
            try:
                answers = list(oracle.label(positions, dataset))
            except QuitLabelling as stop:
                answers, quit_ = list(stop.answers), True
            _record(store, oracle, positions, answers, next_round, result, budget, progress)
            next_round += 1
            result.rounds += 1
            if quit_:
                result.stopped = "quit"
                break
            if not answers:
                raise Al4dstemError(f"the oracle {type(oracle).__name__} gave no answer for {len(positions)} "
                                    "position(s)")
    except KeyboardInterrupt:  # Ctrl-C outside the oracle's own key handling: stop like q
        result.stopped = "quit"
    return _totals(result, store)


def _record(store, oracle, positions, answers, round_, result, budget, progress) -> None:
    """Write the answers of one round, in order, each durably before the next."""
    sources = oracle.last_sources or []
    for i, (position, answer) in enumerate(zip(positions, answers, strict=False)):
        if isinstance(answer, str) and answer == UNDO:
            if store.undo() is not None:
                result.undone += 1
            break
        if isinstance(answer, str) and answer == SKIP:
            label = None
        else:
            label = int(answer)
            if not 0 <= label < len(CLASSES):
                raise Al4dstemError(f"the oracle answered {answer!r}; expected a class 0..{len(CLASSES) - 1}, "
                                    f"{SKIP!r} or {UNDO!r}")
        source = sources[i] if i < len(sources) else oracle.source
        store.append(*position, label, round=round_, source=source,
                     time=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        if label is None:
            result.skipped += 1
        else:
            result.added += 1
        if progress is not None:
            progress(len(store.labels), budget)


def unanswered(scan_shape, store: LabelStore) -> np.ndarray:
    """``(m, 2)`` positions ``(x, y)`` the store has no answer for, in scan order."""
    free = np.ones(tuple(scan_shape), dtype=bool)
    for x, y in store.seen:
        free[y, x] = False
    yy, xx = np.nonzero(free)
    return np.stack([xx, yy], axis=1).astype(np.int64)


def _context(dataset, store: LabelStore, budget: int, model) -> QueryContext:
    """What the sampler may see: every position not yet answered, and the labels so far."""
    labels = store.labels
    return QueryContext(
        scan_shape=tuple(dataset.scan_shape),
        candidates=unanswered(dataset.scan_shape, store),
        labelled_positions=np.array(list(labels), dtype=np.int64).reshape(-1, 2),
        labelled_classes=np.array(list(labels.values()), dtype=np.int64),
        budget=int(budget),
        model=model if model is not None and hasattr(model, "classes_") else None,
        dataset=dataset,
    )


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
    """Refuse early (before any question) a sampler that needs a model it cannot have."""
    if not sampler.needs_model:
        return
    name = type(sampler).__name__
    if model is None:
        raise Al4dstemError(f"sampler {name} needs a model: give one (--model MODEL.pt) or start with "
                            "--sampler grid-midpoint")
    if hasattr(model, "classes_"):
        return
    classes = set(store.labels.values())
    if not retrain or len(classes) < 2:
        raise Al4dstemError(
            f"sampler {name} needs a trained model, and {len(store.labels)} label(s) of {len(classes)} class(es) "
            "cannot train one: label a few positions of at least two classes first (e.g. --sampler "
            "grid-midpoint --budget 20 on the same label file), or give --model MODEL.pt")


def _last_round(store: LabelStore) -> int:
    rounds = [r.extra.get("round", "") for r in store.rows]
    return max((int(r) for r in rounds if r.strip().isdigit()), default=-1)


def _fit(model, store: LabelStore, sampler) -> None:
    labels = store.labels
    if len(set(labels.values())) < 2:
        return  # one class teaches nothing; keep the model as it is
    first = not hasattr(model, "classes_")
    try:
        model.fit(np.array(list(labels), dtype=np.int64), np.array(list(labels.values()), dtype=np.int64))
    except Al4dstemError as e:
        if not first:
            raise
        raise Al4dstemError(
            f"sampler {type(sampler).__name__} needs a trained model, and training one on the {len(labels)} "
            f"label(s) so far failed ({e}): label more first (e.g. --sampler grid-midpoint --budget 20 on "
            "the same label file), or give --model MODEL.pt") from None


def _totals(result: LabellingResult, store: LabelStore) -> LabellingResult:
    labels = store.labels
    result.labelled = len(labels)
    result.per_class = {name: sum(1 for c in labels.values() if c == i) for i, name in enumerate(CLASSES)}
    result.skips = sum(1 for r in store.rows if r.label is None and r.position not in labels)
    return result

"""The shared template test for oracles: every oracle, built-in or yours, must pass it.

Use it from your own tests::

    from al4dstem.oracles.testing import check_oracle

    def test_my_oracle(tmp_path):
        check_oracle(lambda: MyOracle(...), tmp_path)

It drives the oracle through the real loop (``al4dstem.loop.run_labelling``) on a tiny scan
with a real label file, and checks the contract of ``al4dstem.base.Oracle.answers``:

- it is lazy: nothing is asked before the first answer is wanted;
- it yields ``Answer`` objects, one at a time, with a class, ``SKIP`` or ``UNDO``, for
  positions inside the scan;
- it is resumed only once its previous answer is in the label file (checked from disk);
- it can be closed mid-round (the budget was reached) without error;
- what it answered is what the label file holds.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import numpy as np

from al4dstem.base import SKIP, UNDO, Answer, Oracle, QuitLabelling, Sampler
from al4dstem.labels import CLASSES, LabelStore, read_labels

SCAN_SHAPE = (5, 7)  # rows, cols


class ScanOrder(Sampler):
    """Proposes unanswered positions in scan order, ``per_round`` at a time."""

    def __init__(self, per_round: int = 4):
        self.per_round = per_round

    def query(self, context, n):
        return np.arange(min(n, self.per_round, len(context.candidates)))


class _Watched(Oracle):
    """Wraps the oracle under test and checks each answer against the file before resuming it."""

    def __init__(self, inner: Oracle, path: Path):
        self.inner, self.path = inner, path
        self.source = inner.source
        self.given: list[Answer] = []

    def answers(self, positions, session):
        produced = self.inner.answers(positions, session)
        assert inspect.isgenerator(produced) or hasattr(produced, "__next__"), \
            "answers() must return an iterator (a generator), answering one position at a time"
        rows, cols = SCAN_SHAPE
        for answer in produced:
            assert isinstance(answer, Answer), f"answers() yielded {type(answer).__name__}, not Answer"
            label = answer.label
            assert label in (SKIP, UNDO) or (isinstance(label, (int, np.integer)) and 0 <= label < len(CLASSES)), \
                f"answer label {label!r} is not a class, SKIP or UNDO"
            if label != UNDO:
                assert 0 <= answer.x < cols and 0 <= answer.y < rows, f"answer outside the scan: {answer}"
            self.given.append(answer)
            yield answer
            if label not in (SKIP, UNDO):  # resumed: the answer must be on disk by now
                live = {(r.x, r.y): r.label for r in read_labels(self.path)}
                assert live.get((answer.x, answer.y)) == int(label), f"{answer} not on disk before the next question"


def check_oracle(make_oracle: Callable[[], Oracle], folder, dataset=None, budget: int = 6) -> list[Answer]:
    """Run the template test on a fresh oracle from ``make_oracle()``; returns its answers.

    ``folder`` is a temporary folder for the label file; ``dataset`` defaults to a tiny
    random scan of ``SCAN_SHAPE``.
    """
    from al4dstem.data import open_dataset
    from al4dstem.loop import run_labelling

    if dataset is None:
        rng = np.random.default_rng(0)
        dataset = open_dataset(rng.poisson(2.0, (*SCAN_SHAPE, 16, 16)).astype(np.uint16))
    path = Path(folder) / "oracle-template.csv"
    oracle = make_oracle()
    assert isinstance(oracle, Oracle) or hasattr(oracle, "answers"), "an oracle needs answers(positions, session)"
    lazy = oracle.answers(np.array([[0, 0]], dtype=np.int64), None)
    assert hasattr(lazy, "__next__"), "answers() must return a generator"
    lazy.close()  # never started: a lazy oracle asked nothing

    watched = _Watched(make_oracle(), path)
    with LabelStore(path, SCAN_SHAPE) as store:
        try:
            result = run_labelling(dataset, store, ScanOrder(), watched, budget=budget)
        except QuitLabelling:  # pragma: no cover - the loop catches it
            raise AssertionError("QuitLabelling escaped the loop") from None
    live = read_labels(path)
    assert result.labelled == sum(r.label is not None for r in live) <= budget
    answered = [(a.x, a.y) for a in watched.given if a.label != UNDO]
    assert {r.position for r in live} <= set(answered), "the file holds answers the oracle never gave"
    return watched.given

"""The labelling loop against the base contracts, with small samplers, oracles and a model
defined here: budget, skip and undo, resuming, retraining, quitting, contract breaches."""

import csv
import time
from datetime import datetime

import numpy as np
import pytest

from al4dstem.base import SKIP, UNDO, Answer, Model, Oracle, QuitLabelling, Sampler
from al4dstem.data import open_dataset
from al4dstem.errors import Al4dstemError
from al4dstem.labels import LabelStore, read_labels
from al4dstem.loop import MODEL_ROUND, drive, run_labelling
from al4dstem.oracles import NoisyOracle, TruthOracle

ROWS, COLS = 8, 10


def truth_class(x, y):
    return 1 if y < 3 else 0 if y < 5 else 2


TRUTH = {(x, y): truth_class(x, y) for x in range(COLS) for y in range(ROWS)}


@pytest.fixture
def dataset():
    return open_dataset(np.zeros((ROWS, COLS, 4, 4), np.uint16))


class GridThenBoundary(Sampler):
    """A coarse grid (``per_round`` at a time), then one position per round: the candidate
    closest to two differently labelled positions. A function of the labels alone, so a
    resumed run sees the same questions as an uninterrupted one."""

    def __init__(self, step=4, per_round=3):
        self.step = step
        self.per_round = per_round

    def query(self, context, n):
        cand = context.candidates
        on_grid = np.flatnonzero((cand[:, 0] % self.step == 0) & (cand[:, 1] % self.step == 0))
        if len(on_grid):
            return on_grid[: min(n, self.per_round)]
        pos, cls = context.labelled_positions, context.labelled_classes
        if len(cand) == 0 or len(set(cls.tolist())) < 2:
            return np.arange(min(n, len(cand), 1))
        d = np.linalg.norm(cand[:, None, :] - pos[None, :, :], axis=2)
        score = sum(np.sort(np.where(cls == c, d, np.inf), axis=1)[:, 0] for c in set(cls.tolist()))
        return np.array([int(np.argmin(score))])


class ScriptedOracle(Oracle):
    """Answers from a script (answers, or "quit"); records what it was asked."""

    source = "script"

    def __init__(self, script):
        self.script = list(script)
        self.asked = []

    def answers(self, positions, session):
        for p in positions.tolist():
            self.asked.append(tuple(p))
            step = self.script.pop(0)
            if step == "quit":
                raise QuitLabelling()
            yield Answer(*p, step)


class QuitAfter(Oracle):
    """Another oracle that quits after ``n`` answers in all (a person stopping mid-round)."""

    def __init__(self, inner, n):
        self.inner = inner
        self.n = n

    def answers(self, positions, session):
        for answer in self.inner.answers(positions, session):
            if self.n == 0:
                raise QuitLabelling()
            self.n -= 1
            yield answer


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def sequence(path):
    """The live answers (retractions applied), in the order given."""
    return [(r.x, r.y, r.name) for r in read_labels(path)]


def test_budget_counts_confirmed_labels_and_skips_are_never_asked_again(dataset, tmp_path):
    sparse = {k: v for k, v in TRUTH.items() if (k[0] + k[1]) % 3}  # a third is missing
    store = LabelStore(tmp_path / "l.csv", dataset.scan_shape)
    result = run_labelling(dataset, store, GridThenBoundary(), TruthOracle(sparse), budget=15)
    got = rows(tmp_path / "l.csv")
    assert result.stopped == "budget" and result.labelled == 15 == sum(r["label"] != "skip" for r in got)
    assert result.skipped == sum(r["label"] == "skip" for r in got) > 0
    assert len({(r["x"], r["y"]) for r in got}) == len(got)  # nothing asked twice
    assert all(r["label"] == "skip" for r in got if (int(r["x"]), int(r["y"])) not in sparse)
    assert result.per_class == {"none": result.per_class["none"], "vertical": result.per_class["vertical"],
                                "horizontal": result.per_class["horizontal"]}
    assert sum(result.per_class.values()) == 15


def test_rows_record_round_source_and_time(dataset, tmp_path):
    store = LabelStore(tmp_path / "l.csv", dataset.scan_shape)
    run_labelling(dataset, store, GridThenBoundary(per_round=2), TruthOracle({(0, 0): 1, (9, 7): 2},
                                                                               fill="nearest"), budget=6)
    got = rows(tmp_path / "l.csv")
    assert list(got[0]) == ["x", "y", "label", "round", "source", "time", "sampler"]
    assert [r["source"] for r in got[:2]] == ["truth", "truth-nearest"]  # (0,0) known, (4,0) filled
    assert {r["sampler"] for r in got} == {"test_loop:GridThenBoundary per_round=2 step=4"}
    assert [int(r["round"]) for r in got] == [0, 0, 1, 1, 2, 2]  # 6 grid points, 2 a round
    assert all(datetime.fromisoformat(r["time"]).tzinfo is not None for r in got)


def test_undo_takes_back_the_last_answer_and_asks_again(dataset, tmp_path):
    oracle = ScriptedOracle([2, 1, UNDO, 0, 2, SKIP, UNDO, 1])
    store = LabelStore(tmp_path / "l.csv", dataset.scan_shape)
    result = run_labelling(dataset, store, GridThenBoundary(per_round=3), oracle, budget=4)
    # (0,0)=2, (4,0)=1, undo -> (4,0) asked again, =0, (8,0)=2, (0,4) skip, undo -> (0,4) asked again
    assert oracle.asked == [(0, 0), (4, 0), (8, 0), (4, 0), (8, 0), (0, 4), (4, 4), (0, 4)]
    assert sequence(tmp_path / "l.csv") == [(0, 0, "horizontal"), (4, 0, "none"), (8, 0, "horizontal"),
                                            (0, 4, "vertical")]
    assert result.undone == 2 and result.labelled == 4
    # undo appends a retraction row: history is never rewritten
    history = [(int(r["x"]), int(r["y"]), r["label"]) for r in rows(tmp_path / "l.csv")]
    assert history == [(0, 0, "horizontal"), (4, 0, "vertical"), (4, 0, "undo"), (4, 0, "none"),
                       (8, 0, "horizontal"), (0, 4, "skip"), (0, 4, "undo"), (0, 4, "vertical")]


def test_earlier_rows_never_change(dataset, tmp_path):
    """Times and rounds written once stay as written, whatever comes after (undo included)."""
    path = tmp_path / "l.csv"
    with LabelStore(path, dataset.scan_shape) as store:
        run_labelling(dataset, store, GridThenBoundary(per_round=3), ScriptedOracle([2, 1, "quit"]), budget=9)
    before = path.read_bytes()
    with LabelStore(path, dataset.scan_shape) as store:
        run_labelling(dataset, store, GridThenBoundary(per_round=3), ScriptedOracle([UNDO, 0, 2, SKIP]), budget=3)
    after = path.read_bytes()
    assert after.startswith(before) and len(after) > len(before)


class CheckingOracle(Oracle):
    """Checks, each time it is asked for the next answer, that the last one is on disk."""

    def __init__(self, path, truth):
        self.path, self.truth, self.checked = path, truth, 0

    def answers(self, positions, session):
        for x, y in positions.tolist():
            yield Answer(x, y, self.truth[(x, y)])
            live = {(r.x, r.y): r.label for r in read_labels(self.path)}
            assert live.get((x, y)) == self.truth[(x, y)], "answer not on disk before the next question"
            self.checked += 1


def test_each_answer_is_on_disk_before_the_next_question(dataset, tmp_path):
    path = tmp_path / "l.csv"
    oracle = CheckingOracle(path, TRUTH)
    with LabelStore(path, dataset.scan_shape) as store:
        result = run_labelling(dataset, store, GridThenBoundary(per_round=3), oracle, budget=12)
    assert result.labelled == 12 and oracle.checked >= 9  # the last answer of a round ends it


class Clicker(Oracle):
    """Answers a position it was not asked about first (a click on the scan map), then as asked."""

    def answers(self, positions, session):
        if (9, 7) not in session.store.seen:
            yield Answer(9, 7, 2, "click")
        for x, y in positions.tolist():
            yield Answer(x, y, TRUTH[(x, y)])


def test_an_answer_may_name_a_position_not_asked(dataset, tmp_path):
    path = tmp_path / "l.csv"
    with LabelStore(path, dataset.scan_shape) as store:
        run_labelling(dataset, store, GridThenBoundary(per_round=2), Clicker(), budget=5)
    got = rows(path)
    assert (got[0]["x"], got[0]["y"], got[0]["label"], got[0]["source"]) == ("9", "7", "horizontal", "click")
    assert len({(r["x"], r["y"]) for r in got}) == len(got) == 5


@pytest.mark.parametrize("answer, message", [
    (Answer(10, 0, 1), "outside"),
    (Answer(0, 8, 1), "outside"),
    (Answer(0, 0, 3), "unknown answer"),
    (Answer(0, 0, "maybe"), "unknown answer"),
    (Answer(0, 0, True), "unknown answer"),
    ((0, 0, 1), "Answer"),
])
def test_oracle_breaking_the_contract_is_reported(dataset, tmp_path, answer, message):
    class Bad(Oracle):
        def answers(self, positions, session):
            yield answer

    path = tmp_path / "l.csv"
    with pytest.raises(Al4dstemError, match=message), LabelStore(path, dataset.scan_shape) as store:
        run_labelling(dataset, store, GridThenBoundary(), Bad(), budget=3)
    assert not path.exists() or read_labels(path) == []


def test_answering_a_position_twice_is_refused(dataset, tmp_path):
    class Twice(Oracle):
        def answers(self, positions, session):
            yield Answer(0, 0, 1)
            yield Answer(0, 0, 2)

    path = tmp_path / "l.csv"
    with pytest.raises(Al4dstemError, match="answered already"), LabelStore(path, dataset.scan_shape) as store:
        run_labelling(dataset, store, GridThenBoundary(), Twice(), budget=3)
    assert sequence(path) == [(0, 0, "vertical")]


def test_quit_keeps_every_confirmed_answer(dataset, tmp_path):
    store = LabelStore(tmp_path / "l.csv", dataset.scan_shape)
    result = run_labelling(dataset, store, GridThenBoundary(), ScriptedOracle([1, SKIP, 2, 0, "quit"]), budget=9)
    assert result.exit_code == 0
    assert result.stopped == "quit" and result.labelled == 3 and result.skips == 1
    assert sequence(tmp_path / "l.csv") == [(0, 0, "vertical"), (4, 0, "skip"), (8, 0, "horizontal"),
                                            (0, 4, "none")]


@pytest.mark.parametrize("stop_after", [2, 4, 7, 11])
def test_resume_gives_the_same_labels_as_an_uninterrupted_run(dataset, tmp_path, stop_after):
    oracle = NoisyOracle({k: v for k, v in TRUTH.items() if k != (4, 4)}, 0.2, random_state=5)
    whole = tmp_path / "whole.csv"
    with LabelStore(whole, dataset.scan_shape) as store:
        run_labelling(dataset, store, GridThenBoundary(), oracle, budget=14)
    parts = tmp_path / "parts.csv"
    with LabelStore(parts, dataset.scan_shape) as store:
        first = run_labelling(dataset, store, GridThenBoundary(), QuitAfter(oracle, stop_after), budget=14)
    assert first.stopped == "quit" and len(rows(parts)) == stop_after
    with LabelStore(parts, dataset.scan_shape) as store:
        again = run_labelling(dataset, store, GridThenBoundary(), oracle, budget=14)
    assert again.stopped == "budget" and again.labelled == 14
    assert sequence(parts) == sequence(whole)
    assert [r["source"] for r in rows(parts)] == [r["source"] for r in rows(whole)]


@pytest.mark.parametrize("stop_after", [3, 8, 15])
def test_resume_with_the_paper_sampler(dataset, tmp_path, stop_after):
    from al4dstem.strategies import GridMidpointSampler

    whole, parts = tmp_path / "whole.csv", tmp_path / "parts.csv"
    for path, oracle in [(whole, TruthOracle(TRUTH)), (parts, QuitAfter(TruthOracle(TRUTH), stop_after)),
                         (parts, TruthOracle(TRUTH))]:
        with LabelStore(path) as store:
            run_labelling(dataset, store, GridMidpointSampler(), oracle, budget=20)
    assert sequence(parts) == sequence(whole) and len(sequence(whole)) == 20


def test_stops_when_the_sampler_runs_out(dataset, tmp_path):
    store = LabelStore(tmp_path / "l.csv", dataset.scan_shape)
    result = run_labelling(dataset, store, GridThenBoundary(), TruthOracle({}), budget=5)
    assert result.stopped == "exhausted" and result.labelled == 0 and len(store) == ROWS * COLS


def test_progress_reports_confirmed_labels(dataset, tmp_path):
    seen = []
    run_labelling(dataset, LabelStore(tmp_path / "l.csv", dataset.scan_shape), GridThenBoundary(),
                  TruthOracle(TRUTH), budget=5, progress=lambda done, budget: seen.append((done, budget)))
    assert seen == [(i, 5) for i in range(1, 6)]


# ---------------------------------------------------------------- with a model


class NearestModel(Model):
    """1-nearest-neighbour on positions; counts its fits; refuses fewer than ``min_labels``."""

    def __init__(self, min_labels=1):
        self.min_labels = min_labels
        self.fits = []

    def fit(self, X, y):
        if len(y) < self.min_labels:
            raise Al4dstemError(f"at least {self.min_labels} labels needed")
        self.fits.append(len(y))
        self.X_, self.y_ = np.asarray(X), np.asarray(y)
        self.classes_ = np.array([0, 1, 2])
        return self

    def predict_proba(self, X):
        d = np.linalg.norm(np.asarray(X)[:, None] - self.X_[None], axis=2)
        proba = np.full((len(X), 3), 0.1)
        proba[np.arange(len(X)), self.y_[np.argmin(d, axis=1)]] = 0.8
        return proba / proba.sum(axis=1, keepdims=True)


class LeastConfident(Sampler):
    needs_model = True

    def query(self, context, n):
        proba = context.model.predict_proba(context.candidates)
        return np.argsort(proba.max(axis=1), kind="stable")[:n]


def test_model_is_retrained_between_rounds(dataset, tmp_path):
    path = tmp_path / "l.csv"
    with LabelStore(path, dataset.scan_shape) as store:
        run_labelling(dataset, store, GridThenBoundary(), TruthOracle(TRUTH), budget=6)  # grid labels first
    model = NearestModel()
    with LabelStore(path, dataset.scan_shape) as store:
        result = run_labelling(dataset, store, LeastConfident(), TruthOracle(TRUTH),
                               budget=6 + 2 * MODEL_ROUND + 3, model=model)
    assert result.labelled == 6 + 2 * MODEL_ROUND + 3
    assert model.fits == [6, 6 + MODEL_ROUND, 6 + 2 * MODEL_ROUND]


def test_sampler_needing_a_model_says_what_is_needed(dataset, tmp_path):
    path = tmp_path / "l.csv"
    with pytest.raises(Al4dstemError, match="needs a model.*--model"), LabelStore(path) as store:
        run_labelling(dataset, store, LeastConfident(), TruthOracle(TRUTH), budget=3)
    with pytest.raises(Al4dstemError, match="needs a trained model.*does not train"), LabelStore(path) as store:
        run_labelling(dataset, store, LeastConfident(), TruthOracle(TRUTH), budget=3, model=NearestModel(),
                      retrain=False)
    assert not path.exists()


def test_model_driven_sampler_starts_from_nothing(dataset, tmp_path):
    """A new label file and an untrained model: a space-filling seed batch first (the sampler
    sees no model), then the model is trained and drives every later round."""
    from al4dstem.strategies import UncertaintySampler

    class Watching(UncertaintySampler):
        def query(self, context, n):
            seen.append((len(context.labelled_positions), context.model is not None))
            return super().query(context, n)

    seen = []
    model = NearestModel(min_labels=5)
    path = tmp_path / "l.csv"
    with LabelStore(path, dataset.scan_shape) as store:
        result = run_labelling(dataset, store, Watching(random_state=0), TruthOracle(TRUTH),
                               budget=2 * MODEL_ROUND + 5, model=model)
    assert result.labelled == 2 * MODEL_ROUND + 5
    assert seen[0] == (0, False)  # the seed batch, before any model
    assert all(has_model for _, has_model in seen[1:])
    assert model.fits == [MODEL_ROUND, 2 * MODEL_ROUND]
    first = [r.position for r in read_labels(path)][:MODEL_ROUND]
    assert len({y for _, y in first}) >= 3 and len({x for x, _ in first}) >= 3  # spread, not a clump


def test_seed_batch_goes_on_while_the_labels_cannot_train(dataset, tmp_path):
    """Labels of one class (or too few) cannot train: the run goes on with seed batches and
    trains the model as soon as it can, instead of failing."""
    from al4dstem.strategies import UncertaintySampler

    one_class = {p: 1 for p in TRUTH}
    one_class.update({(x, 7): 2 for x in range(COLS)})  # off the seed grid: the first batch sees one class
    model = NearestModel(min_labels=5)
    path = tmp_path / "l.csv"
    with LabelStore(path, dataset.scan_shape) as store:
        result = run_labelling(dataset, store, UncertaintySampler(random_state=0), TruthOracle(one_class),
                               budget=30, model=model)
    assert result.labelled == 30
    classes = [r.label for r in read_labels(path)]
    first_two = next(i for i, c in enumerate(classes) if c != classes[0]) + 1
    assert first_two > MODEL_ROUND  # the first seed batch saw one class only
    assert model.fits and model.fits[0] >= first_two  # trained once two classes were labelled


# ---------------------------------------------------------------- contract breaches


class Broken(Sampler):
    def __init__(self, answer):
        self.answer = answer

    def query(self, context, n):
        return np.asarray(self.answer(context, n))


@pytest.mark.parametrize("answer, message", [
    (lambda c, n: [len(c.candidates)], "outside"),
    (lambda c, n: [0, 0], "twice"),
    (lambda c, n: np.arange(n + 1), "at most"),
    (lambda c, n: [0.5], "indices"),
])
def test_sampler_breaking_the_contract_is_reported(dataset, tmp_path, answer, message):
    with pytest.raises(Al4dstemError, match=message):
        run_labelling(dataset, LabelStore(tmp_path / "l.csv"), Broken(answer), TruthOracle(TRUTH), budget=3,
                      round_size=2)


def test_ctrl_c_outside_the_oracle_stops_like_quit(dataset, tmp_path):
    calls = []

    def interrupt_on_third(context, n):
        calls.append(n)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return [0]

    result = run_labelling(dataset, LabelStore(tmp_path / "l.csv"), Broken(interrupt_on_third),
                           TruthOracle(TRUTH), budget=5)
    assert result.stopped == "quit" and result.labelled == 2 and len(rows(tmp_path / "l.csv")) == 2
    assert result.exit_code == 130


def test_bad_budget_is_refused(dataset, tmp_path):
    with pytest.raises(Al4dstemError, match="budget"):
        run_labelling(dataset, LabelStore(tmp_path / "l.csv"), GridThenBoundary(), TruthOracle(TRUTH), budget=0)


class HalfwaySlowModel(NearestModel):
    """Its fit sets ``X_`` first and ``y_`` a moment later: predicting from it mid-fit breaks."""

    def fit(self, X, y):
        self.X_ = np.asarray(X)
        time.sleep(0.3)
        return super().fit(X, y)


def test_background_retraining_never_lets_the_sampler_see_a_half_fitted_model(dataset, tmp_path):
    from al4dstem.session import LabellingSession

    path = tmp_path / "l.csv"
    with LabelStore(path, dataset.scan_shape) as store:
        run_labelling(dataset, store, GridThenBoundary(), TruthOracle(TRUTH), budget=6)
    model = HalfwaySlowModel().fit(np.array([[0, 0], [4, 4], [8, 4]]), np.array([1, 0, 2]))
    budget = 6 + 3 * MODEL_ROUND
    with LabelStore(path, dataset.scan_shape) as store:
        session = LabellingSession(dataset, store, LeastConfident(), budget, model=model, background_retrain=True)
        result = drive(session, TruthOracle(TRUTH))
    assert result.labelled == budget
    assert session.model is not model and session.model_version >= 1  # fitted copies were swapped in
    assert len(session.model.y_) > 3

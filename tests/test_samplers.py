"""Samplers: the shared template test over every built-in and the example, then specifics."""

import importlib.util
import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier
from threadpoolctl import threadpool_limits

from al4dstem.base import QueryContext, Sampler
from al4dstem.errors import Al4dstemError
from al4dstem.strategies import (
    SAMPLERS,
    CoordinateModel,
    GridMidpointSampler,
    HybridSampler,
    RandomSampler,
    UncertaintySampler,
    get_sampler,
    registry,
)
from al4dstem.strategies.grid_midpoint import auto_steps, grid_positions
from al4dstem.strategies.hybrid import wall_edges
from al4dstem.strategies.testing import check_batch, check_sampler, coherent_truth, run_sampler

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(autouse=True)
def one_thread():
    """Small problems: OpenMP start-up on 2 shared cores costs more than the work itself."""
    with threadpool_limits(1):
        yield


def _example_class():
    spec = importlib.util.spec_from_file_location("custom_sampler", EXAMPLES / "custom_sampler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FarthestPointSampler


FACTORIES = {
    "random": lambda s: RandomSampler(random_state=s),
    "grid-midpoint": lambda s: GridMidpointSampler(random_state=s),
    "uncertainty-least-confident-top": lambda s: UncertaintySampler(random_state=s),
    "uncertainty-margin-diverse": lambda s: UncertaintySampler("margin", "diverse", random_state=s),
    "uncertainty-entropy-top": lambda s: UncertaintySampler("entropy", "top", random_state=s),
    "uncertainty-least-confident-diverse": lambda s: UncertaintySampler(batch="diverse", random_state=s),
    "hybrid": lambda s: HybridSampler(random_state=s),
    "example-farthest-point": lambda s: _example_class()(random_state=s),
}


@pytest.mark.parametrize("name", list(FACTORIES))
def test_template(name):
    check_sampler(FACTORIES[name], max_examples=25)


def test_template_catches_a_broken_sampler():
    class Repeats(Sampler):  # proposes its first candidate twice whenever it may propose two
        def __init__(self, random_state=None):
            self.random_state = random_state

        def query(self, context, n):
            k = min(n, len(context.candidates))
            if context.budget is not None:
                k = min(k, context.budget - len(context.labelled_positions))
            k = max(0, k)
            return np.zeros(k, dtype=np.int64) if k >= 2 else np.arange(k, dtype=np.int64)

    with pytest.raises(AssertionError, match="repeated"):
        check_sampler(lambda s: Repeats(s), max_examples=10)


def _context(shape, labelled=(), classes=(), budget=None, model=None, exclude=()):
    rows, cols = shape
    taken = {tuple(p) for p in labelled} | {tuple(p) for p in exclude}
    cand = np.array([(x, y) for y in range(rows) for x in range(cols) if (x, y) not in taken], np.int64)
    return QueryContext(shape, cand.reshape(-1, 2), np.array(labelled, np.int64).reshape(-1, 2),
                        np.array(classes, np.int64), budget, model)


# ---------------------------------------------------------------- grid-midpoint


def test_grid_midpoint_halves_the_radius_and_stops_at_one():
    truth = np.where(np.arange(33) <= 20, 1, 2)  # one row, wall between x = 20 and 21
    sampler, labelled, rounds = GridMidpointSampler(step=16), [], []
    while True:
        context = _context((1, 33), [(x, 0) for x in labelled], [truth[x] for x in labelled])
        r = sampler.next_round(context)
        idx = sampler.query(context, 10)
        if not len(idx):
            assert r.stage == "done"
            break
        xs = [int(x) for x in context.candidates[idx, 0]]
        rounds.append((r.stage, r.radius, sorted(xs)))
        labelled += xs
    assert rounds == [("grid", 0, [0, 16, 32]), ("midpoints", 16, [24]), ("midpoints", 8, [20]),
                      ("midpoints", 4, [22]), ("midpoints", 2, [21])]


@pytest.mark.parametrize("slope", [0.0, 0.5])
def test_grid_midpoint_converges_onto_the_wall(slope):
    rows, cols = 21, 64
    yy, xx = np.mgrid[0:rows, 0:cols]
    wall = 37 + slope * (yy - 10)  # class 1 left of the wall, 2 right of it
    truth = np.where(xx < wall, 1, 2)
    sampler = GridMidpointSampler(step=(16, 10))
    run = run_sampler(sampler, truth, budget=None, batch=4)
    assert run.stopped == "exhausted"
    grid = {tuple(p) for p in grid_positions((rows, cols), (16, 10))}
    mids = [p for b in run.batches for p in b if tuple(p) not in grid]
    assert mids, "no midpoints proposed"
    distance = np.array([abs(x - (37 + slope * (y - 10))) for x, y in mids])
    assert distance.max() <= 16, "a midpoint far from the only wall"
    third = len(distance) // 3
    assert distance[-third:].mean() < distance[:third].mean(), "midpoints do not close in on the wall"
    labelled = dict(zip(map(tuple, run.positions), run.classes, strict=True))
    for y in sorted({y for _, y in grid}):  # every grid row ends with the wall pinned to the pixel
        x = int(np.ceil(37 + slope * (y - 10))) - 1
        assert labelled.get((x, y)) == 1 and labelled.get((x + 1, y)) == 2, f"wall not pinned on row {y}"


def test_grid_midpoint_stands_in_for_skipped_points():
    truth = _two_domains(rows=21, cols=64, wall=37)
    truth[10, 23] = -1  # a grid node (lines x = 7, 23, 39, 55; y = 0, 10, 20) the oracle skips
    run = run_sampler(GridMidpointSampler(step=(16, 10)), truth, budget=None, batch=4)
    assert run.skipped.tolist() == [[23, 10]]
    near = [p for p in run.positions.tolist() if abs(p[0] - 23) <= 4 and abs(p[1] - 10) <= 2]
    assert len(near) == 1, f"one stand-in for the skipped node, got {near}"
    labelled = {tuple(p) for p in run.positions.tolist()}
    assert (36, 10) in labelled and (37, 10) in labelled, "the wall is still pinned on the node's row"


def test_grid_midpoint_resumes_exactly():
    truth = coherent_truth((20, 30), np.random.default_rng(3), n_domains=4)
    full = run_sampler(GridMidpointSampler(), truth, budget=60, batch=1)
    head = (full.positions[:25], full.classes[:25])
    resumed = run_sampler(GridMidpointSampler(), truth, budget=60, batch=1, start=head)
    assert np.array_equal(resumed.positions, full.positions)


def test_random_sequence_does_not_depend_on_round_size_or_resume():
    truth = coherent_truth((12, 17), np.random.default_rng(5), n_domains=3)
    in_ones = run_sampler(RandomSampler(random_state=7), truth, budget=40, batch=1)
    in_sevens = run_sampler(RandomSampler(random_state=7), truth, budget=40, batch=7)
    head = (in_ones.positions[:13], in_ones.classes[:13])
    resumed = run_sampler(RandomSampler(random_state=7), truth, budget=40, batch=5, start=head)
    assert np.array_equal(in_sevens.positions, in_ones.positions)
    assert np.array_equal(resumed.positions, in_ones.positions)
    other = run_sampler(RandomSampler(random_state=8), truth, budget=40, batch=1)
    assert not np.array_equal(other.positions, in_ones.positions)


@pytest.mark.parametrize("budget", [50, 100, 250])
def test_auto_step_covers_both_axes_of_the_paper_scan(budget):
    sx, sy = auto_steps((34, 206), budget)
    grid = grid_positions((34, 206), (sx, sy))
    assert len(set(grid[:, 1])) >= 3 and len(set(grid[:, 0])) >= 8
    assert grid[:, 1].max() - grid[:, 1].min() >= 30 and grid[:, 0].max() - grid[:, 0].min() >= 190
    assert len(grid) <= 0.6 * budget, "the grid leaves too little budget for midpoints"
    first = GridMidpointSampler().query(_context((34, 206), budget=budget), budget)
    assert len(first) == len(grid)  # grid points first, and only them


def test_grid_order_is_coarse_to_fine():
    grid = grid_positions((34, 206), auto_steps((34, 206), 100))
    first = grid[:6]
    assert np.ptp(first[:, 0]) >= 150 and np.ptp(first[:, 1]) >= 20


@pytest.mark.parametrize("step", [0, 500, (3, 0), "x", 2.5])
def test_bad_step_is_a_user_error(step):
    with pytest.raises(Al4dstemError):
        GridMidpointSampler(step=step).query(_context((34, 206)), 5)


# ---------------------------------------------------------------- uncertainty


def _two_domains(rows=20, cols=40, wall=25):
    xx = np.mgrid[0:rows, 0:cols][1]
    return np.where(xx < wall, 1, 2)


def _labelled_on(truth, step=5):
    rows, cols = truth.shape
    pos = np.array([(x, y) for y in range(0, rows, step) for x in range(0, cols, step)], np.int64)
    return pos, truth[pos[:, 1], pos[:, 0]]


@pytest.mark.parametrize("measure", ["least-confident", "margin", "entropy"])
def test_uncertainty_asks_near_the_wall(measure):
    truth = _two_domains()
    pos, cls = _labelled_on(truth)
    model = KNeighborsClassifier(n_neighbors=4).fit(pos, cls)  # any scikit-learn classifier
    ctx = _context(truth.shape, pos, cls, model=model)
    picks = ctx.candidates[UncertaintySampler(measure, random_state=0).query(ctx, 8)]
    assert np.all(np.abs(picks[:, 0] - 24.5) <= 5), picks


def test_diverse_batch_spreads_out():
    truth = _two_domains()
    pos, cls = _labelled_on(truth)
    ctx = _context(truth.shape, pos, cls, model=CoordinateModel().fit(pos, cls))

    def spread(batch):
        p = ctx.candidates[UncertaintySampler(batch=batch, random_state=0).query(ctx, 6)].astype(float)
        return min(np.hypot(*(a - b)) for i, a in enumerate(p) for b in p[i + 1:])

    assert spread("diverse") > spread("top")


def test_unknown_measure_is_a_user_error():
    with pytest.raises(Al4dstemError, match="measure"):
        UncertaintySampler("confusion").query(_context((4, 4)), 2)


# ---------------------------------------------------------------- hybrid


def test_hybrid_grid_first_then_bisects_walls_without_a_model():
    truth = _two_domains(rows=30, cols=60, wall=37)
    run = run_sampler(HybridSampler(share=0.5), truth, budget=60, batch=5)  # no model: coordinate fallback
    assert len(run.positions) == 60
    grid = {tuple(p) for p in grid_positions(truth.shape, auto_steps(truth.shape, 60))}
    order = [tuple(p) for b in run.batches for p in b]
    assert set(order[: len(grid)]) == grid
    late = np.array(order[-15:])
    assert np.all(np.abs(late[:, 0] - 36.5) <= 8), late
    assert len(set(late[:, 1])) >= 8, "the wall batch is not spread along the wall"


def test_hybrid_goes_on_where_grid_midpoint_stops():
    yy, xx = np.mgrid[0:34, 0:80]
    truth = np.where(xx < 40 + 8 * np.sin(yy / 5), 1, 2)  # a wavy wall
    alone = run_sampler(GridMidpointSampler(), truth, budget=None, batch=10)
    assert alone.stopped == "exhausted"
    budget = len(alone.positions) + 20
    hybrid = run_sampler(HybridSampler(), truth, budget=budget, batch=10)
    assert np.array_equal(hybrid.positions[: len(alone.positions)], alone.positions)
    extra = hybrid.positions[len(alone.positions):]
    assert len(extra) == 20
    wall_x = 40 + 8 * np.sin(extra[:, 1] / 5)
    assert np.all(np.abs(extra[:, 0] - wall_x) <= 6), extra


def test_hybrid_follows_the_models_doubt():
    class DoubtfulAbove:  # sure below row 10, undecided above it
        classes_ = np.array([1, 2])

        def predict_proba(self, X):
            X = np.asarray(X)
            return np.where((X[:, 1] < 10)[:, None], 0.5, np.array([[1.0, 0.0]]))

    # Edges across the wall are longer below row 10: by length alone the sampler would go there.
    pos = [(x, y) for y in range(0, 20, 2) for x in ((10, 30) if y < 10 else (8, 32))]
    ctx = _context((20, 40), pos, [1 if x < 20 else 2 for x, _ in pos], budget=100, model=DoubtfulAbove())
    picks = ctx.candidates[HybridSampler(share=0).wall_batch(ctx, 2)]
    assert np.all(np.abs(picks[:, 0] - 20) <= 1) and np.all(picks[:, 1] < 10), picks


def test_wall_edges_are_gabriel_edges_across_classes():
    pos = np.array([(0, 0), (10, 0), (20, 0), (21, 0), (0, 10)])
    cls = np.array([1, 2, 1, 2, 1])
    edges = {tuple(sorted(e)) for e in wall_edges(pos, cls).tolist()}
    # (0,2) same class; (0,3) has (10,0) inside its circle; (2,3) adjacent: no pixel between
    assert edges == {(0, 1), (1, 2), (1, 4)}


# ---------------------------------------------------------------- registry


def test_registry_builds_every_builtin():
    for name, cls in SAMPLERS.items():
        assert isinstance(get_sampler(name, random_state=1), cls)
    assert get_sampler("grid-midpoint", step=7, random_state=0).step == 7
    assert get_sampler("random", step=None, random_state=3).random_state == 3


def test_registry_imports_module_class():
    sys.path.insert(0, str(EXAMPLES))
    try:
        sampler = get_sampler("custom_sampler:FarthestPointSampler", random_state=2)
    finally:
        sys.path.remove(str(EXAMPLES))
    assert type(sampler).__name__ == "FarthestPointSampler" and sampler.random_state == 2


def test_registry_entry_points(monkeypatch):
    ep = EntryPoint("space-filling", "al4dstem.strategies.random:RandomSampler", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep] if group == registry.ENTRY_POINT_GROUP else [])
    assert isinstance(get_sampler("space-filling"), RandomSampler)
    with pytest.raises(Al4dstemError, match="space-filling"):
        get_sampler("nope")


@pytest.mark.parametrize("spec, message", [
    ("nope", "known samplers are random, grid-midpoint, uncertainty, hybrid"),
    ("no_such_module_xyz:Thing", "cannot import"),
    ("al4dstem.strategies.random:Nothing", "no attribute"),
    ("al4dstem.errors:Al4dstemError", "not a sampler"),
    ("al4dstem.base:Sampler", "abstract"),
    ("al4dstem.strategies.random:np", "not a class"),
])
def test_registry_errors(spec, message):
    with pytest.raises(Al4dstemError, match=message):
        get_sampler(spec)


def test_registry_rejects_unknown_parameters():
    with pytest.raises(Al4dstemError, match="does not take step"):
        get_sampler("random", step=5)


def test_check_batch_rejects_labelled_positions():
    ctx = _context((3, 3), [(0, 0)], [1])
    bad = QueryContext(ctx.scan_shape, np.vstack([ctx.candidates, [[0, 0]]]), ctx.labelled_positions,
                       ctx.labelled_classes)
    with pytest.raises(AssertionError, match="labelled"):
        check_batch(bad, [len(bad.candidates) - 1], 1)


def test_uncertainty_cold_start_is_a_space_filling_seed_batch():
    """No model yet: a coarse grid across the scan (not a random clump); with labels, farthest from them."""
    from al4dstem.base import QueryContext
    from al4dstem.strategies import UncertaintySampler

    rows, cols = 34, 206
    ys, xs = np.mgrid[0:rows, 0:cols]
    cand = np.column_stack([xs.ravel(), ys.ravel()]).astype(np.int64)
    picks = cand[UncertaintySampler(random_state=0).query(QueryContext((rows, cols), cand), 10)]
    assert len(picks) == 10
    assert len(np.unique(picks[:, 1])) >= 2 and np.ptp(picks[:, 0]) > cols / 2 and np.ptp(picks[:, 1]) > rows / 3
    gaps = np.sort(np.hypot(*(picks[:, None] - picks[None]).transpose(2, 0, 1)) + np.eye(10) * 1e9, axis=1)[:, 0]
    assert gaps.min() >= 10  # spread: no two seed positions close together
    labelled = picks
    rest = np.array([p for p in cand.tolist() if p not in labelled.tolist()], dtype=np.int64)
    more = rest[UncertaintySampler(random_state=0).query(
        QueryContext((rows, cols), rest, labelled, np.zeros(10, np.int64)), 5)]
    d = np.hypot(*(more[:, None] - labelled[None]).transpose(2, 0, 1)).min(axis=1)
    assert d.min() >= 8  # the next seed batch fills the gaps between the first one's positions

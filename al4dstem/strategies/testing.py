"""The shared template test for samplers, and a tiny driver that runs one against a truth map.

Use it from your own tests (needs ``hypothesis``)::

    from al4dstem.strategies.testing import check_sampler

    def test_my_sampler():
        check_sampler(lambda seed: MySampler(random_state=seed))

``run_sampler`` is the minimal labelling loop (query, look up the truth, add the labels,
repeat) used by the template test and the benchmarks; it is not ``al4dstem.loop``: no oracle,
no label file, no model training beyond an optional cheap model factory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from al4dstem.base import QueryContext, Sampler
from al4dstem.strategies.common import as_positions
from al4dstem.strategies.coordinate import fit_coordinate_model

N_CLASSES = 3


def coherent_truth(scan_shape, rng: np.random.Generator, n_domains: int | None = None,
                   hole_fraction: float = 0.0) -> np.ndarray:
    """A random but spatially coherent ``(rows, cols)`` class map: Voronoi cells of random seeds.

    A fraction ``hole_fraction`` of positions is -1: the oracle has no answer there (a skip).
    """
    rows, cols = scan_shape
    n_domains = n_domains or int(rng.integers(1, 7))
    seeds = rng.random((n_domains, 2)) * [cols, rows]
    classes = rng.integers(0, N_CLASSES, n_domains)
    yy, xx = np.mgrid[0:rows, 0:cols]
    d2 = (xx[..., None] - seeds[:, 0]) ** 2 + (yy[..., None] - seeds[:, 1]) ** 2
    truth = classes[np.argmin(d2, axis=-1)].astype(np.int64)
    if hole_fraction > 0:
        truth[rng.random(truth.shape) < hole_fraction] = -1
    return truth


def check_batch(context: QueryContext, indices, n: int) -> np.ndarray:
    """Assert that ``indices`` is a valid answer to ``query(context, n)``; return it as int64."""
    idx = np.asarray(indices)
    assert idx.ndim == 1, f"query must return a 1-D array of indices, got shape {idx.shape}"
    assert idx.size == 0 or np.issubdtype(idx.dtype, np.integer), f"indices must be integers, got {idx.dtype}"
    idx = idx.astype(np.int64)
    m = len(context.candidates)
    assert len(idx) <= max(0, n), f"asked for at most {n} positions, got {len(idx)}"
    if context.budget is not None:
        left = max(0, context.budget - len(context.labelled_positions))
        assert len(idx) <= left, (
            f"budget {context.budget} with {len(context.labelled_positions)} labelled: got {len(idx)}")
    assert np.all((idx >= 0) & (idx < m)), f"indices out of range 0..{m - 1}: {idx[(idx < 0) | (idx >= m)]}"
    assert len(np.unique(idx)) == len(idx), f"repeated indices in one batch: {idx}"
    pos = as_positions(context.candidates)[idx]
    rows, cols = context.scan_shape
    assert np.all((pos >= 0) & (pos < [cols, rows])), f"positions outside the {cols} x {rows} scan: {pos}"
    labelled = {tuple(p) for p in as_positions(context.labelled_positions)}
    again = [tuple(p) for p in pos if tuple(p) in labelled]
    assert not again, f"proposed labelled positions {again}"
    return idx


@dataclass
class RunResult:
    """What ``run_sampler`` saw: labels in the order given, skips, the batches and why it stopped."""

    positions: np.ndarray
    classes: np.ndarray
    skipped: np.ndarray
    batches: list = field(default_factory=list)
    stopped: str = ""


def run_sampler(sampler: Sampler, truth: np.ndarray, budget: int | None, batch: int = 10,
                model_factory: Callable | None = None, start=None, exclude=None,
                max_calls: int | None = None) -> RunResult:
    """Drive ``sampler`` against a truth map until the budget is spent or it proposes nothing.

    ``truth`` is ``(rows, cols)`` with classes, -1 where the oracle has no answer (skipped: never
    proposed again, not counted against the budget). ``model_factory(positions, classes)``
    returns the model handed to the sampler (refitted before every query); by default
    samplers with ``needs_model`` get a ``CoordinateModel``. ``start`` is ``(positions,
    classes)`` already labelled; ``exclude`` positions are never candidates (e.g. a test set).
    Every batch is checked with ``check_batch``; more than ``max_calls`` queries (default: one
    per position, plus one) is an AssertionError: the run would not terminate.
    """
    truth = np.asarray(truth)
    rows, cols = truth.shape
    if model_factory is None and getattr(sampler, "needs_model", False):
        model_factory = fit_coordinate_model
    open_ = np.ones((rows, cols), dtype=bool)
    positions, classes, skipped = [], [], []
    if start is not None:
        for (x, y), c in zip(as_positions(start[0]), np.asarray(start[1]).ravel(), strict=True):
            positions.append((int(x), int(y)))
            classes.append(int(c))
            open_[y, x] = False
    if exclude is not None:
        ex = as_positions(exclude)
        open_[ex[:, 1], ex[:, 0]] = False
    result = RunResult(np.empty((0, 2), np.int64), np.empty(0, np.int64), np.empty((0, 2), np.int64))
    max_calls = rows * cols + 1 if max_calls is None else max_calls
    calls = 0
    while True:
        ys, xs = np.nonzero(open_)
        if budget is not None and len(positions) >= budget:
            result.stopped = "budget"
            break
        if len(xs) == 0:
            result.stopped = "no candidates"
            break
        pos = np.array(positions, dtype=np.int64).reshape(-1, 2)
        cls = np.array(classes, dtype=np.int64)
        model = model_factory(pos, cls) if model_factory is not None and len(cls) else None
        context = QueryContext((rows, cols), np.column_stack([xs, ys]).astype(np.int64), pos, cls, budget, model)
        idx = check_batch(context, sampler.query(context, batch), batch)
        if len(idx) == 0:
            result.stopped = "exhausted"
            break
        calls += 1
        assert calls <= max_calls, f"no end after {max_calls} queries"
        chosen = context.candidates[idx]
        result.batches.append(chosen)
        for x, y in chosen:
            open_[y, x] = False
            if truth[y, x] < 0:
                skipped.append((x, y))
            else:
                positions.append((int(x), int(y)))
                classes.append(int(truth[y, x]))
    result.positions = np.array(positions, dtype=np.int64).reshape(-1, 2)
    result.classes = np.array(classes, dtype=np.int64)
    result.skipped = np.array(skipped, dtype=np.int64).reshape(-1, 2)
    return result


def _random_context(seed: int, rows: int, cols: int, labelled_share: float, pending_share: float,
                    budget: int | None, with_model: bool) -> QueryContext:
    rng = np.random.default_rng(seed)
    truth = coherent_truth((rows, cols), rng)
    ys, xs = np.mgrid[0:rows, 0:cols]
    every = np.column_stack([xs.ravel(), ys.ravel()]).astype(np.int64)
    every = every[rng.permutation(len(every))]  # candidates in no particular order
    n_lab = int(labelled_share * len(every))
    n_pend = int(pending_share * (len(every) - n_lab))
    labelled, candidates = every[:n_lab], every[n_lab + n_pend:]
    classes = truth[labelled[:, 1], labelled[:, 0]]
    model = fit_coordinate_model(labelled, classes) if with_model else None
    return QueryContext((rows, cols), candidates, labelled, classes, budget, model)


def check_sampler(factory: Callable[[int], Sampler], max_examples: int = 25, max_side: int = 24) -> None:
    """The template test: every sampler must pass it. ``factory(seed)`` returns a fresh sampler.

    On random scans (up to ``max_side`` pixels a side), labelled sets, pending positions, batch
    sizes and budgets: indices in range, positions in the scan, no repeats in a batch, never a
    labelled or non-candidate position, at most ``n`` and within the budget, the context left
    unchanged, the same answer from a fresh sampler with the same seed and from the same
    sampler asked twice (samplers replay from the context); and full simulated runs against a
    spatially coherent truth map, with skips, terminate, propose something on the first query,
    and repeat themselves exactly for the same seed. Samplers with ``needs_model`` get a fitted
    ``CoordinateModel`` once there are labels, and None before.
    """
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    probe = factory(0)
    needs_model = bool(getattr(probe, "needs_model", False))
    config = settings(max_examples=max_examples, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    sides = st.integers(1, max_side)

    @config
    @given(seed=st.integers(0, 2**32 - 1), rows=sides, cols=sides,
           labelled_share=st.sampled_from([0.0, 0.02, 0.1, 0.4, 0.9, 1.0]),
           pending_share=st.sampled_from([0.0, 0.1, 0.5]),
           n=st.integers(0, 12), budget=st.none() | st.integers(0, 80),
           with_model=st.booleans(), random_state=st.integers(0, 2**31 - 1))
    def contract(seed, rows, cols, labelled_share, pending_share, n, budget, with_model, random_state):
        context = _random_context(seed, rows, cols, labelled_share, pending_share, budget,
                                  (with_model or needs_model) and labelled_share > 0)
        frozen = [a.copy() for a in (context.candidates, context.labelled_positions, context.labelled_classes)]
        sampler = factory(random_state)
        first = check_batch(context, sampler.query(context, n), n)
        for before, after in zip(frozen, (context.candidates, context.labelled_positions, context.labelled_classes),
                                 strict=True):
            assert np.array_equal(before, after), "query must not modify the context"
        again = np.asarray(sampler.query(context, n), dtype=np.int64)
        assert np.array_equal(first, again), f"same sampler, same context, different answers: {first} vs {again}"
        fresh = np.asarray(factory(random_state).query(context, n), dtype=np.int64)
        assert np.array_equal(first, fresh), f"same seed, same context, different answers: {first} vs {fresh}"
        can_ask = len(context.candidates) > 0 and (budget is None or budget > len(context.labelled_positions))
        if len(context.labelled_positions) == 0 and n > 0 and can_ask:
            assert len(first) > 0, "the first query of a run must propose something"

    @config
    @given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 20), cols=st.integers(1, 30),
           holes=st.sampled_from([0.0, 0.1, 0.3]), budget=st.integers(1, 60), batch=st.integers(1, 8),
           random_state=st.integers(0, 2**31 - 1))
    def full_run(seed, rows, cols, holes, budget, batch, random_state):
        truth = coherent_truth((rows, cols), np.random.default_rng(seed), hole_fraction=holes)
        run = run_sampler(factory(random_state), truth, budget, batch)
        assert len(run.positions) <= budget
        assert run.batches or truth.size == 0, "the first query of a run must propose something"
        seen = [tuple(p) for p in np.concatenate(run.batches)] if run.batches else []
        assert len(seen) == len(set(seen)), "a position was proposed twice in one run"
        replay = run_sampler(factory(random_state), truth, budget, batch)
        assert np.array_equal(run.positions, replay.positions), "same seed, same truth, different runs"

    contract()
    full_run()

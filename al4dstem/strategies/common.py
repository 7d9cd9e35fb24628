"""Small helpers shared by the samplers: batch room, seeded generators, position maps.

Samplers are stateless: everything they need is replayed from the ``QueryContext``, so the
seeded generator is derived from ``random_state`` *and* the context (labels so far, candidates
left). A rerun over the same label file therefore reproduces the same sequence.
"""

from __future__ import annotations

import numpy as np

from al4dstem.base import QueryContext
from al4dstem.errors import Al4dstemError


def room(context: QueryContext, n: int) -> int:
    """How many positions a sampler may return: ``n``, capped by the budget left and the candidates."""
    n = int(n)
    if context.budget is not None:
        n = min(n, int(context.budget) - len(context.labelled_positions))
    return max(0, min(n, len(context.candidates)))


def rng_for(random_state, context: QueryContext) -> np.random.Generator:
    """A generator for one query: seeded from ``random_state`` and the context's size when it is an int.

    ``None`` gives fresh entropy; a ``Generator`` or ``RandomState`` is used (and advanced) as is.
    """
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(2**32, dtype=np.int64))
    integer = isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool)
    if integer and random_state >= 0:
        return np.random.default_rng([int(random_state), len(context.labelled_positions), len(context.candidates)])
    raise Al4dstemError(
        f"random_state must be None, a non-negative integer or a numpy generator (got {random_state!r})"
    )


def as_positions(a) -> np.ndarray:
    """``(n, 2)`` int64 array of (x, y) positions."""
    return np.asarray(a, dtype=np.int64).reshape(-1, 2)


def index_map(positions: np.ndarray, shape: tuple[int, int], values=None) -> np.ndarray:
    """``(rows, cols)`` int64 map: ``values`` (default: row index) at each position, -1 elsewhere."""
    out = np.full(tuple(shape), -1, dtype=np.int64)
    positions = as_positions(positions)
    if len(positions):
        out[positions[:, 1], positions[:, 0]] = np.arange(len(positions)) if values is None else values
    return out


def tie_break(score: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Order of ``score`` from best (largest) to worst; equal scores in a seeded random order."""
    key = rng.permutation(len(score))
    return np.lexsort((key, -np.asarray(score, dtype=float)))


def farthest_point_order(points: np.ndarray, start: int = 0) -> np.ndarray:
    """Greedy farthest-point (coarse-to-fine) order of ``points``; ties go to the lower index."""
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    m = len(points)
    if m == 0:
        return np.empty(0, dtype=np.int64)
    order = np.empty(m, dtype=np.int64)
    dist = np.full(m, np.inf)
    pick = start
    for k in range(m):
        order[k] = pick
        dist = np.minimum(dist, ((points - points[pick]) ** 2).sum(axis=1))
        dist[pick] = -1.0  # chosen points stay at -1 through the minimum
        pick = int(np.argmax(dist))
    return order


def empty() -> np.ndarray:
    return np.empty(0, dtype=np.int64)

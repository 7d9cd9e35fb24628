"""The seed batch: where a model-driven sampler starts before any model exists.

Uncertainty needs a trained model, and a model needs labels of at least two classes. The
first batches are therefore space-filling: with no labels yet, a coarse grid centred in the
scan (the grid-midpoint sampler's own step rule, planned for ``2 * k`` labels so that about
``k`` grid points result), coarse-to-fine; once some labels exist (the grid saw one class
only, or a run resumes), the candidates farthest from every labelled position and from each
other. Both are deterministic for a given context and seed (ties broken by the seeded ``rng``).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from al4dstem.base import QueryContext
from al4dstem.strategies.common import as_positions, index_map

SEED_BATCH = 10  # labels in a seed batch: enough to see two classes on most scans, cheap to label


def seed_batch(context: QueryContext, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices into ``context.candidates`` of ``k`` space-filling positions (see module doc)."""
    from al4dstem.strategies.grid_midpoint import auto_steps, grid_positions

    cand = as_positions(context.candidates)
    k = int(min(k, len(cand)))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    labelled = as_positions(context.labelled_positions)
    if len(labelled):
        return farthest_from(cand, labelled, k, rng)
    shape = tuple(int(v) for v in context.scan_shape)
    grid = grid_positions(shape, auto_steps(shape, 2 * k))
    at = index_map(cand, shape)
    chosen = [int(i) for i in at[grid[:, 1], grid[:, 0]] if i >= 0][:k]
    if len(chosen) < k:  # grid points already asked or skipped: fill up farthest from the rest
        taken = cand[chosen] if chosen else np.empty((0, 2), np.int64)
        chosen += farthest_from(cand, taken, k - len(chosen), rng, exclude=chosen).tolist()
    return np.array(chosen, dtype=np.int64)


def farthest_from(cand: np.ndarray, labelled: np.ndarray, k: int, rng, exclude=()) -> np.ndarray:
    """``k`` candidates chosen greedily farthest from ``labelled`` and from each other."""
    cand = as_positions(cand)
    d = cKDTree(labelled).query(cand)[0] if len(labelled) else np.full(len(cand), np.inf)
    d = np.where(np.isinf(d), 1e9, d) + rng.random(len(cand)) * 1e-6
    d[list(exclude)] = -1.0
    picks = []
    for _ in range(min(k, len(cand) - len(exclude))):
        pick = int(np.argmax(d))
        picks.append(pick)
        d = np.minimum(d, np.hypot(*(cand - cand[pick]).T))
        d[pick] = -1.0
    return np.array(picks, dtype=np.int64)

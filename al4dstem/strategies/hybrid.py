"""Hybrid sampler: the paper's grid + midpoints, then bisection of wall-crossing edges, by the model's doubt.

Why. On a domain map every error sits in a band along a wall, so labels pay off at walls. The
grid-midpoint sampler finds the walls and pins them by binary search, but only along its
lattice: it stops when the lattice pairs are resolved (a wavy wall between two grid lines is
left to interpolation) or when its points are skipped, often with budget left. Plain
uncertainty sampling looks wherever the model is unsure, including noisy domain interiors,
and piles a batch onto one spot. The hybrid runs grid-midpoint for ``share`` of the budget
(default: all of it, as long as it proposes anything), then keeps bisecting off the lattice:

- wall-crossing edges: pairs of differently labelled positions that are neighbours in the
  Gabriel graph (no other label inside the circle on the pair as diameter), so each edge's
  midpoint lies on the wall a 1-nearest-neighbour map would draw between them;
- each edge scores ``length * (floor + u)``, ``u`` the model's normalised entropy at the
  midpoint: long edges are walls known least precisely, and the model's doubt (a pattern
  model sees mixed or ambiguous patterns) moves its midpoint up; the floor keeps every wall
  in play under a confident model;
- a batch takes the best midpoints, at most one per stretch of wall (no two closer than a
  quarter of their edge length); a skipped midpoint is stood in for by the nearest candidate
  within a quarter of its edge; with no wall seen yet it explores (farthest point).

The model is only asked about the midpoints, not the whole scan: cheap for a CNN. Without a
model in the context (``context.model`` is None) it fits a 5-nearest-neighbour,
distance-weighted classifier on the coordinates of the labels so far (``CoordinateModel``).

Evidence (``benchmarks/bench_samplers.py``, coordinate 1-NN scorer): on synthetic 2-D maps
handing over to the model phase earlier (share 0.5 or 0.75) was no better than letting the
binary search finish, hence the default share of 1.0; the second phase then pays off where
grid-midpoint stops short, e.g. on the real map when the oracle lacks most positions.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree
from sklearn.base import BaseEstimator

from al4dstem.base import QueryContext, Sampler
from al4dstem.strategies.common import as_positions, empty, index_map, rng_for, room, tie_break
from al4dstem.strategies.coordinate import fit_coordinate_model
from al4dstem.strategies.grid_midpoint import GridMidpointSampler
from al4dstem.strategies.seed import farthest_from

FLOOR = 0.1  # weight of an edge the model is sure about, relative to 1.1 for a fully unsure one


class HybridSampler(BaseEstimator, Sampler):
    """Grid-midpoint for ``share`` of the budget (the grid always completes), then edge bisection.

    ``step`` is passed to the grid-midpoint phase (None: planned from the whole budget, so the
    grid alone takes about half of it). The second phase starts when ``share`` of the budget
    is labelled or the grid-midpoint sampler has nothing left (walls pinned on its lattice, or
    its points skipped); with no budget in the context, only then. ``random_state`` breaks
    exact ties.
    """

    def __init__(self, share=1.0, step=None, random_state=None):
        self.share = share
        self.step = step
        self.random_state = random_state

    def query(self, context: QueryContext, n: int) -> np.ndarray:
        k = room(context, n)
        if k == 0:
            return empty()
        first = GridMidpointSampler(step=self.step).next_round(context)
        n_labelled = len(context.labelled_positions)
        target = np.inf if context.budget is None else float(self.share) * int(context.budget)
        if first.stage == "grid":
            return first.indices[:k]
        if first.stage == "midpoints" and n_labelled < target:
            return first.indices[: int(min(k, np.ceil(target - n_labelled)))]
        return self.wall_batch(context, k)

    def wall_batch(self, context: QueryContext, k: int) -> np.ndarray:
        """The second phase: bisect the longest, most doubtful wall-crossing edges (see module doc)."""
        labelled = as_positions(context.labelled_positions)
        classes = np.asarray(context.labelled_classes, dtype=np.int64)
        cand = as_positions(context.candidates)
        rng = rng_for(self.random_state, context)
        edges = wall_edges(labelled, classes)
        if len(edges) == 0:  # no wall seen yet: explore, farthest from everything labelled
            return farthest_from(cand, labelled, k, rng)
        p, q = labelled[edges[:, 0]], labelled[edges[:, 1]]
        length = np.hypot(*(p - q).T)
        mids = (p + q) // 2
        model = context.model if context.model is not None else fit_coordinate_model(labelled, classes)
        doubt = _normalised_entropy(np.asarray(model.predict_proba(mids), dtype=float))
        score = length * (FLOOR + doubt)
        tolerance = np.maximum(0, np.floor(length / 4))  # stand-in zone for a skipped midpoint
        candidate_at = index_map(cand, tuple(int(v) for v in context.scan_shape))
        tree = cKDTree(cand) if len(cand) else None
        chosen, at = [], []
        for e in tie_break(score, rng):
            x, y = mids[e]
            idx = candidate_at[y, x]
            if idx < 0 and tree is not None:  # skipped or pending: the nearest candidate close enough
                dist, row = tree.query(mids[e], distance_upper_bound=tolerance[e] + 0.5)
                idx = row if np.isfinite(dist) else -1
            if idx < 0 or idx in chosen:
                continue
            if at and np.min(np.hypot(*(np.array(at) - cand[idx]).T)) < length[e] / 4:
                continue  # the batch already bisects this stretch of wall
            chosen.append(int(idx))
            at.append(cand[idx])
            if len(chosen) == k:
                break
        if len(chosen) < k:  # fewer open wall edges than asked: fill up by exploring
            taken = np.vstack([labelled, cand[chosen]]) if chosen else labelled
            rest = farthest_from(cand, taken, k - len(chosen), rng, exclude=chosen)
            chosen += rest.tolist()
        return np.array(chosen, dtype=np.int64)


def wall_edges(positions: np.ndarray, classes: np.ndarray, neighbours: int = 12) -> np.ndarray:
    """Pairs ``(i, j)`` of differently labelled positions whose midpoint lies on the 1-NN wall.

    A pair qualifies when no other labelled position lies strictly inside the circle having
    the pair as diameter (an edge of the Gabriel graph, searched among each position's
    ``neighbours`` nearest) and its midpoint pixel differs from both ends.
    """
    n = len(positions)
    if n < 2 or len(np.unique(classes)) < 2:
        return np.empty((0, 2), dtype=np.int64)
    pts = positions.astype(float)
    tree = cKDTree(pts)
    _, nb = tree.query(pts, k=min(n, neighbours + 1))
    i = np.repeat(np.arange(n), nb.shape[1] - 1)
    j = nb[:, 1:].ravel()
    keep = (j < n) & (i < j) & (classes[i] != classes[np.minimum(j, n - 1)])
    i, j = i[keep], j[keep]
    centre = (pts[i] + pts[j]) / 2
    radius = np.hypot(*(pts[i] - pts[j]).T) / 2
    nearest, _ = tree.query(centre)
    mid = (positions[i] + positions[j]) // 2
    proper = ~(np.all(mid == positions[i], axis=1) | np.all(mid == positions[j], axis=1))
    gabriel = nearest >= radius - 1e-9
    return np.column_stack([i, j])[gabriel & proper]


def _normalised_entropy(proba: np.ndarray) -> np.ndarray:
    """Entropy of each row divided by log(n_classes): 0 sure, 1 uniform."""
    if proba.shape[1] < 2:
        return np.zeros(len(proba))
    p = np.clip(proba, 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1) / np.log(proba.shape[1])

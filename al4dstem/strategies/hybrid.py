"""Hybrid sampler: the paper's grid + midpoints first, then the model's doubts along predicted walls.

Why. On a domain map the labels that matter are those at walls: a classifier is right deep
inside a domain after a handful of labels, and every error sits in a band along a wall. The
grid-midpoint sampler finds the walls but then spends its labels on binary searches along the
few grid lines only, and a wavy wall between two lines is left to interpolation; plain
uncertainty sampling looks everywhere the model is unsure, including noisy domain interiors,
and piles a batch onto one spot. The hybrid keeps the grid (coverage, and the first wall
crossings) and a share of midpoints, then spends the rest of the budget on positions with

    score = (floor + u(x)) * exp(-d_wall(x)^2 / 2 s^2) * (1 - exp(-d_near(x)^2 / 2 s^2))

where ``u`` is the model's normalised entropy, ``d_wall`` the distance to the nearest class
change in the predicted map (labels where known, model predictions elsewhere), ``d_near`` the
distance to the nearest labelled or already chosen position, and ``s`` half the mean label
spacing ``sqrt(rows * cols / n_labels)``. The floor keeps walls attractive under a confident
model (a 1-nearest-neighbour model is never "unsure"); the last factor spreads a batch along
the wall instead of stacking it. Positions are chosen greedily, one at a time.

Without a model in the context (``context.model`` is None), it fits a 5-nearest-neighbour,
distance-weighted classifier on the coordinates of the labels so far (``CoordinateModel``):
its predicted walls are the Voronoi boundaries between differently labelled positions, which
is where the next label is most informative for any spatially smooth domain map.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import distance_transform_edt
from scipy.spatial import cKDTree
from sklearn.base import BaseEstimator

from al4dstem.base import QueryContext, Sampler
from al4dstem.strategies.common import as_positions, empty, index_map, rng_for, room
from al4dstem.strategies.coordinate import fit_coordinate_model
from al4dstem.strategies.grid_midpoint import GridMidpointSampler

FLOOR = 0.1  # score of a fully confident position on a predicted wall, relative to 1 for "unsure"


class HybridSampler(BaseEstimator, Sampler):
    """Grid-midpoint for ``share`` of the budget (the grid always completes), then walls x doubt.

    ``step`` is passed to the grid-midpoint phase (None: planned from the whole budget, so the
    grid alone takes about half of it and midpoint rounds the next quarter with the default
    share). The second phase also starts early when the grid-midpoint sampler has nothing left
    (all walls pinned, or its points skipped); with no budget in the context it starts only
    then. ``random_state`` breaks exact ties.
    """

    def __init__(self, share=0.75, step=None, random_state=None):
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
        """The second phase: ``k`` candidates chosen greedily by the score in the module doc."""
        rows, cols = (int(v) for v in context.scan_shape)
        cand = as_positions(context.candidates)
        labelled = as_positions(context.labelled_positions)
        classes = np.asarray(context.labelled_classes, dtype=np.int64)
        model = context.model if context.model is not None else fit_coordinate_model(labelled, classes)
        scale = max(1.0, np.sqrt(rows * cols / max(1, len(labelled))) / 2)  # half the mean label spacing
        if model is None:
            doubt, predicted = np.zeros(len(cand)), np.full(len(cand), -1)
        else:
            proba = np.asarray(model.predict_proba(cand), dtype=float)
            doubt = _normalised_entropy(proba)
            predicted = np.asarray(model.classes_)[np.argmax(proba, axis=1)].astype(np.int64)
        class_map = index_map(cand, (rows, cols), predicted)
        if len(labelled):
            class_map[labelled[:, 1], labelled[:, 0]] = classes
        d_wall = _distance_to_walls(class_map)[cand[:, 1], cand[:, 0]]
        score = (FLOOR + doubt) * np.exp(-0.5 * (d_wall / scale) ** 2)
        d_near = cKDTree(labelled).query(cand)[0] if len(labelled) else np.full(len(cand), np.inf)
        jitter = rng_for(self.random_state, context).random(len(cand)) * 1e-9
        chosen = np.empty(k, dtype=np.int64)
        for t in range(k):
            total = score * -np.expm1(-0.5 * (d_near / scale) ** 2) + jitter
            total[chosen[:t]] = -np.inf
            chosen[t] = int(np.argmax(total))
            d_near = np.minimum(d_near, np.hypot(*(cand - cand[chosen[t]]).T))
        return chosen


def _normalised_entropy(proba: np.ndarray) -> np.ndarray:
    """Entropy of each row divided by log(n_classes): 0 sure, 1 uniform."""
    if proba.shape[1] < 2:
        return np.zeros(len(proba))
    p = np.clip(proba, 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=1) / np.log(proba.shape[1])


def _distance_to_walls(class_map: np.ndarray) -> np.ndarray:
    """Distance of each pixel to the nearest pixel beside a class change (0 everywhere when none)."""
    wall = np.zeros(class_map.shape, dtype=bool)
    for axis in (0, 1):
        a = np.moveaxis(class_map, axis, 0)
        change = (a[1:] >= 0) & (a[:-1] >= 0) & (a[1:] != a[:-1])
        w = np.moveaxis(wall, axis, 0)
        w[1:] |= change
        w[:-1] |= change
    if not wall.any():  # one class predicted: no wall to prefer, every position is as good
        return np.zeros(class_map.shape)
    return distance_transform_edt(~wall)

"""The paper's grid + midpoint ("binary search") sampler, done right.

1. A coarse grid with steps ``(sx, sy)`` in x and y, centred in the scan, proposed in
   coarse-to-fine (farthest-point) order so that a budget cut short still spreads the grid.
2. Rounds of midpoints. Round ``k`` works on the lattice ``Ux_k x Uy_k``: level 0 is the grid,
   level ``k+1`` adds the midpoints of every pair of neighbouring lines of level ``k``, so the
   lattice spacing (the *radius*) halves from level to level. Each labelled point on the
   lattice looks at its 8 lattice neighbours, takes the nearest one with a different label,
   and proposes the midpoint of the two. Midpoints already labelled, skipped or pending (not in
   the candidates) are not proposed again. When a round proposes nothing the radius halves;
   when nothing is left at radius 1 (midpoints would coincide with their ends) it stops and
   returns an empty batch.

Skips. A grid point or midpoint that was skipped ("can't tell") would leave a hole in the grid
and end the binary search there. Instead the nearest candidate within a quarter of the current
spacing (per axis) stands in for it, and a label within that distance of a node counts as the
node's own. With every position available and no labels from elsewhere, the sampler
proposes exactly the lattice points above.

The sampler keeps no state: each query replays the lattice from the context (labels so far,
candidates left), so resuming from a label file reproduces the same sequence. A batch never
spans two rounds, because a round depends on the answers to the previous one: a short batch
means "label these first", only an empty one means "done".

Step rule when ``step`` is None (``auto_steps``): aim the grid at half the budget (100 when no
budget is given), the other half left for midpoints. Cells are near square: the shorter axis
gets ``length / cell`` lines with ``cell = sqrt(rows * cols / grid_target)``, the longer one
``grid_target / lines_short``; every axis gets at least 3 lines (2 when the target is under 9
points, 1 under 4) and at most one per pixel; the step per axis is the integer whose line count
is nearest. Budgets 50, 100 and 250 on a 206 x 34 scan give steps (sx, sy) = (29, 16), (13, 16)
and (8, 8): 24, 48 and 130 grid points on 3, 3 and 5 rows. The paper's single s = 30 covers
only rows 0 and 30 of that scan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree
from sklearn.base import BaseEstimator

from al4dstem.base import QueryContext, Sampler
from al4dstem.errors import Al4dstemError
from al4dstem.strategies.common import empty, farthest_point_order, index_map, room

PLANNING_BUDGET = 100  # budget assumed for the step rule when the context gives none
GRID_SHARE = 0.5  # share of the budget the automatic grid aims to use
MIN_LINES = 3  # lines per axis the automatic grid aims for

# The 8 neighbour directions (dx, dy); on equal distances the earlier one wins.
DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, 1), (1, -1), (-1, -1))


def _round_half_up(v: float) -> int:
    return int(np.floor(v + 0.5))


def auto_steps(scan_shape, budget: int | None) -> tuple[int, int]:
    """Grid steps ``(sx, sy)`` for a scan ``(rows, cols)`` and a label budget (see module doc)."""
    rows, cols = (int(v) for v in scan_shape)
    planning = PLANNING_BUDGET if budget is None else max(1, int(budget))
    target = max(1, min(rows * cols, _round_half_up(GRID_SHARE * planning)))
    min_lines = int(np.clip(np.floor(np.sqrt(target)), 1, MIN_LINES))
    cell = np.sqrt(rows * cols / target)  # side of a square cell holding one grid point
    lengths = {"x": cols, "y": rows}
    short, long = ("y", "x") if rows <= cols else ("x", "y")
    lines = {}
    lines[short] = int(np.clip(_round_half_up(lengths[short] / cell),
                               min(min_lines, lengths[short]), lengths[short]))
    lines[long] = int(np.clip(_round_half_up(target / lines[short]),
                              min(min_lines, lengths[long]), lengths[long]))
    return tuple(_step(lengths[a], lines[a], min(min_lines, lengths[a])) for a in ("x", "y"))


def _step(length: int, lines: int, min_lines: int) -> int:
    """The step whose line count is nearest ``lines`` (not under ``min_lines``; fewer on a tie)."""
    if lines <= 1:
        return length
    options = {(length - 1) // (lines - 1), -(-(length - 1) // (lines - 1))}
    count = {s: (length - 1) // s + 1 for s in options}
    return min(options, key=lambda s: (count[s] < min_lines, abs(count[s] - lines), count[s]))


def axis_lines(length: int, step: int) -> np.ndarray:
    """Grid lines along one axis: every ``step`` pixels, the set centred in ``0..length-1``."""
    n = (length - 1) // step + 1
    start = ((length - 1) - step * (n - 1)) // 2
    return start + step * np.arange(n, dtype=np.int64)


def grid_positions(scan_shape, steps) -> np.ndarray:
    """The coarse grid as ``(n, 2)`` (x, y) positions in coarse-to-fine (farthest-point) order."""
    rows, cols = scan_shape
    gx, gy = np.meshgrid(axis_lines(cols, steps[0]), axis_lines(rows, steps[1]))
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    return grid[farthest_point_order(grid)]


def _refine(lines: np.ndarray) -> np.ndarray:
    """The next level's lines: these plus the midpoint of every gap of 2 pixels or more."""
    gaps = np.diff(lines)
    mids = (lines[:-1] + lines[1:])[gaps >= 2] // 2
    return np.union1d(lines, mids)


def _gap(lines: np.ndarray) -> int:
    return int(np.diff(lines).max()) if len(lines) > 1 else 0


@dataclass
class Round:
    """What ``GridMidpointSampler`` would do next.

    ``stage`` is "grid", "midpoints" or "done"; ``radius`` the lattice spacing of a midpoint
    round (largest over x and y; 0 otherwise); ``indices`` every open proposal of the round,
    into ``context.candidates``, in the order they are proposed.
    """

    stage: str
    radius: int
    indices: np.ndarray


class GridMidpointSampler(BaseEstimator, Sampler):
    """Coarse grid, then midpoints between neighbours with different labels, halving the radius.

    ``step``: one int for both axes, a pair ``(sx, sy)``, or None for the automatic rule.
    ``random_state`` is accepted for a uniform interface; the sampler is deterministic.
    """

    def __init__(self, step=None, random_state=None):
        self.step = step
        self.random_state = random_state

    def steps(self, scan_shape, budget: int | None = None) -> tuple[int, int]:
        """The ``(sx, sy)`` this sampler uses on a scan; a step larger than the scan is an error."""
        rows, cols = (int(v) for v in scan_shape)
        if self.step is None:
            return auto_steps((rows, cols), budget)
        raw = self.step if isinstance(self.step, (tuple, list, np.ndarray)) else (self.step, self.step)
        try:
            sx, sy = (int(v) for v in raw)
            valid = len(raw) == 2 and all(float(v) == int(v) for v in raw)
        except (TypeError, ValueError):
            valid = False
        if not valid or sx < 1 or sy < 1:
            raise Al4dstemError(f"grid step must be a positive integer or a pair of them (got {self.step!r})")
        longest = max(rows, cols) - 1
        if longest >= 1 and max(sx, sy) > longest:
            raise Al4dstemError(
                f"grid step {max(sx, sy)} is larger than the scan ({cols} x {rows}, cols x rows): "
                f"use a step of at most {longest}"
            )
        return sx, sy

    def query(self, context: QueryContext, n: int) -> np.ndarray:
        k = room(context, n)
        if k == 0:
            return empty()
        return self.next_round(context).indices[:k]

    def next_round(self, context: QueryContext) -> Round:
        """The open grid points, else the first midpoint round with open proposals, else "done"."""
        shape = tuple(int(v) for v in context.scan_shape)
        sx, sy = self.steps(shape, context.budget)
        near = _Nearby(context)
        grid = grid_positions(shape, (sx, sy))
        tolerance = (sx // 4, sy // 4)
        todo = grid[near.label(grid, tolerance) < 0]
        proposals = _unique(near.candidate(todo, tolerance))
        if len(proposals):
            return Round("grid", 0, proposals)
        ux, uy = axis_lines(shape[1], sx), axis_lines(shape[0], sy)
        while True:
            radius = max(_gap(ux), _gap(uy))
            if radius <= 1:
                return Round("done", 0, empty())
            gx, gy = np.meshgrid(ux, uy)
            nodes = np.column_stack([gx.ravel(), gy.ravel()])
            lattice = near.label(nodes, (_gap(ux) // 4, _gap(uy) // 4)).reshape(len(uy), len(ux))
            mids = _midpoints(lattice, ux, uy)
            ux, uy = _refine(ux), _refine(uy)
            tolerance = (_gap(ux) // 4, _gap(uy) // 4)  # the midpoints are nodes of the next level
            mids = mids[near.label(mids, tolerance) < 0]
            if len(mids):
                proposals = near.candidate(mids, tolerance)
                keep = proposals >= 0
                if keep.any():
                    order = farthest_point_order(mids[keep])
                    return Round("midpoints", radius, _unique(proposals[keep][order]))


class _Nearby:
    """Labels and candidates at, or within a tolerance of, lattice nodes.

    A node nobody could label (skipped: neither labelled nor a candidate) is stood in for by
    the nearest candidate within the tolerance, and a label within the tolerance counts as the
    node's own. The tolerance is a quarter of the lattice spacing per axis, so the stand-in
    zones of neighbouring nodes never overlap, and it is 0 (exact) once the spacing is under 4.
    """

    def __init__(self, context: QueryContext):
        self.shape = tuple(int(v) for v in context.scan_shape)
        self.candidate_at = index_map(context.candidates, self.shape)
        labelled = np.asarray(context.labelled_positions, dtype=np.int64).reshape(-1, 2)
        self.label_at = index_map(labelled, self.shape, np.asarray(context.labelled_classes, np.int64))
        # Row-major order, so that ties between equally near positions never depend on input order.
        ys, xs = np.nonzero(self.label_at >= 0)
        self.labelled = np.column_stack([xs, ys])
        ys, xs = np.nonzero(self.candidate_at >= 0)
        self.candidates = np.column_stack([xs, ys])

    def label(self, points: np.ndarray, tolerance) -> np.ndarray:
        """The label at each point, else of the nearest labelled position within the tolerance, else -1."""
        found = self._nearest(self.labelled, points, tolerance)
        out = np.full(len(points), -1, dtype=np.int64)
        hit = found >= 0
        out[hit] = self.label_at[self.labelled[found[hit], 1], self.labelled[found[hit], 0]]
        return out

    def candidate(self, points: np.ndarray, tolerance) -> np.ndarray:
        """Candidate index at each point, else of the nearest candidate within the tolerance, else -1."""
        found = self._nearest(self.candidates, points, tolerance)
        out = np.full(len(points), -1, dtype=np.int64)
        hit = found >= 0
        out[hit] = self.candidate_at[self.candidates[found[hit], 1], self.candidates[found[hit], 0]]
        return out

    @staticmethod
    def _nearest(pool: np.ndarray, points: np.ndarray, tolerance) -> np.ndarray:
        """Row in ``pool`` nearest each point within the tolerance ellipse (semi-axes t + 1/2), or -1."""
        points = np.asarray(points, dtype=np.int64).reshape(-1, 2)
        if len(pool) == 0 or len(points) == 0:
            return np.full(len(points), -1, dtype=np.int64)
        scale = 1.0 / (np.asarray(tolerance, dtype=float) + 0.5)  # integer offsets <= t fall inside
        dist, row = cKDTree(pool * scale).query(points * scale, distance_upper_bound=1.0)
        return np.where(np.isfinite(dist), row, -1).astype(np.int64)


def _unique(indices: np.ndarray) -> np.ndarray:
    """``indices`` without -1 and without repeats, first occurrence kept, as int64."""
    indices = np.asarray(indices, dtype=np.int64)
    indices = indices[indices >= 0]
    _, first = np.unique(indices, return_index=True)
    return indices[np.sort(first)]


def _midpoints(lab: np.ndarray, ux: np.ndarray, uy: np.ndarray) -> np.ndarray:
    """Midpoints proposed by one round on the lattice ``ux x uy`` with node labels ``lab``.

    ``lab`` is ``(len(uy), len(ux))``, -1 where a node has no label. Returns unique (x, y), row-major.
    """
    pad_lab = np.pad(lab, 1, constant_values=-1)
    pad_x = np.pad(ux, 1, constant_values=0)
    pad_y = np.pad(uy, 1, constant_values=0)
    ny, nx = lab.shape
    best = np.full(lab.shape, np.inf)
    mid_x = np.zeros(lab.shape, np.int64)
    mid_y = np.zeros(lab.shape, np.int64)
    xs, ys = ux[None, :], uy[:, None]
    for dx, dy in DIRECTIONS:
        nb_lab = pad_lab[1 + dy: 1 + dy + ny, 1 + dx: 1 + dx + nx]
        nb_x = pad_x[1 + dx: 1 + dx + nx][None, :]
        nb_y = pad_y[1 + dy: 1 + dy + ny][:, None]
        d2 = ((nb_x - xs) ** 2 + (nb_y - ys) ** 2).astype(float)
        mx, my = (xs + nb_x) // 2, (ys + nb_y) // 2
        proper = ~(((mx == xs) & (my == ys)) | ((mx == nb_x) & (my == nb_y)))  # strictly between the two
        ok = (lab >= 0) & (nb_lab >= 0) & (nb_lab != lab) & proper & (d2 < best)
        best = np.where(ok, d2, best)
        mid_x = np.where(ok, np.broadcast_to(mx, lab.shape), mid_x)
        mid_y = np.where(ok, np.broadcast_to(my, lab.shape), mid_y)
    found = np.isfinite(best)
    mids = np.column_stack([mid_x[found], mid_y[found]])
    if len(mids) == 0:
        return mids.reshape(0, 2)
    _, first = np.unique(mids[:, 1] * (ux.max() + 1) + mids[:, 0], return_index=True)
    return mids[np.sort(first)]

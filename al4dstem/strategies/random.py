"""Uniform random sampling without replacement: the paper's baseline."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from al4dstem.base import QueryContext, Sampler
from al4dstem.strategies.common import empty, rng_for, room


class RandomSampler(BaseEstimator, Sampler):
    """Picks candidates uniformly at random.

    With an integer ``random_state`` the whole scan is ranked once by a seeded permutation
    and each query takes the best-ranked candidates, so the sequence does not depend on how
    the run was split into rounds: a resumed run (after quit, undo or a crash) draws exactly
    what an uninterrupted one would.
    """

    def __init__(self, random_state=None):
        self.random_state = random_state

    def query(self, context: QueryContext, n: int) -> np.ndarray:
        k = room(context, n)
        if k == 0:
            return empty()
        rows, cols = context.scan_shape
        if not isinstance(self.random_state, (int, np.integer)) or self.random_state < 0:
            # fresh entropy or a caller's generator: plain draws (rng_for also rejects bad seeds)
            rng = rng_for(self.random_state, context)
            return rng.choice(len(context.candidates), size=k, replace=False).astype(np.int64)
        rank = np.random.default_rng(int(self.random_state)).permutation(rows * cols)
        cand = np.asarray(context.candidates, dtype=np.int64).reshape(-1, 2)
        order = np.argsort(rank[cand[:, 1] * cols + cand[:, 0]], kind="stable")
        return order[:k].astype(np.int64)

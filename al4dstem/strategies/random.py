"""Uniform random sampling without replacement: the paper's baseline."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from al4dstem.base import QueryContext, Sampler
from al4dstem.strategies.common import empty, rng_for, room


class RandomSampler(BaseEstimator, Sampler):
    """Picks candidates uniformly at random.

    With an integer ``random_state`` each query is seeded from it and from the context, so a
    resumed run draws the same positions as an uninterrupted one.
    """

    def __init__(self, random_state=None):
        self.random_state = random_state

    def query(self, context: QueryContext, n: int) -> np.ndarray:
        k = room(context, n)
        if k == 0:
            return empty()
        rng = rng_for(self.random_state, context)
        return rng.choice(len(context.candidates), size=k, replace=False).astype(np.int64)

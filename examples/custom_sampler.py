"""A custom sampler: farthest-point (space-filling) sampling.

Each pick is the candidate farthest from every labelled position and every position already
picked in the batch, so a few labels cover the scan evenly without a grid. It is a complete
sampler: select it with

    al4dstem label DATA --labels L.csv --budget 50 --sampler custom_sampler:FarthestPointSampler

(with ``examples/`` on ``PYTHONPATH``), or register it as an entry point in the
``al4dstem.samplers`` group. Check it with the shared template test::

    from al4dstem.strategies.testing import check_sampler
    check_sampler(lambda seed: FarthestPointSampler(random_state=seed))
"""

from __future__ import annotations

import numpy as np

from al4dstem.base import QueryContext, Sampler


class FarthestPointSampler(Sampler):
    """Greedy farthest-point sampling over scan positions.

    ``random_state`` picks the first position of a run (no labels yet) and breaks exact ties;
    everything else is deterministic, and nothing is remembered between calls.
    """

    def __init__(self, random_state=None):
        self.random_state = random_state

    def query(self, context: QueryContext, n: int) -> np.ndarray:
        candidates = np.asarray(context.candidates, dtype=float).reshape(-1, 2)
        labelled = np.asarray(context.labelled_positions, dtype=float).reshape(-1, 2)
        k = min(int(n), len(candidates))
        if context.budget is not None:
            k = min(k, context.budget - len(labelled))
        if k <= 0:
            return np.empty(0, dtype=np.int64)
        # Seeded from random_state and the context's size, so a resumed run replays exactly.
        seed = None if self.random_state is None else [self.random_state, len(labelled), len(candidates)]
        rng = np.random.default_rng(seed)
        jitter = rng.random(len(candidates)) * 1e-6  # ties only: distances differ by >= 1e-3
        nearest = np.full(len(candidates), np.inf)
        for p in labelled:
            nearest = np.minimum(nearest, np.hypot(*(candidates - p).T))
        picks = []
        for _ in range(k):
            pick = int(np.argmax(np.where(np.isinf(nearest), 1.0, nearest) + jitter))
            picks.append(pick)
            nearest = np.minimum(nearest, np.hypot(*(candidates - candidates[pick]).T))
            nearest[pick] = -1.0  # never again
        return np.array(picks, dtype=np.int64)

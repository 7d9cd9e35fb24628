"""Uncertainty sampling through modAL: least confident, margin or entropy; top-k or a diverse batch.

The model is any scikit-learn-style classifier over scan positions (``X`` = ``(n, 2)``
positions, see ``al4dstem.base.Model``); the loop refits it between rounds. modAL is imported
on first use (it pulls in pandas and takes seconds to import).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator

from al4dstem.base import QueryContext, Sampler
from al4dstem.errors import Al4dstemError
from al4dstem.strategies.common import as_positions, empty, rng_for, room
from al4dstem.strategies.seed import seed_batch

MEASURES = ("least-confident", "margin", "entropy")
BATCHES = ("top", "diverse")


class _LearnerView:
    """The few attributes modAL's batch functions read from an ActiveLearner, around a fitted model."""

    on_transformed = False

    def __init__(self, model, X_training):
        self.model = model
        self.X_training = X_training

    def predict_proba(self, X, **kwargs):
        return self.model.predict_proba(X, **kwargs)


class UncertaintySampler(BaseEstimator, Sampler):
    """Asks for the positions the model is least sure about.

    ``measure``: "least-confident" (1 - max p), "margin" (p1 - p2, smallest first) or "entropy".
    ``batch``: "top" takes the k most uncertain (equal scores in a seeded random order);
    "diverse" is modAL's ranked batch (Cardoso et al. 2017), trading uncertainty against the
    distance to labelled and already chosen positions.
    Before any model exists (``context.model`` is None) it proposes a space-filling seed batch
    (``al4dstem.strategies.seed``: a coarse grid, then the positions farthest from the labels),
    so that the loop has labels of several classes to fit the first model on.
    """

    needs_model = True

    def __init__(self, measure="least-confident", batch="top", random_state=None):
        self.measure = measure
        self.batch = batch
        self.random_state = random_state

    def query(self, context: QueryContext, n: int) -> np.ndarray:
        if self.measure not in MEASURES:
            raise Al4dstemError(f"unknown uncertainty measure {self.measure!r} (expected one of {', '.join(MEASURES)})")
        if self.batch not in BATCHES:
            raise Al4dstemError(f"unknown batch mode {self.batch!r} (expected one of {', '.join(BATCHES)})")
        k = room(context, n)
        if k == 0:
            return empty()
        rng = rng_for(self.random_state, context)
        if context.model is None:
            return seed_batch(context, k, rng)
        X = as_positions(context.candidates)
        if self.batch == "top":
            return self._top(context.model, X, k, rng)
        return self._diverse(context.model, X, as_positions(context.labelled_positions), k)

    def _top(self, model, X, k, rng) -> np.ndarray:
        from modAL.uncertainty import entropy_sampling, margin_sampling, uncertainty_sampling

        sampling = {"least-confident": uncertainty_sampling, "margin": margin_sampling,
                    "entropy": entropy_sampling}[self.measure]
        perm = rng.permutation(len(X))  # modAL breaks ties by position in X: make that seeded
        idx, values = sampling(model, X[perm], n_instances=k)
        values = np.asarray(values, dtype=float)
        order = np.argsort(values if self.measure == "margin" else -values, kind="stable")
        return perm[np.asarray(idx)[order]].astype(np.int64)

    def _diverse(self, model, X, labelled, k) -> np.ndarray:
        from modAL.batch import ranked_batch, uncertainty_batch_sampling

        if self.measure == "least-confident" and len(labelled):
            view = _LearnerView(model, labelled)
            idx, _ = uncertainty_batch_sampling(view, X, n_instances=k)
            return np.asarray(idx, dtype=np.int64)
        # Other measures (and no labels yet): modAL's ranked batch on our scores.
        scores = self.scores(model, X)
        pool = np.arange(len(X))
        seed = np.empty(0, dtype=np.int64)
        if len(labelled) == 0:  # modAL's cold start is O(m^2) in memory: start from the top one instead
            seed = np.array([int(np.argmax(scores))], dtype=np.int64)
            labelled, pool = X[seed], np.delete(pool, seed)
        want = min(k - len(seed), len(pool))
        if want == 0:
            return seed
        view = _LearnerView(model, labelled)
        idx, _ = ranked_batch(view, X[pool], scores[pool], n_instances=want,
                              metric="euclidean", n_jobs=None)
        return np.concatenate([seed, pool[np.asarray(idx, dtype=np.int64)]]).astype(np.int64)

    def scores(self, model, X) -> np.ndarray:
        """Uncertainty of each position in [0, 1], larger = less sure (margin as 1 - margin)."""
        from modAL.uncertainty import classifier_entropy, classifier_margin, classifier_uncertainty

        if self.measure == "least-confident":
            return np.asarray(classifier_uncertainty(model, X), dtype=float)
        if self.measure == "margin":
            return 1.0 - np.asarray(classifier_margin(model, X), dtype=float)
        n_classes = len(getattr(model, "classes_", ())) or 1
        entropy = np.asarray(classifier_entropy(model, X), dtype=float)
        return entropy / np.log(n_classes) if n_classes > 1 else entropy

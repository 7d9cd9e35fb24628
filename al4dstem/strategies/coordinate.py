"""A classifier over scan coordinates: the spatial baseline and the fallback model of samplers.

It knows nothing about diffraction patterns: it predicts a position's class from the labels of
its nearest labelled positions. With ``n_neighbors=1`` it is the benchmark's scorer; with a few
distance-weighted neighbours its probabilities are soft near walls, which is what uncertainty
sampling needs when no pattern model is in the loop.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.neighbors import KNeighborsClassifier

from al4dstem.base import Model


class CoordinateModel(ClassifierMixin, BaseEstimator, Model):
    """k-nearest-neighbour classifier on ``(x, y)`` positions (scikit-learn style).

    ``n_neighbors`` is capped by the number of labels; ``weights`` as in scikit-learn.
    """

    def __init__(self, n_neighbors: int = 5, weights: str = "distance"):
        self.n_neighbors = n_neighbors
        self.weights = weights

    def fit(self, X, y) -> CoordinateModel:
        X = np.asarray(X, dtype=float).reshape(-1, 2)
        y = np.asarray(y)
        k = max(1, min(int(self.n_neighbors), len(y)))
        self.knn_ = KNeighborsClassifier(n_neighbors=k, weights=self.weights).fit(X, y)
        self.classes_ = self.knn_.classes_
        return self

    def predict_proba(self, X) -> np.ndarray:
        return self.knn_.predict_proba(np.asarray(X, dtype=float).reshape(-1, 2))

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


def fit_coordinate_model(positions, classes, n_neighbors: int = 5) -> CoordinateModel | None:
    """A fitted ``CoordinateModel`` on the labels, or None when there are none."""
    if len(classes) == 0:
        return None
    return CoordinateModel(n_neighbors=n_neighbors).fit(positions, classes)

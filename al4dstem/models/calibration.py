"""Honest confidence: temperature scaling on held-out labels, and the expected calibration error.

A model's softmax probabilities are rarely calibrated: a CNN trained on 40 patterns is
over-confident, a regularised linear model often under-confident. Temperature scaling
(Guo et al. 2017) divides the logits by one number ``T`` fitted to minimise the negative
log-likelihood of held-out labels: probabilities become honest on average, predictions do not
change (the argmax is the same). A few dozen held-out labels are often all right, and then the
plain likelihood drives ``T`` to 0 (certainty everywhere, also where the model is wrong). The
fit therefore smooths the held-out labels by Laplace's rule of succession: ``1 / (n + 2)`` of
each label's weight is spread over all classes, so ``n`` correct answers out of ``n`` ask for a
confidence near ``(n + 1) / (n + 2)``, not 1. And with 20 held-out labels one unlucky fold can
ask for any temperature: ``log T`` has a normal prior (sd ``PRIOR_SD``) that weighs like one
label, so a few labels move ``T`` only as far as they can support. Held-out logits come from
cross-validation (``network="auto"`` and the baselines) or from the CNN's validation split.

The expected calibration error (ECE) bins predictions by confidence (the top probability,
10 equal-width bins) and averages ``|accuracy - confidence|`` over bins, weighted by their
share of the predictions: 0 for a perfectly calibrated model.
"""

from __future__ import annotations

import numpy as np

T_BOUNDS = (0.05, 20.0)
N_BINS = 10
PRIOR_SD = 1.0  # of log T


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def nll(logits: np.ndarray, y: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of classes ``y`` under ``softmax(logits / temperature)``."""
    p = softmax(logits, temperature)
    return float(-np.mean(np.log(np.clip(p[np.arange(len(y)), np.asarray(y)], 1e-12, None))))


def smoothed_nll(logits: np.ndarray, y: np.ndarray, temperature: float, smoothing: float) -> float:
    """NLL against labels smoothed by ``smoothing`` (that share of each label spread evenly over the classes)."""
    p = np.clip(softmax(logits, temperature), 1e-12, None)
    logp = np.log(p)
    own = logp[np.arange(len(y)), np.asarray(y)]
    return float(-np.mean((1 - smoothing) * own + smoothing * logp.mean(axis=1)))


def fit_temperature(logits: np.ndarray, y: np.ndarray, bounds=T_BOUNDS) -> float:
    """The temperature minimising the held-out NLL, labels smoothed by ``1 / (n + 2)`` (1.0 when there is
    nothing to fit)."""
    from scipy.optimize import minimize_scalar

    logits, y = np.asarray(logits, dtype=np.float64), np.asarray(y)
    ok = np.isfinite(logits).all(axis=1)
    logits, y = logits[ok], y[ok]
    if len(y) < 2:
        return 1.0
    smoothing = 1.0 / (len(y) + 2)
    n = len(y)

    def objective(log_t: float) -> float:
        return smoothed_nll(logits, y, float(np.exp(log_t)), smoothing) + log_t**2 / (2 * PRIOR_SD**2 * n)

    result = minimize_scalar(objective,
                             bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded",
                             options={"xatol": 1e-3})
    t = float(np.exp(result.x))
    return t if np.isfinite(t) else 1.0


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, n_bins: int = N_BINS) -> float:
    """ECE of probabilities ``(n, k)`` against classes ``y`` (NaN rows left out); NaN when none are left."""
    probs, y = np.asarray(probs, dtype=np.float64), np.asarray(y)
    ok = np.isfinite(probs).all(axis=1) & (y >= 0)
    probs, y = probs[ok], y[ok]
    if len(y) == 0:
        return float("nan")
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        in_bin = which == b
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(total)


def calibration_report(logits: np.ndarray, y: np.ndarray, temperature: float) -> dict:
    """Held-out NLL and ECE before (T = 1) and after temperature scaling."""
    return {"temperature": float(temperature), "n_heldout": int(len(y)),
            "nll_before": nll(logits, y), "nll_after": nll(logits, y, temperature),
            "ece_before": expected_calibration_error(softmax(logits), y),
            "ece_after": expected_calibration_error(softmax(logits, temperature), y)}

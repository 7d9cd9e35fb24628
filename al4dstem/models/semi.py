"""Semi-supervised training of the CNNs on the scan's own unlabelled patterns (self-training), on a CPU.

A scan holds thousands of patterns and the person labelled a few dozen. ``fit_semi_supervised``:

1. trains the CNN on the labels (as without this option);
2. classifies the scan's patterns (up to ``MAX_CANDIDATES``: the whole scan or a band of its rows)
   under every symmetry of the physics-aware augmentation (the lattice's symmetries, vertical and
   horizontal swapped where a symmetry exchanges the crystal axes; all eight in canonical
   orientation) and keeps as pseudo-labels only unlabelled patterns whose every view gives the same
   class, which the mean over their 3 x 3 scan neighbourhood also gives, with a confidence (the
   lower of their own and their neighbourhood's) of at least ``CONFIDENCE``: the consistency tests
   reject patterns the network only half-recognises;
3. keeps the same number of each class taught (at most ``PER_CLASS``; none at all when one class has
   no candidate), the most confident, so that
   pseudo-labels neither drown the person's labels nor tip the class balance (a first version
   without this took 60 horizontal and no other pseudo-labels on a diffuse scan, and lost 0.06);
4. trains the network again, from the same initial weights, on the training labels and the
   pseudo-labels; validation (and the calibration of the temperature) uses the same held-out
   *true* labels as step 1, never pseudo-labels.

Cost: two trainings and one pass over at most ``MAX_CANDIDATES`` patterns per symmetry (about twice
the time of plain training). ``summary_["semi_supervised"]`` records how many pseudo-labels of each
class were used and how many candidates were looked at.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from al4dstem.labels import CLASSES
from al4dstem.models.augment import SWAP

MAX_CANDIDATES = 8192  # unlabelled patterns classified (the scan, or a band of its rows)
SMOOTHING = 3  # scan neighbourhood whose mean probabilities must agree with a pseudo-label
PER_CLASS = 60  # most pseudo-labels per class
CONFIDENCE = 0.6  # least probability (mean over the views; and of the neighbourhood)
N_CLASSES = len(CLASSES)


def view_probabilities(clf, x: np.ndarray, group, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """``(mean probabilities (n, 3), consistent (n,))`` of ``clf``'s network (temperature 1) for binned
    linear patterns ``x`` under every symmetry in ``group``, each view's classes mapped back;
    ``consistent``: every view gives the same class."""
    import torch

    from al4dstem.models.augment import apply
    from al4dstem.models.training import stages

    net = clf.network_.eval()
    canonical, classify = stages(net)
    mean = np.zeros((len(x), N_CLASSES), np.float64)
    first = np.full(len(x), -1, np.int64)
    consistent = np.ones(len(x), bool)
    with torch.inference_mode():
        for i in range(0, len(x), chunk):
            z = canonical(torch.from_numpy(clf._inputs(x[i:i + chunk]))[:, None])
            for s in group:
                view, _ = apply(z, torch.zeros(len(z), dtype=torch.long), s)
                p = torch.softmax(classify(view), dim=1).numpy()
                if s.swap:
                    p = p[:, SWAP]  # the view's vertical is the pattern's horizontal
                mean[i:i + chunk] += p / len(group)
                top = p.argmax(1)
                block = first[i:i + chunk]
                consistent[i:i + chunk] &= (block < 0) | (block == top)
                first[i:i + chunk] = top
    return mean, consistent


def select(probs: np.ndarray, consistent: np.ndarray, taught=range(N_CLASSES), per_class: int = PER_CLASS,
           confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, classes)`` of the pseudo-labels: consistent, confident, the same number of each class
    ``taught`` (at most ``per_class``; the most confident first). None at all when one taught class has
    no candidate: pseudo-labels of some classes only would tip the balance towards them."""
    top, conf = probs.argmax(1), probs.max(1)
    taught = sorted(int(c) for c in set(taught))
    pools = {c: np.flatnonzero(consistent & (conf >= confidence) & (top == c)) for c in taught}
    k = min([per_class] + [len(p) for p in pools.values()])
    keep_idx, keep_cls = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for c, pool in pools.items():
        pool = pool[np.argsort(-conf[pool], kind="stable")][:k]
        keep_idx.append(pool)
        keep_cls.append(np.full(len(pool), c, np.int64))
    return np.concatenate(keep_idx), np.concatenate(keep_cls)


def region(scan_shape, most: int, seed: int) -> tuple[int, int]:
    """Scan rows ``(r0, r1)`` of at most ``most`` positions (the whole scan when it is that small; else a
    band of rows at a random place): the unlabelled patterns looked at, contiguous so that each has its
    scan neighbours."""
    rows, cols = (int(s) for s in scan_shape)
    band = max(1, min(rows, most // max(1, cols)))
    r0 = int(np.random.default_rng([int(seed), 13]).integers(0, rows - band + 1))
    return r0, r0 + band


def smooth(probs: np.ndarray, size: int = SMOOTHING) -> np.ndarray:
    """Each position's probabilities averaged with its ``size x size`` scan neighbours ``(rows, cols, 3)``
    (the window shrinks at the edges): domains are spatially coherent, single patterns noisy."""
    from scipy.ndimage import uniform_filter

    ones = uniform_filter(np.ones(probs.shape[:2]), size, mode="constant")
    return np.stack([uniform_filter(probs[..., c], size, mode="constant") / ones
                     for c in range(probs.shape[-1])], axis=-1)


def fit_semi_supervised(clf, positions: np.ndarray, y: np.ndarray, x: np.ndarray, counts: bool, mean, lattice,
                        progress=None) -> None:
    """Fit ``clf`` (a CNN, initialised) on labelled ``positions`` / classes ``y`` (binned patterns ``x``)
    and pseudo-labels from its scan; sets ``network_``, ``history_`` and ``summary_`` (calibrated if
    ``clf.calibrate``)."""
    from al4dstem.models.selection import _Stages
    from al4dstem.models.training import auto_epochs, stratified_split

    seed = int(clf.random_state or 0)
    epochs = int(clf.epochs) if clf.epochs is not None else auto_epochs(len(y))
    steps = _Stages(progress, 2 * epochs + 1)
    clf._fit_arrays(x, y, counts, mean, lattice,
                    steps.stage("semi-supervised 1/3: training on the labels", epochs), calibrate=False)
    first = dict(clf.summary_)
    group = clf._symmetry_group(lattice)

    source = clf._source()
    r0, r1 = region(source.scan_shape, MAX_CANDIDATES, seed)
    cols = int(source.scan_shape[1])
    ys, xs = np.mgrid[r0:r1, 0:cols]
    pool = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.int64)
    binning = dataclasses.replace(clf.preprocessing_, scaling="linear", normalise="none")
    from al4dstem.data import finite_mask

    parts, ok = [], []
    for i in range(0, len(pool), 256):
        raw = source.get(pool[i:i + 256])
        ok.append(finite_mask(raw))
        parts.append(binning(raw))
    xu = np.concatenate(parts) if parts else np.empty((0, *x.shape[1:]), np.float32)
    good = np.concatenate(ok) if ok else np.zeros(0, bool)
    probs, consistent = view_probabilities(clf, xu, group)
    shape = (r1 - r0, cols)
    probs[~good] = 1.0 / N_CLASSES
    around = smooth(probs.reshape(*shape, N_CLASSES)).reshape(-1, N_CLASSES)
    unlabelled = np.ones(shape, bool)
    inside = (positions[:, 1] >= r0) & (positions[:, 1] < r1)
    unlabelled[positions[inside, 1] - r0, positions[inside, 0]] = False
    agree = consistent & good & unlabelled.ravel() & (around.argmax(1) == probs.argmax(1))
    pick, pseudo = select(np.minimum(probs, around), agree, taught=np.unique(y))
    steps.step(f"semi-supervised 2/3: {len(pick)} pseudo-labels from {len(pool)} unlabelled patterns")

    train, val = stratified_split(y, seed)
    x2 = np.concatenate([x[train], x[val], xu[pick]])
    y2 = np.concatenate([y[train], y[val], pseudo])
    n_train = len(train)
    split = (np.concatenate([np.arange(n_train), np.arange(n_train + len(val), len(y2))]),
             np.arange(n_train, n_train + len(val)))
    # the same initial weights as step 1 (and canonical orientation rebuilt the same way)
    clf.initialize(clf.detector_shape_)
    orientation = clf._orient_network(lattice)
    text = f"semi-supervised 3/3: training on labels and {len(pick)} pseudo-labels"
    # as many epochs as for the labels alone (counted from the pseudo-labels too, there would be fewer)
    result, heldout = clf._train(x2, y2, counts, steps.stage(text, epochs), group, split=split, epochs=epochs)
    clf.history_ = result.history
    clf.summary_ = {**result.summary(), "lattice": first.get("lattice"), "orientation": orientation,
                    "n_symmetries": len(group),
                    "semi_supervised": {"candidates": int(len(pool)), "consistent": int(agree.sum()),
                                        "pseudo_labels": {CLASSES[c]: int((pseudo == c).sum())
                                                          for c in range(N_CLASSES)},
                                        "first_stage": {k: first.get(k) for k in ("best_val_accuracy",
                                                                                   "best_val_loss", "seconds")}}}
    if clf.calibrate and heldout is not None:
        clf.set_calibration(*heldout)

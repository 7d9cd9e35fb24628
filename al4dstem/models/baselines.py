"""The baselines, as torch modules whose weights scikit-learn fits.

Each is a network like the CNNs (``(n, 1, size, size)`` preprocessed patterns in, ``(n, 3)``
logits out, ``temperature`` in its config), so one checkpoint format, one inference path and
one classifier (``CNNClassifier(network=...)``) serve them all:

``ghost``: the physics. The scan's lattice (``al4dstem.lattice.find_lattice`` on the mean
    pattern) says where the ghost disks of each class fall: (odd, even) for horizontal, (even,
    odd) for vertical, (odd, odd) for none. Four detector masks read, per pattern, the mean
    excess over the local background on each class's ghost disks and on the Bragg disks
    (``lattice.ghost_weights``: virtual dark-field detectors); the three ghost / Bragg ratios
    are the features, standardised, and a multinomial logistic regression maps them to the
    classes. Works at any lattice rotation (the masks follow the lattice), on binned linear
    counts (``preprocessing``: up to 128 pixels, ``scaling="linear"``, ``normalise="none"``).
    Rotating a pattern by 90 degrees exchanges its vertical and horizontal features: training
    sees every labelled pattern both ways (labels swapped), so the model is symmetric.
``softmax``: multinomial logistic regression on standardised 32 x 32 binned log patterns.
``pca-knn``: the same patterns, standardised, projected on their first principal components,
    then the k nearest labelled patterns vote, weighted by inverse distance (as in the
    KNN-ferroelectric CNN study).

``softmax`` and ``pca-knn`` learn from every view of the labelled patterns under the
lattice's symmetries (``augment.lattice_symmetries``: the four 90-degree rotations at any
angle, with vertical and horizontal swapped by the odd ones), which lifts both by 0.1-0.15 in
accuracy on faint scans with 50 labels.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from al4dstem.labels import CLASSES
from al4dstem.models.networks import set_class_bias

N_CLASSES = len(CLASSES)
N_GHOST_FEATURES = N_CLASSES  # ghost / Bragg excess for each class's ghost family
N_MASKS = N_CLASSES + 1  # the three ghost families and the Bragg disks
MAX_GHOST_SIZE = 128  # ghost model input side at most: disks of 256-512 px detectors stay >= 2 px across
SOFTMAX_C = 1.0  # inverse L2 strength on standardised pixels (0.01..1 within 0.03 on faint scans)
KNN_COMPONENTS = 10
KNN_NEIGHBOURS = 5
GHOST_C = 1.0
_EPS = 1e-6
_Z_LIMIT = 50.0  # standardised features are clipped: a blank or broken pattern cannot give inf


def _temperature(value) -> float:
    from al4dstem.models.networks import _temperature as check

    return check(value)


class _Standardise(nn.Module):
    """``(x - mean) / scale`` with stored buffers (the fitted ``StandardScaler``)."""

    def __init__(self, n: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("scale", torch.ones(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.scale).clamp(-_Z_LIMIT, _Z_LIMIT)

    def set(self, scaler) -> None:
        self.mean.copy_(torch.as_tensor(scaler.mean_, dtype=torch.float32))
        self.scale.copy_(torch.as_tensor(np.where(scaler.scale_ > 0, scaler.scale_, 1.0), dtype=torch.float32))


class GhostFeatureNet(nn.Module):
    """Logistic regression on the ghost / Bragg intensity ratios read through fixed detector masks."""

    def __init__(self, input_size: int = 128, temperature: float = 1.0, lattice: dict | None = None,
                 class_bias=None):
        super().__init__()
        if input_size < 4:
            raise ValueError(f"the ghost model needs an input of at least 4 pixels, got {input_size}")
        self.temperature = _temperature(temperature)
        self.config = {"input_size": int(input_size), "temperature": self.temperature,
                       "lattice": _plain_lattice(lattice)}
        self.register_buffer("masks", torch.zeros(N_MASKS, int(input_size), int(input_size)))
        self.standardise = _Standardise(N_GHOST_FEATURES)
        self.linear = nn.Linear(N_GHOST_FEATURES, N_CLASSES)
        set_class_bias(self, class_bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 3)`` ghost / Bragg excess ratios, class order (none's column: the diagonal ghosts)."""
        sums = x.reshape(len(x), -1) @ self.masks.reshape(N_MASKS, -1).T
        bragg = sums[:, -1:].clamp(min=_EPS)
        return sums[:, :N_GHOST_FEATURES] / bragg

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.standardise(self.features(x))) / self.temperature + self.class_bias


class LinearNet(nn.Module):
    """Softmax regression on standardised pixels."""

    def __init__(self, input_size: int = 32, temperature: float = 1.0, class_bias=None):
        super().__init__()
        if input_size < 4:
            raise ValueError(f"the softmax model needs an input of at least 4 pixels, got {input_size}")
        self.temperature = _temperature(temperature)
        self.config = {"input_size": int(input_size), "temperature": self.temperature}
        n = int(input_size) ** 2
        self.standardise = _Standardise(n)
        self.linear = nn.Linear(n, N_CLASSES)
        set_class_bias(self, class_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.standardise(x.reshape(len(x), -1))) / self.temperature + self.class_bias


class KNNNet(nn.Module):
    """PCA, then a vote of the ``k`` nearest stored training patterns weighted by inverse distance.

    The logits are the log vote shares, each smoothed by half a vote (``(k share + 0.5) / (k + 1.5)``):
    five neighbours agreeing give 0.85, not certainty.
    """

    def __init__(self, input_size: int = 32, n_components: int = KNN_COMPONENTS, n_train: int = KNN_NEIGHBOURS,
                 k: int = KNN_NEIGHBOURS, temperature: float = 1.0, class_bias=None):
        super().__init__()
        n = int(input_size) ** 2
        if input_size < 4 or not 1 <= int(n_components) <= n or not 1 <= int(n_train) <= 1_000_000 \
                or not 1 <= int(k) <= int(n_train):
            raise ValueError(f"bad pca-knn shape (input {input_size}, {n_components} components, "
                             f"{n_train} training patterns, k {k})")
        self.temperature = _temperature(temperature)
        self.config = {"input_size": int(input_size), "n_components": int(n_components), "n_train": int(n_train),
                       "k": int(k), "temperature": self.temperature}
        self.standardise = _Standardise(n)
        self.register_buffer("components", torch.zeros(int(n_components), n))
        self.register_buffer("pca_mean", torch.zeros(n))
        self.register_buffer("memory", torch.zeros(int(n_train), int(n_components)))
        self.register_buffer("targets", torch.zeros(int(n_train), N_CLASSES))
        set_class_bias(self, class_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (self.standardise(x.reshape(len(x), -1)) - self.pca_mean) @ self.components.T
        d = torch.cdist(z, self.memory)
        dist, idx = torch.topk(d, self.config["k"], dim=1, largest=False)
        w = 1.0 / (dist + _EPS)
        votes = (w[..., None] * self.targets[idx]).sum(1)
        share = votes / votes.sum(1, keepdim=True).clamp(min=_EPS)
        k = self.config["k"]
        return torch.log((k * share + 0.5) / (k + 0.5 * N_CLASSES)) / self.temperature + self.class_bias


def _plain_lattice(lattice) -> dict | None:
    if lattice is None:
        return None
    return {k: ([float(v) for v in lattice[k]] if isinstance(lattice[k], (list, tuple)) else float(lattice[k]))
            for k in ("centre", "g1", "g2", "disk_radius") if k in lattice}


# ---------------------------------------------------------------- fitting


def _views(x: np.ndarray, y: np.ndarray, symmetries) -> tuple[np.ndarray, np.ndarray]:
    """Every symmetric view of network inputs ``x`` ``(n, size, size)``, labels mapped."""
    from al4dstem.models.augment import ROTATIONS, symmetric_views

    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[:, None]
    xv, yv = symmetric_views(xt, torch.from_numpy(np.asarray(y, np.int64)),
                             ROTATIONS if symmetries is None else tuple(symmetries))
    return xv[:, 0].numpy(), yv.numpy()


def _logistic(C: float, seed: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=2000, random_state=seed)


def _set_linear(linear: nn.Linear, model, n_features: int) -> None:
    """Copy a fitted ``LogisticRegression``'s weights into ``linear``, for all three classes.

    A class missing from the labels gets logit -30 (probability ~0): it was never taught.
    """
    weight = np.zeros((N_CLASSES, n_features), np.float32)
    bias = np.full(N_CLASSES, -30.0, np.float32)
    coef, intercept = np.asarray(model.coef_), np.asarray(model.intercept_)
    classes = np.asarray(model.classes_)
    if len(classes) == 2:  # binary: one row, for classes[1] against classes[0]
        weight[classes[1]], bias[classes[1]] = coef[0] / 2, intercept[0] / 2
        weight[classes[0]], bias[classes[0]] = -coef[0] / 2, -intercept[0] / 2
    else:
        weight[classes], bias[classes] = coef, intercept
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(weight))
        linear.bias.copy_(torch.from_numpy(bias))


def fit_ghost(x_counts: np.ndarray, y: np.ndarray, masks: np.ndarray, lattice: dict | None = None,
              seed: int = 0, C: float = GHOST_C) -> GhostFeatureNet:
    """A fitted ``GhostFeatureNet`` for binned linear counts ``(n, size, size)`` and detector ``masks``."""
    from sklearn.preprocessing import StandardScaler

    size = x_counts.shape[-1]
    net = GhostFeatureNet(size, lattice=lattice)
    with torch.no_grad():
        net.masks.copy_(torch.from_numpy(np.asarray(masks, np.float32)))
        f = net.features(torch.from_numpy(np.ascontiguousarray(x_counts, dtype=np.float32))).numpy()
    from al4dstem.models.augment import SWAP

    f = np.concatenate([f, f[:, SWAP]])  # a 90-degree rotation: vertical and horizontal ghosts exchanged
    y = np.concatenate([y, SWAP[y]])
    scaler = StandardScaler().fit(f)
    model = _logistic(C, seed).fit(scaler.transform(f), y)
    net.standardise.set(scaler)
    _set_linear(net.linear, model, N_GHOST_FEATURES)
    return net.eval()


def fit_softmax(x: np.ndarray, y: np.ndarray, symmetries=None, seed: int = 0, C: float = SOFTMAX_C) -> LinearNet:
    """A fitted ``LinearNet`` for network inputs ``x`` ``(n, size, size)`` (every symmetric view learnt)."""
    from sklearn.preprocessing import StandardScaler

    xv, yv = _views(x, y, symmetries)
    flat = xv.reshape(len(xv), -1)
    scaler = StandardScaler().fit(flat)
    model = _logistic(C, seed).fit(scaler.transform(flat), yv)
    net = LinearNet(x.shape[-1])
    net.standardise.set(scaler)
    _set_linear(net.linear, model, flat.shape[1])
    return net.eval()


def fit_knn(x: np.ndarray, y: np.ndarray, symmetries=None, seed: int = 0, n_components: int = KNN_COMPONENTS,
            k: int = KNN_NEIGHBOURS) -> KNNNet:
    """A fitted ``KNNNet`` for network inputs ``x`` ``(n, size, size)`` (every symmetric view stored)."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    xv, yv = _views(x, y, symmetries)
    flat = xv.reshape(len(xv), -1)
    scaler = StandardScaler().fit(flat)
    z = scaler.transform(flat)
    n_components = int(min(n_components, len(z) - 1, z.shape[1]))
    n_components = max(1, n_components)
    pca = PCA(n_components, random_state=seed).fit(z)
    k = int(min(k, len(z)))
    net = KNNNet(x.shape[-1], n_components=n_components, n_train=len(z), k=k)
    net.standardise.set(scaler)
    with torch.no_grad():
        net.components.copy_(torch.from_numpy(pca.components_.astype(np.float32)))
        net.pca_mean.copy_(torch.from_numpy(pca.mean_.astype(np.float32)))
        net.memory.copy_(torch.from_numpy(pca.transform(z).astype(np.float32)))
        net.targets.copy_(torch.nn.functional.one_hot(torch.from_numpy(yv), N_CLASSES).float())
    return net.eval()

"""Physics-aware augmentation of binned pattern batches, with soft labels.

Augmentation works on binned counts (linear intensity, before log scaling), where the physics
is linear; ``Finish`` then applies the model's scaling and normalisation. Labels travel as
class probabilities ``(n, 3)``.

Symmetry. The classes follow the crystal axes, not the detector's. A symmetry of the
detector square (D4) is a valid augmentation only if it maps the scan's lattice onto itself:
then it either keeps each crystal axis (classes kept) or exchanges them (vertical and
horizontal swapped, ``SWAP``). The four rotations by multiples of 90 degrees always do, at any
lattice angle (odd quarter turns swap). A mirror maps a lattice at angle t to -t (or 90 - t),
which is the same lattice only when t is a multiple of 45 degrees: for a lattice at 31 degrees
a mirror flip makes patterns that never occur in the scan, and with the old "transposes swap,
flips keep" rule it gives them the wrong class wherever the lattice is near 45 degrees. This
was the cause of the collapse on rotated faint scans (issue 12). ``lattice_symmetries(angle)``
returns the valid group, each element with its label rule.

Walls. A pattern at a domain wall is the intensity-weighted mix of its neighbours' patterns.
Mixing two training patterns with weight ``w`` mixes their labels with the same weight, then
applies the wall rule (docs/design.md §4): a vertical + horizontal mix whose minor share is at
least ``WALL_SHARE`` (about a third) is a wall, class none; a majority mix keeps the majority
class. Mixes with none keep their soft label (the ghosts of one class, weaker).

Dose. Counts are scaled by a factor drawn log-uniformly (a thicker or thinner region, a
different beam current) and, for count data, Poisson-resampled (shot noise of a lower dose).

Descan. Patterns are shifted by a few pixels (the drift of the pattern centre over a scan).

All random draws come from one numpy ``Generator``: a seed repeats a run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

#: Class map of a symmetry exchanging the detector axes: none, vertical, horizontal -> none, horizontal, vertical.
SWAP = np.array([0, 2, 1])
#: A vertical + horizontal mix whose minor share is at least this is a wall (class none).
WALL_SHARE = 1 / 3
#: Largest mismatch, degrees, between a lattice and its mirror image for the mirror to count as a symmetry.
#: At 3 degrees a ghost disk two lattice spacings out moves by ~0.1 spacing, less than a disk radius.
MIRROR_TOLERANCE = 3.0


@dataclass(frozen=True)
class Symmetry:
    """One element of D4: transpose, then flip rows and/or columns; ``swap`` exchanges vertical and horizontal."""

    transpose: bool
    flip_rows: bool
    flip_cols: bool
    swap: bool

    def matrix(self) -> np.ndarray:
        """Its action on detector vectors ``(x, y)`` (x = column, y = row)."""
        m = np.array([[0.0, 1.0], [1.0, 0.0]]) if self.transpose else np.eye(2)
        return np.diag([-1.0 if self.flip_cols else 1.0, -1.0 if self.flip_rows else 1.0]) @ m


def _elements():
    return [(t, fr, fc) for t in (False, True) for fr in (False, True) for fc in (False, True)]


#: The eight symmetries with the label rule of a lattice aligned with the detector axes.
D4 = tuple(Symmetry(t, fr, fc, swap=t) for t, fr, fc in _elements())
#: The four rotations (identity, 90, 180, 270 degrees): valid for a lattice at any angle.
ROTATIONS = tuple(s for s in D4 if np.linalg.det(s.matrix()) > 0)


def _axis_distance(a: float, b: float) -> float:
    """Angle between two undirected axes, degrees in [0, 90]."""
    d = (a - b) % 180.0
    return min(d, 180.0 - d)


def lattice_symmetries(angle: float | None, tolerance: float = MIRROR_TOLERANCE) -> tuple[Symmetry, ...]:
    """The symmetries of D4 that map a square lattice at ``angle`` degrees onto itself, with their label rule.

    None (angle unknown): the four rotations, valid at any angle. An aligned lattice (0 degrees)
    gets all eight with the axis-aligned rule; one at 45 degrees all eight with the mirrors'
    rule reversed (a transpose keeps its axes, a flip exchanges them); any other angle only
    the rotations.
    """
    if angle is None or not np.isfinite(angle):
        return ROTATIONS
    g1 = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
    # every mirror maps the lattice at t to one at -t (up to 90 degrees): one mismatch decides for all four
    mismatch = _axis_distance(-angle, angle)
    mirrors_fit = min(mismatch, 90.0 - mismatch) <= tolerance
    out = []
    for t, fr, fc in _elements():
        element = Symmetry(t, fr, fc, False)
        if np.linalg.det(element.matrix()) < 0 and not mirrors_fit:
            continue
        image = element.matrix() @ g1
        phi = float(np.degrees(np.arctan2(image[1], image[0])))
        out.append(Symmetry(t, fr, fc, swap=_axis_distance(phi, angle + 90.0) < _axis_distance(phi, angle)))
    return tuple(out)


def apply(x: torch.Tensor, t: torch.Tensor, symmetry: Symmetry):
    """Apply one ``Symmetry`` to patterns ``(n, ..., rows, cols)`` and map their labels (indices or probabilities)."""
    x, _ = transform(x, t[:0], symmetry.transpose, symmetry.flip_rows, symmetry.flip_cols)
    if symmetry.swap:
        t = torch.as_tensor(SWAP)[t] if t.dim() == 1 else t[:, SWAP]
    return x, t


def symmetric_views(x: torch.Tensor, y: torch.Tensor, symmetries=D4):
    """Every view of a batch under ``symmetries``, concatenated (``len(symmetries) * n`` patterns and labels)."""
    views = [apply(x, y, s) for s in symmetries]
    return torch.cat([v[0] for v in views]), torch.cat([v[1] for v in views])


def transform(x: torch.Tensor, t: torch.Tensor, transpose: bool, flip_rows: bool, flip_cols: bool):
    """Apply one D4 symmetry to patterns ``(n, ..., rows, cols)`` and map their labels.

    ``t`` is either class indices ``(n,)`` or class probabilities ``(n, 3)``. ``transpose``
    exchanges the detector axes (and vertical with horizontal); the flips keep labels. Every
    rotation is such a combination: 90 degrees = transpose, then flip the rows.
    """
    if transpose:
        x = x.transpose(-1, -2)
        t = torch.as_tensor(SWAP)[t] if t.dim() == 1 else t[:, SWAP]
    dims = [d for d, f in ((-2, flip_rows), (-1, flip_cols)) if f]
    if dims:
        x = torch.flip(x, dims)
    return x, t


def rotate90(x: torch.Tensor, y: torch.Tensor, k: int = 1):
    """Rotate patterns by ``k`` quarter turns (counter-clockwise); odd ``k`` swaps vertical and horizontal."""
    x = torch.rot90(x, k, dims=(-2, -1))
    if k % 2:
        y = torch.as_tensor(SWAP)[y] if y.dim() == 1 else y[:, SWAP]
    return x, y


def d4_views(x: torch.Tensor, y: torch.Tensor):
    """All eight symmetric views of a batch for a lattice aligned with the detector (``8n`` patterns and labels)."""
    return symmetric_views(x, y, D4)


def wall_labels(t: torch.Tensor, share: float = WALL_SHARE) -> torch.Tensor:
    """The wall rule on mixed class probabilities ``(n, 3)``.

    Where vertical and horizontal both hold weight and the smaller is at least ``share`` of
    their sum, their weight goes to none (a wall); otherwise the smaller one's weight goes to
    the larger (a majority mix keeps its class). Rows with at most one in-plane class are kept.
    """
    v, h = t[:, 1], t[:, 2]
    both = (v > 0) & (h > 0)
    minor = torch.minimum(v, h) / torch.clamp(v + h, min=1e-12)
    wall = both & (minor >= share - 1e-6)
    out = t.clone()
    out[wall, 0] = t[wall, 0] + v[wall] + h[wall]
    out[wall, 1:] = 0
    keep = both & ~wall
    vertical_wins = keep & (v >= h)
    out[vertical_wins, 1] = v[vertical_wins] + h[vertical_wins]
    out[vertical_wins, 2] = 0
    horizontal_wins = keep & (h > v)
    out[horizontal_wins, 2] = v[horizontal_wins] + h[horizontal_wins]
    out[horizontal_wins, 1] = 0
    return out


@dataclass(frozen=True)
class Finish:
    """The scaling and normalisation of a ``Preprocessing``, on binned linear counts (torch).

    ``Finish(p.scaling, p.normalise)(counts)`` equals ``p(raw)`` when ``counts`` is
    ``replace(p, scaling="linear", normalise="none")(raw)``, up to float rounding.
    """

    scaling: str = "log"
    normalise: str = "max"

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.scaling == "log":
            x = torch.log1p(x.clamp(min=0))
        elif self.scaling == "sqrt":
            x = torch.sqrt(x.clamp(min=0))
        dims = tuple(range(1, x.dim()))
        if self.normalise == "max":
            peak = x.amax(dim=dims, keepdim=True)
            x = x / torch.where(peak > 0, peak, torch.ones_like(peak))
        elif self.normalise == "standard":
            mean = x.mean(dim=dims, keepdim=True)
            std = x.std(dim=dims, keepdim=True, unbiased=False)
            x = (x - mean) / torch.where(std > 0, std, torch.ones_like(std))
        return x


@dataclass(frozen=True)
class Augmenter:
    """Random symmetry, wall mixing, dose and descan shift for batches of binned counts.

    Parameters
    ----------
    symmetry : a random symmetry per pattern (labels mapped).
    group : the symmetries to draw from, each with its label rule (``lattice_symmetries`` of the
        scan's lattice angle); None: the four rotations, valid at any lattice angle.
    mix : share of patterns mixed with another pattern of the batch (labels mixed alike, then the
        wall rule ``wall_labels``).
    mix_shape : the mixing weight is drawn from Beta(mix_shape, mix_shape): 1 is uniform; the
        default 0.3 draws mostly near-pure mixes (a wall's edge) and some walls. With uniform
        weights a third of vertical + horizontal mixes became none, and on faint scans the CNN
        learnt to call weak ghosts none (faint scan at 31 degrees, 50 labels: 0.79 accuracy,
        0.90 with 0.3).
    dose : range of the intensity factor (drawn log-uniformly).
    resample : share of count patterns Poisson-resampled at the new dose.
    shift : largest shift along each axis, as a fraction of the pattern side.
    """

    symmetry: bool = True
    group: tuple[Symmetry, ...] | None = None
    mix: float = 0.5
    mix_shape: float = 0.3
    dose: tuple[float, float] = (0.5, 2.0)
    resample: float = 0.5
    shift: float = 0.02

    def __call__(self, x: torch.Tensor, t: torch.Tensor, rng: np.random.Generator, counts: bool = True):
        """Augment counts ``x`` ``(n, 1, rows, cols)`` with class probabilities ``t`` ``(n, 3)``.

        ``counts``: the data are non-negative counts (Poisson resampling applies).
        """
        if self.symmetry:
            x, t = self._symmetry(x, t, rng)
        if self.mix > 0 and len(x) > 1:
            x, t = self._mix(x, t, rng)
        x = self._shift(x, rng)
        return self._dose(x, rng, counts), t

    def _symmetry(self, x, t, rng):
        group = ROTATIONS if self.group is None else tuple(self.group)
        choice = rng.integers(0, len(group), size=len(x))
        views = [apply(x[i:i + 1], t[i:i + 1], group[int(choice[i])]) for i in range(len(x))]
        return torch.cat([v[0] for v in views]), torch.cat([v[1] for v in views])

    def _mix(self, x, t, rng):
        n = len(x)
        partner = (np.arange(n) + rng.integers(1, n, size=n)) % n  # never itself
        w = rng.beta(self.mix_shape, self.mix_shape, size=n)
        w[rng.random(n) >= self.mix] = 1.0  # these stay as they are
        w = torch.from_numpy(w.astype(np.float32))
        p = torch.from_numpy(partner)
        wx = w.view((n,) + (1,) * (x.dim() - 1))
        return wx * x + (1 - wx) * x[p], wall_labels(w[:, None] * t + (1 - w[:, None]) * t[p])

    def _shift(self, x, rng):
        most = int(round(self.shift * x.shape[-1]))
        if most < 1:
            return x
        shifts = rng.integers(-most, most + 1, size=(len(x), 2))
        return torch.stack([torch.roll(x[i], (int(a), int(b)), dims=(-2, -1)) for i, (a, b) in enumerate(shifts)])

    def _dose(self, x, rng, counts: bool):
        n = len(x)
        lo, hi = np.log(self.dose[0]), np.log(self.dose[1])
        k = torch.from_numpy(np.exp(rng.uniform(lo, hi, size=n)).astype(np.float32))
        x = x * k.view((n,) + (1,) * (x.dim() - 1))
        if counts and self.resample > 0:
            which = np.flatnonzero(rng.random(n) < self.resample)
            if len(which):
                gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
                idx = torch.from_numpy(which)
                x[idx] = torch.poisson(x[idx].clamp(min=0), generator=gen)
        return x

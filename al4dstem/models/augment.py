"""Physics-aware augmentation of binned pattern batches, with soft labels.

Augmentation works on binned counts (linear intensity, before log scaling), where the physics
is linear; ``Finish`` then applies the model's scaling and normalisation. Labels travel as
class probabilities ``(n, 3)``.

Symmetry. The detector's row axis is ky and its column axis kx; horizontal polarization puts
ghost disks along kx, vertical along ky. Of the eight symmetries of the square (D4), the
mirror flips and the 180-degree rotation keep every class; the 90-degree rotations and the
two transposes exchange kx and ky, and with them vertical and horizontal (``SWAP``).

Walls. A pattern at a domain wall is the intensity-weighted mix of its neighbours' patterns,
and its class is the larger share. Mixing two training patterns with weight ``w`` and their
labels with the same weight teaches exactly that rule, which few labels near walls cannot.

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
    """All eight symmetric views of a batch, concatenated (``8n`` patterns and labels)."""
    views = [transform(x, y, t, fr, fc) for t in (False, True) for fr in (False, True) for fc in (False, True)]
    return torch.cat([v[0] for v in views]), torch.cat([v[1] for v in views])


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
    symmetry : a random D4 symmetry per pattern (labels mapped).
    mix : share of patterns mixed with another pattern of the batch (weight uniform in 0..1).
    dose : range of the intensity factor (drawn log-uniformly).
    resample : share of count patterns Poisson-resampled at the new dose.
    shift : largest shift along each axis, as a fraction of the pattern side.
    """

    symmetry: bool = True
    mix: float = 0.5
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
        choice = rng.integers(0, 2, size=(len(x), 3)).astype(bool)
        views = [transform(x[i:i + 1], t[i:i + 1], *choice[i]) for i in range(len(x))]
        return torch.cat([v[0] for v in views]), torch.cat([v[1] for v in views])

    def _mix(self, x, t, rng):
        n = len(x)
        partner = (np.arange(n) + rng.integers(1, n, size=n)) % n  # never itself
        w = rng.uniform(0.0, 1.0, size=n)
        w[rng.random(n) >= self.mix] = 1.0  # these stay as they are
        w = torch.from_numpy(w.astype(np.float32))
        p = torch.from_numpy(partner)
        wx = w.view((n,) + (1,) * (x.dim() - 1))
        return wx * x + (1 - wx) * x[p], w[:, None] * t + (1 - w[:, None]) * t[p]

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

"""Physics-aware augmentation of preprocessed pattern batches.

The detector's row axis is ky and its column axis kx; horizontal polarization puts ghost disks
along kx (columns), vertical along ky (rows). So, of the eight symmetries of the square (D4):

- mirror flips (left-right, up-down) and the 180-degree rotation keep every class;
- the 90-degree rotations and the two transposes exchange kx and ky, and with them the
  vertical and horizontal classes (``SWAP``); none stays none.

Besides symmetry, each training batch gets a dose / intensity jitter (a gamma and a scale on
the log-scaled data, plus a little Gaussian noise) and a small shift of the pattern
(descan drift). Everything is drawn from a numpy ``Generator``, so a seed repeats a run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

#: Class map of a symmetry that exchanges the detector axes: none, vertical, horizontal -> none, horizontal, vertical.
SWAP = np.array([0, 2, 1])


def transform(x: torch.Tensor, y: torch.Tensor, transpose: bool, flip_rows: bool, flip_cols: bool):
    """Apply one D4 symmetry to a batch ``(n, ..., rows, cols)`` and map its labels ``(n,)``.

    ``transpose`` exchanges the detector axes (and vertical with horizontal); the flips keep labels.
    Every rotation is such a combination, e.g. 90 degrees = transpose + flip of the rows.
    """
    if transpose:
        x = x.transpose(-1, -2)
        y = torch.as_tensor(SWAP, device=y.device)[y]
    dims = [d for d, f in ((-2, flip_rows), (-1, flip_cols)) if f]
    if dims:
        x = torch.flip(x, dims)
    return x, y


def rotate90(x: torch.Tensor, y: torch.Tensor, k: int = 1):
    """Rotate a batch by ``k`` quarter turns (counter-clockwise); odd ``k`` swaps vertical and horizontal."""
    x = torch.rot90(x, k, dims=(-2, -1))
    if k % 2:
        y = torch.as_tensor(SWAP, device=y.device)[y]
    return x, y


def d4_views(x: torch.Tensor, y: torch.Tensor):
    """All eight symmetric views of a batch, concatenated (``8n`` patterns and labels)."""
    xs, ys = [], []
    for t in (False, True):
        for fr in (False, True):
            for fc in (False, True):
                xv, yv = transform(x, y, t, fr, fc)
                xs.append(xv)
                ys.append(yv)
    return torch.cat(xs), torch.cat(ys)


@dataclass(frozen=True)
class Augmenter:
    """Random symmetry, intensity jitter and shift for training batches.

    Parameters
    ----------
    symmetry : apply a random D4 symmetry per pattern (labels mapped).
    gamma : range of the exponent applied to non-negative data (dose: low counts shrink or grow).
    scale : range of a global intensity factor.
    noise : standard deviation of additive Gaussian noise, relative to each pattern's maximum.
    shift : largest shift along each axis, as a fraction of the pattern side (descan drift).
    """

    symmetry: bool = True
    gamma: tuple[float, float] = (0.8, 1.25)
    scale: tuple[float, float] = (0.85, 1.15)
    noise: float = 0.02
    shift: float = 0.02

    def __call__(self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator):
        """Augment ``x`` ``(n, 1, rows, cols)`` with labels ``y`` ``(n,)``; returns new tensors."""
        if self.symmetry:
            x, y = self._symmetry(x, y, rng)
        x = self._shift(x, rng)
        return self._intensity(x, rng), y

    def _symmetry(self, x, y, rng):
        choice = rng.integers(0, 2, size=(len(x), 3)).astype(bool)
        xs, ys = [], []
        for i in range(len(x)):
            xi, yi = transform(x[i:i + 1], y[i:i + 1], *choice[i])
            xs.append(xi)
            ys.append(yi)
        return torch.cat(xs), torch.cat(ys)

    def _shift(self, x, rng):
        most = int(round(self.shift * x.shape[-1]))
        if most < 1:
            return x
        shifts = rng.integers(-most, most + 1, size=(len(x), 2))
        return torch.stack([torch.roll(x[i], (int(a), int(b)), dims=(-2, -1)) for i, (a, b) in enumerate(shifts)])

    def _intensity(self, x, rng):
        n = len(x)
        shape = (n,) + (1,) * (x.dim() - 1)
        scale = torch.from_numpy(rng.uniform(*self.scale, size=n).astype(np.float32)).view(shape)
        if bool((x >= 0).all()):
            gamma = torch.from_numpy(np.exp(rng.uniform(*np.log(self.gamma), size=n)).astype(np.float32))
            x = x.pow(gamma.view(shape))
        x = x * scale
        if self.noise > 0:
            peak = x.abs().amax(dim=tuple(range(1, x.dim())), keepdim=True)
            noise = torch.from_numpy(rng.standard_normal(size=tuple(x.shape)).astype(np.float32))
            x = x + self.noise * peak * noise
        return x

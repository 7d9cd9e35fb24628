"""Physics-informed features: the scan's lattice, and virtual dark-field masks on the model's input grid.

The lattice is found once per scan from its mean pattern (``al4dstem.lattice``). Its angle
decides which detector symmetries are valid augmentations (``augment.lattice_symmetries``);
its ghost positions give the ``ghost`` model its features (``baselines.GhostFeatureNet``).
The masks are computed on the binned grid the model sees (the preprocessing's output), so
inference streams patterns through the usual preprocessing and a matrix product.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from al4dstem.data import Preprocessing
from al4dstem.errors import Al4dstemError

LATTICE_PATTERNS = 512  # patterns averaged (spread over the scan) to find the lattice


def mean_raw_pattern(source, max_patterns: int = LATTICE_PATTERNS) -> np.ndarray:
    """Float64 mean pattern of a ``Dataset`` (sampled evenly) or of a pattern batch ``(n, rows, cols)``."""
    from al4dstem.lattice import mean_pattern

    if hasattr(source, "detector_shape") and hasattr(source, "iter_batches"):
        return mean_pattern(source, max_patterns=max_patterns)
    patterns = np.asarray(source)
    if len(patterns) > max_patterns:
        patterns = patterns[np.linspace(0, len(patterns) - 1, max_patterns).round().astype(np.int64)]
    return np.nan_to_num(patterns.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0).mean(axis=0)


def find_scan_lattice(mean: np.ndarray):
    """The ``Lattice`` of a mean pattern, or None where no lattice can be fitted (too few disks)."""
    from al4dstem.lattice import find_lattice

    try:
        lattice = find_lattice(mean)
    except (Al4dstemError, ValueError, np.linalg.LinAlgError):
        return None
    if lattice.n_disks < 3 or not np.isfinite(lattice.spacing) or lattice.spacing <= 0:
        return None
    return lattice


def lattice_dict(lattice) -> dict | None:
    """Plain numbers for a checkpoint or a summary."""
    if lattice is None:
        return None
    return {"centre": [float(v) for v in lattice.centre], "g1": [float(v) for v in lattice.g1],
            "g2": [float(v) for v in lattice.g2], "disk_radius": float(lattice.disk_radius),
            "rotation": float(lattice.rotation), "n_disks": int(lattice.n_disks)}


def ghost_size(detector_shape, crop=None, most: int = 128) -> int:
    """Input side of the ghost model: the detector binned by the smallest whole factor that brings it
    to at most ``most`` pixels (the disks stay as sharp as the detector allows), else ``most``."""
    rows, cols = (int(s) for s in detector_shape)
    if crop is not None:
        t, b, left, r = crop
        rows, cols = rows - t - b, cols - left - r
    side = min(rows, cols)
    if rows == cols:
        for f in range(1, side + 1):
            if side % f == 0 and side // f <= most:
                return max(4, side // f)
    return max(4, min(most, side))


def ghost_preprocessing(detector_shape) -> Preprocessing:
    """Binned linear counts, not normalised: the masks measure intensities, the ratios cancel the dose."""
    return Preprocessing(size=ghost_size(detector_shape), scaling="linear", normalise="none")


def lattice_on_grid(lattice, detector_shape, preprocessing: Preprocessing):
    """The lattice in the coordinates of the preprocessing's output grid (crop and binning applied)."""
    from al4dstem.lattice import Lattice

    rows, cols = preprocessing.cropped_shape(detector_shape)
    top, left = (preprocessing.crop[0], preprocessing.crop[2]) if preprocessing.crop is not None else (0, 0)
    sr, sc = preprocessing.output_shape
    fx, fy = sc / cols, sr / rows

    def point(p):  # pixel centres: raw pixel x covers [x - 0.5, x + 0.5)
        return ((p[0] - left + 0.5) * fx - 0.5, (p[1] - top + 0.5) * fy - 0.5)

    def vector(v):
        return (v[0] * fx, v[1] * fy)

    return Lattice(point(lattice.centre), vector(lattice.g1), vector(lattice.g2),
                   lattice.disk_radius * min(fx, fy), lattice.n_disks, lattice.residual)


def ghost_masks(lattice, mean: np.ndarray, detector_shape, preprocessing: Preprocessing) -> np.ndarray:
    """Float32 ``(4, size, size)`` masks on the preprocessing grid: each class's ghost disks, then the
    Bragg disks, each the mean over the disks less the mean over a ring around them
    (``lattice.ghost_weights``); hot pixels of the (binned) mean pattern are left out."""
    from al4dstem.display import hot_pixel_mask
    from al4dstem.lattice import ghost_weights

    binning = dataclasses.replace(preprocessing, scaling="linear", normalise="none")
    binned_mean = binning(np.asarray(mean, dtype=np.float64)[None])[0]
    grid = lattice_on_grid(lattice, detector_shape, preprocessing)
    exclude = hot_pixel_mask(binned_mean)
    return ghost_weights(grid, preprocessing.output_shape, exclude=exclude).astype(np.float32)

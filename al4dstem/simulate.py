"""Synthetic boracite-like 4D-STEM scans with ground truth (docs/design.md §4).

Physics, in the order a pattern is built:

- main Bragg disks at the even-even indices ``(i, j)`` of a square lattice of half-order step
  ``spacing * detector`` around the pattern centre, rotated by ``rotation`` degrees on the
  detector; a central (000) disk; a Gaussian-like envelope in ``|q|``;
- half-order "ghost" disks ``ghost_strength`` times as bright as a main disk at the same ``q``:
  horizontal polarization -> ``(odd, even)`` (step along detector x), vertical ->
  ``(even, odd)``, none -> no in-plane ghosts (``diagonal_ghosts`` > 0 adds faint
  ``(odd, odd)`` ones);
- a fixed structure-factor-like random factor per reflection, and smooth thickness and tilt
  fields across the scan that scale and skew the diffracted intensity;
- a diffuse background (a ``exp(-|q|)`` halo plus a flat floor);
- descan drift: the pattern centre moves smoothly (a ramp plus a wave) across the scan,
  sub-pixel, by bilinear interpolation;
- wall mixing: class fractions are the one-hot domain map blurred by ``wall_width`` scan
  pixels; each pattern carries each class's ghosts in proportion; truth is the argmax;
- Poisson counting at ``dose`` electrons per pattern, then hot pixels, stored as uint16.

Speed: per-family noiseless templates are rendered once on a canvas padded for the drift;
every pattern is a linear combination of them (one matrix product per chunk of positions),
cut out at its drift offset, then Poisson-sampled with a sampler tuned for the mostly
near-zero counts. Chunks run on a few threads; each chunk draws its noise from its own
seed, so results do not depend on the thread count or on memory versus file output.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from al4dstem.errors import Al4dstemError
from al4dstem.labels import CLASSES, Label, write_labels

NONE, VERTICAL, HORIZONTAL = (CLASSES.index(name) for name in ("none", "vertical", "horizontal"))
CHUNK = 32  # positions per work unit; fixed, because each chunk's noise has its own seed
FILE_SUFFIXES = (".npy", ".h5", ".hdf5")
# independent random streams, so that e.g. the detector size does not change the geometry
_GEOMETRY, _FIELDS, _LATTICE, _DETECTOR, _NOISE = 1, 2, 3, 4, 5
_SF_HALF = 64  # structure factors are drawn for indices -64..64 whatever the detector size


def _rng(seed: int, stream: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), stream, *more])


# ============================================================ options


@dataclass(frozen=True)
class Physics:
    """Physical options of a simulation; lengths on the detector are fractions of its side.

    dose: mean electrons per pattern (1e3..1e6 is realistic).
    ghost_strength: ghost disk / main disk intensity at the same |q| (realistic 1e-3..5e-2).
    diagonal_ghosts: (odd, odd) ghosts of the none class, relative to ghost_strength.
    wall_width: blur (Gaussian sigma, scan pixels) over which neighbouring domains mix.
    none_width: thickness of the none walls, scan pixels (None: chosen per geometry).
    rotation: degrees between the crystal axes and the detector axes.
    drift: largest descan drift of the pattern centre, fraction of the detector side.
    background: fraction of the dose in the diffuse background.
    disk_variation: sigma of the log-normal structure factor of each reflection.
    thickness_variation: relative amplitude of the smooth thickness field.
    tilt_variation: amplitude of the smooth tilt fields (intensity skew edge to edge), <= 0.4.
    hot_pixels: fraction of detector pixels that are hot.
    disk_radius: Bragg disk radius, fraction of the detector side.
    spacing: half-order lattice step, fraction of the detector side.
    counting: Poisson counting noise (False: rounded expected counts, for tests and figures).
    """

    dose: float = 1e5
    ghost_strength: float = 0.02
    diagonal_ghosts: float = 0.0
    wall_width: float = 1.0
    none_width: float | None = None
    rotation: float = 4.0
    drift: float = 0.012
    background: float = 0.2
    disk_variation: float = 0.5
    thickness_variation: float = 0.2
    tilt_variation: float = 0.25
    hot_pixels: float = 2e-4
    disk_radius: float = 0.016
    spacing: float = 0.072
    counting: bool = True

    def __post_init__(self):
        checks = [
            (1.0 <= self.dose <= 1e9, "dose must be between 1 and 1e9 electrons per pattern"),
            (0.0 <= self.ghost_strength <= 1.0, "ghost_strength must be between 0 and 1"),
            (0.0 <= self.diagonal_ghosts <= 1.0, "diagonal_ghosts must be between 0 and 1"),
            (0.0 <= self.wall_width <= 50.0, "wall_width must be between 0 and 50 scan pixels"),
            (self.none_width is None or 2.0 <= self.none_width <= 100.0,
             "none_width must be between 2 and 100 scan pixels"),
            (-360.0 <= self.rotation <= 360.0, "rotation must be between -360 and 360 degrees"),
            (0.0 <= self.drift <= 0.1, "drift must be between 0 and 0.1 of the detector side"),
            (0.0 <= self.background < 1.0, "background must be in [0, 1)"),
            (0.0 <= self.disk_variation <= 2.0, "disk_variation must be between 0 and 2"),
            (0.0 <= self.thickness_variation <= 0.9, "thickness_variation must be between 0 and 0.9"),
            (0.0 <= self.tilt_variation <= 0.4, "tilt_variation must be between 0 and 0.4"),
            (0.0 <= self.hot_pixels <= 0.01, "hot_pixels must be between 0 and 0.01 of the pixels"),
            (0.002 <= self.disk_radius <= 0.1, "disk_radius must be between 0.002 and 0.1"),
            (0.01 <= self.spacing <= 0.25, "spacing must be between 0.01 and 0.25"),
            (self.spacing >= 2.2 * self.disk_radius, "spacing must exceed 2.2 disk radii (disks overlap)"),
        ]
        for ok, message in checks:
            if not ok:
                raise Al4dstemError(message)

    @classmethod
    def from_options(cls, **options) -> Physics:
        """Build from keyword options, naming any unknown one."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise Al4dstemError(
                f"unknown simulation option {unknown[0]!r} (known: {', '.join(sorted(known))})"
            )
        return cls(**options)


def _check_int(name: str, value, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
        raise Al4dstemError(f"{name} must be an integer between {low} and {high}, got {value!r}")


def _check_layout(geometry: str, nx: int, ny: int, seed: int) -> None:
    if geometry not in GEOMETRIES:
        raise Al4dstemError(f"unknown geometry {geometry!r} (one of {', '.join(GEOMETRIES)})")
    _check_int("nx", nx, 8, 100_000)
    _check_int("ny", ny, 8, 100_000)
    _check_int("seed", seed, 0, 2**63 - 1)


@dataclass
class _Scan:
    """Validated scan-level parameters."""

    nx: int
    ny: int
    detector: int
    geometry: str
    seed: int

    def __post_init__(self):
        _check_layout(self.geometry, self.nx, self.ny, self.seed)
        _check_int("detector", self.detector, 32, 4096)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.ny, self.nx, self.detector, self.detector)


# ============================================================ results


class _Counts:
    truth: np.ndarray

    @property
    def class_counts(self) -> dict[str, int]:
        """Positions per class, by name."""
        counts = np.bincount(self.truth.ravel(), minlength=3)
        return {name: int(c) for name, c in zip(CLASSES, counts, strict=True)}


@dataclass
class SimulatedScan(_Counts):
    """A simulated scan in memory.

    data: uint16 ``(ny, nx, K, K)``; truth: int ``(ny, nx)`` class indices (0 none,
    1 vertical, 2 horizontal); fractions: float ``(ny, nx, 3)`` class mixing fractions.
    """

    data: np.ndarray
    truth: np.ndarray
    fractions: np.ndarray
    geometry: str
    seed: int
    physics: Physics
    seconds: float = 0.0

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)


@dataclass
class SimulatedFile(_Counts):
    """Summary of a simulation written to disk (the patterns stay in the file)."""

    path: Path
    truth_path: Path | None
    shape: tuple[int, int, int, int]
    truth: np.ndarray
    fractions: np.ndarray
    geometry: str
    seed: int
    physics: Physics
    seconds: float = 0.0


# ============================================================ domain geometries


def _coords(nx: int, ny: int) -> tuple[np.ndarray, np.ndarray]:
    """Scan column and row of every position, float, shape (ny, nx)."""
    y, x = np.mgrid[0:ny, 0:nx]
    return x.astype(float), y.astype(float)


def _auto_none_width(nx: int, ny: int) -> float:
    """Default wall thickness: thin, but wide enough to survive the mixing blur."""
    return max(3.0, 0.12 * min(nx, ny))


def _walls(domains: np.ndarray, width: float) -> np.ndarray:
    """Mark as none every position within width/2 of a vertical/horizontal boundary."""
    from scipy.ndimage import distance_transform_edt

    out = domains.copy()
    for here, other in ((VERTICAL, HORIZONTAL), (HORIZONTAL, VERTICAL)):
        if not (domains == other).any():
            continue
        dist = distance_transform_edt(domains != other)  # distance to the nearest `other`
        out[(domains == here) & (dist - 0.5 < width / 2)] = NONE
    return out


def _two_classes(rng: np.random.Generator) -> tuple[int, int]:
    """The two in-plane classes in a random order."""
    return (VERTICAL, HORIZONTAL) if rng.random() < 0.5 else (HORIZONTAL, VERTICAL)


def _wave(rng: np.random.Generator, x: np.ndarray, length: float) -> np.ndarray:
    """A smooth random wave in [-1, 1] along x: two sinusoids of a few periods per length."""
    total = np.zeros_like(x)
    for _ in range(2):
        cycles = rng.uniform(0.7, 3.0)
        total += rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * cycles * x / length + rng.uniform(0, 2 * np.pi))
    return total / max(np.abs(total).max(), 1e-9)


def _bands(nx, ny, rng, width):
    """Paper-like: vertical on top, a wavy none band around row 17/34, horizontal below."""
    x, y = _coords(nx, ny)
    thickness = width if width is not None else 8.0 / 34.0 * ny
    centre = ny * 17.0 / 34.0 + 0.05 * ny * _wave(rng, x, nx)
    half = thickness / 2 * (1 + 0.25 * _wave(rng, x, nx))
    out = np.full((ny, nx), NONE)
    out[y < centre - half] = VERTICAL
    out[y >= centre + half] = HORIZONTAL
    return out


def _landscape(build):
    """Run a geometry on the long axis along x; transpose back for tall scans."""

    def wrapped(nx, ny, rng, width):
        if ny > nx:
            return build(ny, nx, rng, width).T
        return build(nx, ny, rng, width)

    wrapped.__doc__ = build.__doc__
    return wrapped


@_landscape
def _tilted(nx, ny, rng, width):
    """One straight wall from the left edge to the right edge, clearly tilted."""
    x, y = _coords(nx, ny)
    left, right = rng.uniform(0.15, 0.35) * ny, rng.uniform(0.65, 0.85) * ny
    if rng.random() < 0.5:
        left, right = right, left
    side = (y - left) * nx - (right - left) * x  # sign tells the side of the line
    a, b = _two_classes(rng)
    return _walls(np.where(side < 0, a, b), width or _auto_none_width(nx, ny))


@_landscape
def _bullseye(nx, ny, rng, width):
    """A closed elliptical domain of one class inside the other, ringed by none."""
    x, y = _coords(nx, ny)
    cx, cy = nx * rng.uniform(0.45, 0.55), ny * rng.uniform(0.47, 0.53)
    ax, ay = nx * rng.uniform(0.3, 0.4), ny * rng.uniform(0.33, 0.4)
    inside = ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 < 1
    a, b = _two_classes(rng)
    return _walls(np.where(inside, a, b), width or _auto_none_width(nx, ny))


@_landscape
def _stripes(nx, ny, rng, width):
    """Alternating domains along the long axis, walls tilted up to 25 degrees."""
    x, y = _coords(nx, ny)
    half_period = max(nx / 6.0, 8.0)
    angle = np.deg2rad(rng.uniform(-25, 25))
    u = x * np.cos(angle) + (y - ny / 2) * np.sin(angle)
    index = np.floor(u / half_period + rng.uniform(0, 1)).astype(int)
    a, b = _two_classes(rng)
    default = max(3.0, min(_auto_none_width(nx, ny), 0.25 * half_period))
    return _walls(np.where(index % 2 == 0, a, b), width or default)


@_landscape
def _needles(nx, ny, rng, width):
    """Wedge-shaped needle domains growing from the top and bottom edges into the other class."""
    x, y = _coords(nx, ny)
    a, b = _two_classes(rng)
    domains = np.full((ny, nx), a)
    count = max(2, round(nx / ny))  # about one needle per scan height
    slot = nx / count
    bases = rng.uniform(0.6, 0.9, count) * slot
    for i, base in enumerate(bases):
        x0 = (i + rng.uniform(0.4, 0.6)) * slot
        depth = rng.uniform(0.6, 0.95) * ny
        d = y if i % 2 == 0 else (ny - 1 - y)  # distance from the edge the needle grows from
        half = base / 2 * np.clip(1 - d / depth, 0, None)
        domains[np.abs(x - x0) < half] = b
    default = max(3.0, min(_auto_none_width(nx, ny), 0.15 * bases.min()))
    return _walls(domains, width or default)


_GEOMETRY_BUILDERS = {
    "bands": _bands,
    "tilted": _tilted,
    "bullseye": _bullseye,
    "stripes": _stripes,
    "needles": _needles,
}
GEOMETRIES = tuple(_GEOMETRY_BUILDERS)


def domain_map(geometry: str = "bands", nx: int = 206, ny: int = 34, seed: int = 0,
               wall_width: float = 1.0, none_width: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Ground truth of a geometry without any pattern: ``(truth (ny, nx) int, fractions (ny, nx, 3))``.

    The one-hot domain map is blurred by ``wall_width`` (Gaussian sigma, scan pixels) into
    class fractions, which the patterns mix; truth is their argmax.
    """
    from scipy.ndimage import gaussian_filter

    _check_layout(geometry, nx, ny, seed)
    Physics(wall_width=wall_width, none_width=none_width)  # same range checks as a simulation
    domains = _GEOMETRY_BUILDERS[geometry](nx, ny, _rng(seed, _GEOMETRY), none_width)
    onehot = np.stack([(domains == c).astype(float) for c in range(3)], axis=-1)
    if wall_width > 0:
        onehot = np.stack([gaussian_filter(onehot[..., c], wall_width, mode="nearest") for c in range(3)], -1)
    fractions = onehot / onehot.sum(axis=-1, keepdims=True)
    return np.argmax(fractions, axis=-1).astype(np.int64), fractions


# ============================================================ smooth fields across the scan


def _smooth_field(rng: np.random.Generator, nx: int, ny: int, modes: int = 5) -> np.ndarray:
    """A random smooth field in [-1, 1], (ny, nx): a few cosines of up to ~2 cycles per scan."""
    x, y = _coords(nx, ny)
    scale = float(max(nx, ny))
    total = np.zeros((ny, nx))
    for _ in range(modes):
        k = rng.normal(0, 1.2, 2) * 2 * np.pi / scale
        total += rng.uniform(0.3, 1.0) * np.cos(k[0] * x + k[1] * y + rng.uniform(0, 2 * np.pi))
    total -= total.mean()
    return total / max(np.abs(total).max(), 1e-9)


def _drift_field(rng: np.random.Generator, nx: int, ny: int) -> np.ndarray:
    """Descan drift direction field in [-1, 1], (ny, nx): mostly a ramp across the scan, plus a wave."""
    x, y = _coords(nx, ny)
    ramp = rng.normal(0, 1) * (x / nx - 0.5) + rng.normal(0, 1) * (y / ny - 0.5)
    ramp /= max(np.abs(ramp).max(), 1e-9)
    total = 0.7 * ramp + 0.3 * _smooth_field(rng, nx, ny, modes=3)
    return total / max(np.abs(total).max(), 1e-9)


# ============================================================ noiseless templates

# basis images: one each, then (flat, skew x, skew y) per diffracting family
_FAMILIES = ("main", "horizontal", "vertical", "diagonal")
_CENTRAL, _BACKGROUND, _FIRST_FAMILY = 0, 1, 2
_N_BASIS = 2 + 3 * len(_FAMILIES)


def _family(i: int, j: int) -> str | None:
    """Which family a reflection (i, j) of the half-order lattice belongs to ((0, 0) is central)."""
    odd_i, odd_j = i % 2 == 1, j % 2 == 1
    if (i, j) == (0, 0):
        return None
    if not odd_i and not odd_j:
        return "main"
    if odd_i and not odd_j:
        return "horizontal"  # step along detector x: polarization along x
    if odd_j and not odd_i:
        return "vertical"
    return "diagonal"


def _paint_disk(img: np.ndarray, cy: float, cx: float, radius: float, value: float) -> None:
    """Add a flat disk with a one-pixel soft edge (so sub-pixel positions show)."""
    r0, r1 = max(0, int(cy - radius - 2)), min(img.shape[0], int(cy + radius + 3))
    c0, c1 = max(0, int(cx - radius - 2)), min(img.shape[1], int(cx + radius + 3))
    if r0 >= r1 or c0 >= c1:
        return
    yy, xx = np.mgrid[r0:r1, c0:c1]
    dist = np.hypot(yy - cy, xx - cx)
    img[r0:r1, c0:c1] += value * np.clip(radius + 0.5 - dist, 0.0, 1.0)


@dataclass
class _Templates:
    """Basis images on the padded canvas, and what is needed to use them."""

    basis: np.ndarray  # (_N_BASIS, side * side) float32, in electrons per unit weight
    side: int
    pad: int


def _disk_images(k: int, pad: int, physics: Physics, seed: int) -> dict[str, np.ndarray]:
    """Noiseless disks of each family on a (k + 2 pad)^2 canvas, before any normalisation.

    Reflection (i, j) sits at centre + i a + j b, where a (b) is the half-order step along the
    crystal axis closest to detector x (y), rotated by ``rotation``. Diffracted disks carry a
    fixed random structure factor times an envelope in |q|; the central disk has weight 1.
    """
    side = k + 2 * pad
    centre = pad + (k - 1) / 2.0
    step = physics.spacing * k
    radius = max(physics.disk_radius * k, 0.8)
    theta = np.deg2rad(physics.rotation)
    ax, ay = step * np.cos(theta), step * np.sin(theta)
    bx, by = -step * np.sin(theta), step * np.cos(theta)
    structure = np.exp(_rng(seed, _LATTICE).normal(0, physics.disk_variation, (2 * _SF_HALF + 1,) * 2))
    envelope_q = 0.25 * k

    images = {name: np.zeros((side, side)) for name in ("central", *_FAMILIES)}
    n = min(_SF_HALF, int(math.ceil(side / step)) + 1)
    for i in range(-n, n + 1):
        for j in range(-n, n + 1):
            cx, cy = centre + i * ax + j * bx, centre + i * ay + j * by
            name = _family(i, j) or "central"
            q = math.hypot(cx - centre, cy - centre)
            weight = 1.0
            if name != "central":
                weight = structure[i + _SF_HALF, j + _SF_HALF] * math.exp(-((q / envelope_q) ** 2))
            _paint_disk(images[name], cy, cx, radius, weight)
    return images


def _render_templates(detector: int, physics: Physics, seed: int) -> _Templates:
    """The basis, rendered once: central disk, background, and (flat, skew x, skew y) per family.

    Central disk, background and main family hold one electron each on the detector at zero
    drift, so basis weights are electrons per pattern; ghosts share the main family's scale,
    which makes ``ghost_strength`` a disk-to-disk ratio.
    """
    k = detector
    pad = int(math.ceil(physics.drift * k)) + 2  # room for the largest drift
    side = k + 2 * pad
    centre = pad + (k - 1) / 2.0
    images = _disk_images(k, pad, physics, seed)
    window = (slice(pad, pad + k), slice(pad, pad + k))  # the detector at zero drift

    def one_electron(img):
        return img / max(img[window].sum(), 1e-12)

    yy, xx = np.mgrid[0:side, 0:side]
    diffuse = np.exp(-np.hypot(yy - centre, xx - centre) / (0.2 * k))  # inelastic / thermal diffuse halo
    skew_x, skew_y = (xx - centre) / (k / 2), (yy - centre) / (k / 2)  # tilt: linear intensity skew
    main_scale = 1.0 / max(images["main"][window].sum(), 1e-12)

    basis = np.zeros((_N_BASIS, side, side), dtype=np.float32)
    basis[_CENTRAL] = one_electron(images["central"])
    basis[_BACKGROUND] = 0.7 * one_electron(diffuse) + 0.3 * one_electron(np.ones((side, side)))
    for f, name in enumerate(_FAMILIES):
        img = images[name] * main_scale
        first = _FIRST_FAMILY + 3 * f
        basis[first], basis[first + 1], basis[first + 2] = img, img * skew_x, img * skew_y
    return _Templates(basis.reshape(_N_BASIS, -1), side, pad)


# ============================================================ the per-position plan


@dataclass
class _Plan:
    """Everything a worker needs to make any chunk of patterns."""

    scan: _Scan
    physics: Physics
    templates: _Templates
    weights: np.ndarray  # (ny, nx, _N_BASIS) float32
    drift: np.ndarray  # (ny, nx, 2) (dy, dx) in detector pixels
    hot_index: np.ndarray  # flat detector indices of hot pixels
    hot_rate: np.ndarray  # their mean counts per pattern
    truth: np.ndarray
    fractions: np.ndarray
    frame: int | None = None  # a frame of a series draws its own noise


def _basis_weights(fractions: np.ndarray, physics: Physics, nx: int, ny: int, seed: int) -> np.ndarray:
    """Per-position coefficients of the basis images, electrons per pattern."""
    rng = _rng(seed, _FIELDS)
    thickness = 1 + physics.thickness_variation * _smooth_field(rng, nx, ny)
    tilt_x = physics.tilt_variation * _smooth_field(rng, nx, ny)
    tilt_y = physics.tilt_variation * _smooth_field(rng, nx, ny)
    diffracted = physics.dose * (1 - physics.background)
    w = np.zeros((ny, nx, _N_BASIS))
    w[..., _CENTRAL] = 0.4 * diffracted * (2 - thickness)  # thicker: less left in the direct beam
    w[..., _BACKGROUND] = physics.dose * physics.background * thickness
    amount = {
        "main": np.ones((ny, nx)),
        "horizontal": physics.ghost_strength * fractions[..., HORIZONTAL],
        "vertical": physics.ghost_strength * fractions[..., VERTICAL],
        "diagonal": physics.ghost_strength * physics.diagonal_ghosts * fractions[..., NONE],
    }
    for f, name in enumerate(_FAMILIES):
        base = 0.6 * diffracted * thickness * amount[name]
        first = _FIRST_FAMILY + 3 * f
        w[..., first], w[..., first + 1], w[..., first + 2] = base, base * tilt_x, base * tilt_y
    return w.astype(np.float32)


def _hot_pixels(detector: int, physics: Physics, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Fixed hot detector pixels and their mean counts (log-normal around 1e-3 of the dose)."""
    rng = _rng(seed, _DETECTOR)
    count = int(round(physics.hot_pixels * detector * detector))
    index = rng.choice(detector * detector, size=count, replace=False)
    rate = physics.dose * 1e-3 * np.exp(rng.normal(0, 1, count))
    return index.astype(np.int64), rate


def _make_plan(scan: _Scan, physics: Physics) -> _Plan:
    truth, fractions = domain_map(scan.geometry, scan.nx, scan.ny, scan.seed,
                                  physics.wall_width, physics.none_width)
    drift_rng = _rng(scan.seed, _FIELDS, 1)
    amplitude = physics.drift * scan.detector
    drift = amplitude * np.stack([_drift_field(drift_rng, scan.nx, scan.ny) for _ in range(2)], axis=-1)
    hot_index, hot_rate = _hot_pixels(scan.detector, physics, scan.seed)
    return _Plan(
        scan=scan,
        physics=physics,
        templates=_render_templates(scan.detector, physics, scan.seed),
        weights=_basis_weights(fractions, physics, scan.nx, scan.ny, scan.seed),
        drift=drift,
        hot_index=hot_index,
        hot_rate=hot_rate,
        truth=truth,
        fractions=fractions,
    )


# ============================================================ making patterns


def poisson_counts(rng: np.random.Generator, lam: np.ndarray, small: float = 2.0) -> np.ndarray:
    """Poisson samples of means ``lam`` (uint32, same shape); 1.5-2x numpy's speed when most are < 1.

    numpy pays a scalar ``exp`` per pixel. Here, by inverse transform: ``exp(-lam) >= 1 - lam``,
    so a uniform ``u <= 1 - lam`` means zero counts without any exponential; only the remaining
    ~lam of the pixels walk the cumulative distribution (a few vectorised steps, then a loop for
    the rare tail). Means above ``small`` go to numpy. Exact up to float32 rounding (~1e-7).
    """
    shape = lam.shape
    lam = np.ascontiguousarray(lam, dtype=np.float32).reshape(-1)
    out = np.zeros(lam.size, dtype=np.uint32)
    u = rng.random(lam.size, dtype=np.float32)
    idx = np.flatnonzero(u + lam > 1.0)  # the others: u <= 1 - lam <= P(0), zero counts
    u, lam = u[idx], lam[idx]
    big = lam > small  # every big mean is among the candidates (u + lam > 1)
    out[idx[big]] = rng.poisson(lam[big])
    idx, u, lam = idx[~big], u[~big], lam[~big]
    term = np.exp(-lam)  # P(0)
    cdf = term.copy()
    k_out = np.zeros(idx.size, dtype=np.uint32)
    for k in range(1, 5):  # count the thresholds u passes: k_out = min(sample, k)
        k_out += u > cdf
        term *= lam
        term *= np.float32(1.0 / k)
        cdf += term
    k_out += u > cdf
    out[idx] = k_out
    tail = u > cdf  # sample > 4: finish one step at a time, dropping the settled
    idx, u, lam, term, cdf = idx[tail], u[tail], lam[tail], term[tail], cdf[tail]
    k = 4
    while idx.size:
        k += 1
        term *= lam / np.float32(k)
        cdf += term
        go_on = u > cdf
        out[idx] += go_on
        idx, u, lam, term, cdf = idx[go_on], u[go_on], lam[go_on], term[go_on], cdf[go_on]
        if k >= 40 and idx.size:  # float rounding kept the cdf below u: never in practice
            out[idx] = rng.poisson(lam)
            break
    return out.reshape(shape)


def _shift_crop(canvas: np.ndarray, drift: np.ndarray, pad: int, k: int, out: np.ndarray) -> None:
    """Cut the detector window out of each canvas, moved by its sub-pixel drift (bilinear)."""
    for n in range(len(canvas)):
        sy, sx = pad - drift[n, 0], pad - drift[n, 1]  # window origin: content moves by +drift
        iy, ix = int(math.floor(sy)), int(math.floor(sx))
        fy, fx = sy - iy, sx - ix
        a = canvas[n]
        rows = a[iy:iy + k + 1, ix:ix + k] * np.float32(1 - fx)
        rows += a[iy:iy + k + 1, ix + 1:ix + k + 1] * np.float32(fx)
        np.multiply(rows[:k], np.float32(1 - fy), out=out[n])
        out[n] += rows[1:] * np.float32(fy)


def _expected_chunk(plan: _Plan, row: int, c0: int, c1: int) -> np.ndarray:
    """Noiseless mean counts of scan row ``row``, columns ``c0:c1``: float32 (c1 - c0, K, K)."""
    k, tpl = plan.scan.detector, plan.templates
    canvas = (plan.weights[row, c0:c1] @ tpl.basis).reshape(-1, tpl.side, tpl.side)
    expected = np.empty((c1 - c0, k, k), dtype=np.float32)
    _shift_crop(canvas, plan.drift[row, c0:c1], tpl.pad, k, expected)
    return np.maximum(expected, 0, out=expected)


def _make_chunk(plan: _Plan, row: int, c0: int, c1: int) -> np.ndarray:
    """Patterns of scan row ``row``, columns ``c0:c1``: uint16 (c1 - c0, K, K)."""
    k = plan.scan.detector
    flat = _expected_chunk(plan, row, c0, c1).reshape(c1 - c0, -1)
    extra = () if plan.frame is None else (plan.frame,)
    rng = _rng(plan.scan.seed, _NOISE, row, c0 // CHUNK, *extra)
    if plan.physics.counting:
        counts = poisson_counts(rng, flat)  # the main cost
        if plan.hot_index.size:
            counts[:, plan.hot_index] += rng.poisson(plan.hot_rate, (c1 - c0, plan.hot_index.size)).astype(np.uint32)
    else:
        counts = np.rint(flat).astype(np.uint32)
        counts[:, plan.hot_index] += np.rint(plan.hot_rate).astype(np.uint32)
    np.minimum(counts, np.iinfo(np.uint16).max, out=counts)
    return counts.astype(np.uint16).reshape(c1 - c0, k, k)


def _chunks(scan: _Scan) -> list[tuple[int, int, int]]:
    return [(r, c0, min(scan.nx, c0 + CHUNK)) for r in range(scan.ny) for c0 in range(0, scan.nx, CHUNK)]


def _stream(plan: _Plan, threads: int | None) -> Iterator[tuple[int, int, int, np.ndarray]]:
    """Chunks ``(row, c0, c1, patterns)`` in scan order, made on a few threads, few in flight
    (``streaming.ordered_map``: memory does not grow with the scan)."""
    from al4dstem.streaming import ordered_map

    threads = max(1, threads or min(4, os.cpu_count() or 1))

    def make(chunk):
        r, c0, c1 = chunk
        return r, c0, c1, _make_chunk(plan, r, c0, c1)

    yield from ordered_map(make, _chunks(plan.scan), threads)


# ============================================================ public entry points

ProgressCallback = Callable[[int, int], None]  # (positions done, positions in all)


def simulate_scan(nx: int = 206, ny: int = 34, detector: int = 256, geometry: str = "bands", seed: int = 0,
                  threads: int | None = None, progress: ProgressCallback | None = None,
                  **physics_options) -> SimulatedScan:
    """Simulate a scan in memory (uint16 ``(ny, nx, detector, detector)``; see ``Physics`` for options).

    ``threads`` only changes the speed, never the result.
    """
    start = time.perf_counter()
    scan = _Scan(nx, ny, detector, geometry, seed)
    physics = Physics.from_options(**physics_options)
    plan = _make_plan(scan, physics)
    data = np.empty(scan.shape, dtype=np.uint16)
    done = 0
    for r, c0, c1, block in _stream(plan, threads):
        data[r, c0:c1] = block
        done += c1 - c0
        if progress:
            progress(done, nx * ny)
    return SimulatedScan(data, plan.truth, plan.fractions, geometry, seed, physics,
                         time.perf_counter() - start)


def simulate_to_file(out_path: str | os.PathLike, truth_path: str | os.PathLike | None = None,
                     nx: int = 206, ny: int = 34, detector: int = 256, geometry: str = "bands",
                     seed: int = 0, threads: int | None = None, progress: ProgressCallback | None = None,
                     **physics_options) -> SimulatedFile:
    """Simulate straight into ``.npy`` (memory-mapped) or ``.h5/.hdf5`` (dataset "data").

    Patterns stream chunk by chunk, so the scan never sits in memory. The file appears under
    its name only when complete; ``truth_path`` gets a CSV ``x,y,label``, one row per position.
    The patterns equal ``simulate_scan`` with the same parameters.
    """
    start = time.perf_counter()
    scan = _Scan(nx, ny, detector, geometry, seed)
    physics = Physics.from_options(**physics_options)
    out_path = Path(out_path)
    suffix = out_path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise Al4dstemError(f"{out_path}: unknown output format {suffix or '(no extension)'!r} "
                            f"(use {', '.join(FILE_SUFFIXES)})")
    nbytes = int(np.prod(scan.shape)) * 2
    _check_writable(out_path, nbytes)
    if truth_path is not None:
        _check_writable(Path(truth_path), 0)
    plan = _make_plan(scan, physics)
    partial = out_path.with_name(f".{out_path.name}.partial")
    try:
        writer = _NpyWriter(partial, scan.shape) if suffix == ".npy" else _H5Writer(partial, scan, physics)
        with writer:
            done = 0
            for r, c0, c1, block in _stream(plan, threads):
                writer.write(r, c0, c1, block)
                done += c1 - c0
                if progress:
                    progress(done, nx * ny)
        os.replace(partial, out_path)
    except OSError as e:
        raise Al4dstemError(f"{out_path}: cannot write ({e.strerror or e})") from None
    finally:
        if partial.exists():
            partial.unlink()
    if truth_path is not None:
        write_truth(truth_path, plan.truth)
    return SimulatedFile(out_path, Path(truth_path) if truth_path is not None else None, scan.shape,
                         plan.truth, plan.fractions, geometry, seed, physics, time.perf_counter() - start)


# ============================================================ in-situ series: a moving wall


@dataclass
class SimulatedSeries:
    """Summary of a moving-wall series written to disk: per frame, the truth and where the wall is."""

    path: Path
    frame_paths: list[Path]  # one file per frame (a folder), or [path] (one 5-D .npy)
    truth_path: Path | None
    shape: tuple[int, ...]  # (frames, ny, nx, K, K)
    truth: np.ndarray  # (frames, ny, nx)
    wall_position: np.ndarray  # (frames,) scan column of the none band's centre
    none_width: np.ndarray  # (frames,) the none band's width, scan positions
    seconds: float = 0.0


def moving_wall(nx: int, ny: int, frame: int, frames: int, none_width: float | None = None,
                wall_width: float = 1.0, travel: float = 0.4) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Frame ``frame`` of ``frames`` of a wall that moves across the scan and widens as it goes.

    Vertical polarization left of the wall, horizontal right of it, a ``none`` band between: its
    centre travels from ``(0.5 - travel / 2) * nx`` to ``(0.5 + travel / 2) * nx`` and its width grows
    by half from ``none_width`` (default: as the built-in geometries). Returns ``(truth, fractions,
    centre, width)``.
    """
    from scipy.ndimage import gaussian_filter

    t = frame / max(1, frames - 1)
    width = (none_width if none_width is not None else _auto_none_width(nx, ny)) * (1 + 0.5 * t)
    centre = nx * (0.5 - travel / 2 + travel * t)
    x, _ = _coords(nx, ny)
    domains = np.full((ny, nx), NONE)
    domains[x + 0.5 < centre - width / 2] = VERTICAL
    domains[x + 0.5 > centre + width / 2] = HORIZONTAL
    onehot = np.stack([(domains == c).astype(float) for c in range(3)], axis=-1)
    if wall_width > 0:
        onehot = np.stack([gaussian_filter(onehot[..., c], wall_width, mode="nearest") for c in range(3)], -1)
    fractions = onehot / onehot.sum(axis=-1, keepdims=True)
    truth = np.argmax(fractions, axis=-1).astype(np.int64)
    return truth, fractions, centre - 0.5, width


def simulate_series(out_path: str | os.PathLike, frames: int, truth_path: str | os.PathLike | None = None,
                    nx: int = 64, ny: int = 32, detector: int = 128, seed: int = 0, threads: int | None = None,
                    progress: ProgressCallback | None = None, **physics_options) -> SimulatedSeries:
    """A moving-wall series (``moving_wall``): one 5-D ``.npy`` ``(frames, ny, nx, K, K)`` when
    ``out_path`` ends in ``.npy``, else a folder of ``frame_000.npy``, ... (one scan per frame).

    Every frame is the same sample (fields, drift, hot pixels) with its own counting noise.
    ``truth_path`` gets a CSV ``x,y,label,scan`` (``scan``: the frame's file name, or ``frame_N``
    for a 5-D file) and, beside it, ``<stem>_walls.csv`` (frame, wall_position, none_width).
    """
    import dataclasses

    start = time.perf_counter()
    _check_int("frames", frames, 1, 100_000)
    scan = _Scan(nx, ny, detector, "bands", seed)
    physics = Physics.from_options(**physics_options)
    out_path = Path(out_path)
    five_d = out_path.suffix.lower() == ".npy"
    if not five_d and out_path.suffix:
        raise Al4dstemError(f"{out_path}: a series is one .npy (5-D) or a folder (a name without extension)")
    shape = (frames, *scan.shape)
    if five_d:
        _check_writable(out_path, int(np.prod(shape)) * 2)
        frame_paths = [out_path]
    else:
        if out_path.exists() and not out_path.is_dir():
            raise Al4dstemError(f"{out_path}: exists and is not a folder")
        _check_writable(out_path / "frame_000.npy", int(np.prod(shape)) * 2)
        frame_paths = [out_path / f"frame_{f:03d}.npy" for f in range(frames)]
    if truth_path is not None:
        _check_writable(Path(truth_path), 0)
    base = _make_plan(scan, physics)
    truths, centres, widths = [], [], []
    partial = out_path.with_name(f".{out_path.name}.partial") if five_d else None
    try:
        stack = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint16, shape=shape) if five_d else None
        for f in range(frames):
            truth, fractions, centre, width = moving_wall(nx, ny, f, frames, physics.none_width, physics.wall_width)
            plan = dataclasses.replace(base, truth=truth, fractions=fractions, frame=f,
                                       weights=_basis_weights(fractions, physics, nx, ny, seed))
            truths.append(truth)
            centres.append(centre)
            widths.append(width)
            if five_d:
                target = stack[f]
                writer = None
            else:
                writer = _NpyWriter(frame_paths[f].with_name(f".{frame_paths[f].name}.partial"), scan.shape)
                target = writer.__enter__().array
            for r, c0, c1, block in _stream(plan, threads):
                target[r, c0:c1] = block
                if progress:
                    progress(f * nx * ny + r * nx + c1, frames * nx * ny)
            if writer is not None:
                writer.__exit__(None, None, None)
                os.replace(writer.path, frame_paths[f])
        if five_d:
            stack.flush()
            del stack
            os.replace(partial, out_path)
    except OSError as e:
        raise Al4dstemError(f"{out_path}: cannot write ({e.strerror or e})") from None
    finally:
        if partial is not None and partial.exists():
            partial.unlink()
    truth_all = np.stack(truths)
    if truth_path is not None:
        _write_series_truth(Path(truth_path), truth_all, [p.name for p in frame_paths] if not five_d else None,
                            centres, widths)
    return SimulatedSeries(out_path, frame_paths, Path(truth_path) if truth_path is not None else None, shape,
                           truth_all, np.array(centres), np.array(widths), time.perf_counter() - start)


def _write_series_truth(path: Path, truth: np.ndarray, names: list[str] | None, centres, widths) -> None:
    frames, ny, nx = truth.shape
    rows = (Label(x, y, int(truth[f, y, x]), extra={"scan": names[f] if names else f"frame_{f}"})
            for f in range(frames) for y in range(ny) for x in range(nx))
    try:
        write_labels(path, rows)
        with open(path.with_name(f"{path.stem}_walls.csv"), "w") as out:
            out.write("frame,wall_position,none_width\n")
            for f, (c, w) in enumerate(zip(centres, widths, strict=True)):
                out.write(f"{f},{c:.3f},{w:.3f}\n")
    except OSError as e:
        raise Al4dstemError(f"{path}: cannot write ({e.strerror or e})") from None


def write_truth(path: str | os.PathLike, truth: np.ndarray) -> None:
    """Truth CSV ``x,y,label`` (x = scan column, y = scan row), one row per position, scan order."""
    ny, nx = truth.shape
    rows = (Label(x, y, int(truth[y, x])) for y in range(ny) for x in range(nx))
    try:
        write_labels(path, rows)
    except OSError as e:
        raise Al4dstemError(f"{path}: cannot write ({e.strerror or e})") from None


def _check_writable(path: Path, nbytes: int) -> None:
    """Fail early, with one line, on a folder we cannot create or write, or a full disk."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise Al4dstemError(f"{path}: cannot create folder {path.parent} ({e.strerror or e})") from None
    if path.is_dir():
        raise Al4dstemError(f"{path}: is a folder, expected a file name")
    if not os.access(path.parent, os.W_OK):
        raise Al4dstemError(f"{path}: folder {path.parent} is not writable")
    free = shutil.disk_usage(path.parent).free
    if nbytes > free:  # a memory map running past a full disk dies with SIGBUS: refuse first
        raise Al4dstemError(f"{path}: needs {nbytes / 1e9:.2f} GB but only {free / 1e9:.2f} GB are free")


class _NpyWriter:
    def __init__(self, path: Path, shape):
        self.path, self.shape = path, shape

    def __enter__(self):
        self.array = np.lib.format.open_memmap(self.path, mode="w+", dtype=np.uint16, shape=self.shape)
        return self

    def write(self, r, c0, c1, block):
        self.array[r, c0:c1] = block

    def __exit__(self, *exc):
        self.array.flush()
        del self.array


class _H5Writer:
    def __init__(self, path: Path, scan: _Scan, physics: Physics):
        self.path, self.scan, self.physics = path, scan, physics

    def __enter__(self):
        import json

        import h5py

        self.file = h5py.File(self.path, "w")
        k = self.scan.detector
        self.data = self.file.create_dataset("data", shape=self.scan.shape, dtype=np.uint16,
                                             chunks=(1, 1, k, k))
        self.data.attrs["simulation"] = json.dumps(
            {"geometry": self.scan.geometry, "seed": int(self.scan.seed), **asdict(self.physics)})
        return self

    def write(self, r, c0, c1, block):
        self.data[r, c0:c1] = block

    def __exit__(self, *exc):
        self.file.close()


# ============================================================ the difficulty ladder


@dataclass(frozen=True)
class Rung:
    """One step of the difficulty ladder: simulation options and the oracle's label noise.

    ``physics``: keyword options of ``Physics`` (ghost strength, dose, background, lattice
    rotation, thickness and tilt variation). ``label_noise``: the share of a simulated human's
    answers that are wrong (``al4dstem.oracles.NoisyOracle``); the simulator itself is noiseless
    in its labels.
    """

    name: str
    physics: dict
    label_noise: float = 0.0
    note: str = ""

    def simulate(self, nx: int = 72, ny: int = 56, detector: int = 128, geometry: str = "bullseye", seed: int = 0,
                 threads: int | None = None) -> SimulatedScan:
        """A scan on this rung (the issue-12 scan size by default), in memory."""
        return simulate_scan(nx=nx, ny=ny, detector=detector, geometry=geometry, seed=seed, threads=threads,
                             **self.physics)


#: From easy to very faint. Ghost strength is relative to the main disks (realistic 1e-3..5e-2), dose in
#: electrons per pattern, background the diffuse share of the dose, rotation of the lattice in degrees.
DIFFICULTY_LADDER = (
    Rung("easy", {"ghost_strength": 0.04, "dose": 2e5, "background": 0.1, "rotation": 0.0,
                  "thickness_variation": 0.1, "tilt_variation": 0.1}, 0.0, "bright ghosts, aligned lattice"),
    Rung("default", {}, 0.0, "the simulator's defaults: ghosts 0.02, 1e5 e-, rotation 4"),
    Rung("faint-rotated", {"ghost_strength": 0.015, "dose": 3e4, "rotation": 31.0}, 0.0,
         "issue 12: faint ghosts, lattice at 31 degrees"),
    Rung("faint-45", {"ghost_strength": 0.015, "dose": 3e4, "rotation": 45.0}, 0.0,
         "issue 12: faint ghosts, lattice at 45 degrees"),
    Rung("diffuse", {"ghost_strength": 0.01, "dose": 2e4, "background": 0.3, "rotation": 17.0,
                     "thickness_variation": 0.35, "tilt_variation": 0.35}, 0.03,
         "fainter, 30 % diffuse background, thickness and tilt variation, 3 % wrong labels"),
    Rung("very-faint", {"ghost_strength": 0.006, "dose": 1e4, "background": 0.4, "rotation": 38.0,
                        "thickness_variation": 0.4, "tilt_variation": 0.4}, 0.05,
         "ghosts 0.006 at 1e4 e-, 40 % background, strong thickness and tilt, 5 % wrong labels"),
)


def ladder_rung(name: str) -> Rung:
    """A rung of ``DIFFICULTY_LADDER`` by name."""
    for rung in DIFFICULTY_LADDER:
        if rung.name == name:
            return rung
    raise Al4dstemError(f"unknown difficulty {name!r} (one of {', '.join(r.name for r in DIFFICULTY_LADDER)})")

"""Image maths for showing diffraction patterns and the scan to a person.

Shared by the terminal labeller (``al4dstem.oracles.render``) and the browser labeller, so it
draws nothing itself: numpy and scipy in, float images in [0, 1] or uint8 RGB arrays out.

How a pattern is made legible (the ghost disks are 1e-3..5e-2 of the Bragg disks, in counting
noise):

1. hot pixels (isolated pixels far above all eight neighbours) are replaced;
2. the pattern is smoothed at half a disk radius (a matched filter for disks, which lifts a
   faint disk out of the shot noise; more would bury the ghosts in the Bragg disks' tails),
   and its diffuse background, a coarse running low percentile, is subtracted;
3. what is left is divided by the noise, so values are significances: the same for every
   pattern, and a pattern without ghosts looks empty rather than stretched up to noise;
4. shrinking to the screen keeps each block's maximum, so a 2-pixel disk survives where
   nearest-neighbour sampling drops it and averaging dilutes it;
5. a log stretch maps 1 noise sigma (2 when shrunk: block maxima) to black and the Bragg disk
   level to the top. The central beam is left out when that level is measured, so it
   saturates alone, and Bragg disks, ghosts and noise keep three distinct brightnesses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_INFERNO = np.array([(0, 0, 4), (40, 11, 84), (101, 21, 110), (159, 42, 99), (212, 72, 66),
                     (245, 125, 21), (250, 193, 39), (252, 255, 164)], dtype=float)
COLORMAP = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_INFERNO)), _INFERNO[:, k])
                     for k in range(3)], axis=1).round().astype(np.uint8)
GAMMA = 0.75  # below 1 lifts the faint end a little more than the log alone


# ---------------------------------------------------------------- basic maths


def as_image(pattern) -> np.ndarray:
    """A float64 copy of a 2-D pattern with NaN and inf set to 0."""
    img = np.asarray(pattern, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D pattern, got shape {img.shape}")
    return np.nan_to_num(img, nan=0.0, posinf=0.0, neginf=0.0)


def scale(image: np.ndarray, low: float, high: float, log: bool = True, gamma: float = 1.0) -> np.ndarray:
    """``image`` mapped to [0, 1] between the fixed levels ``low`` and ``high``.

    With ``log``, ``log1p(image - low) / log1p(high - low)``: the levels are in the image's own
    units, and one unit above ``low`` is where the log starts to compress. ``gamma`` < 1 lifts
    the faint end.
    """
    img = np.asarray(image, dtype=np.float64)
    span = float(high) - float(low)
    if not np.isfinite(span) or span <= 0:
        return np.zeros(img.shape)
    above = np.clip(img - low, 0.0, span)
    out = np.log1p(above) / np.log1p(span) if log else above / span
    if gamma != 1.0:
        out = out ** float(gamma)
    return np.clip(out, 0.0, 1.0)


def stretch(image: np.ndarray, low: float = 1.0, high: float = 99.9, log: bool = True, gamma: float = 1.0,
            mask: np.ndarray | None = None) -> np.ndarray:
    """``image`` mapped to [0, 1]: log-scaled (``log1p``), clipped at its ``low``/``high`` percentiles,
    then raised to ``gamma``.

    Percentiles rather than min/max so a few hot pixels or the central beam do not push the
    faint ghost disks into black. ``mask`` (bool, same shape) limits the pixels the percentiles
    are taken from, e.g. to leave out the central beam. Non-decreasing in the image values.
    """
    img = as_image(image)
    if log:
        img = np.log1p(np.maximum(img, 0))
    sample = img[mask] if mask is not None and np.any(mask) else img
    lo, hi = np.percentile(sample, [low, high])
    if hi <= lo:
        hi = img.max()
    if hi <= lo:
        return np.zeros_like(img)
    out = np.clip((img - lo) / (hi - lo), 0, 1)
    return out ** float(gamma) if gamma != 1.0 else out


def resample(image: np.ndarray, shape: tuple[int, int], method: str = "mean") -> np.ndarray:
    """``image`` brought to ``shape``: blocks reduced by ``method`` ("mean" or "max") when shrinking,
    pixels repeated when enlarging (uneven blocks are fine).

    "max" keeps a disk smaller than a block at its full brightness: shrinking 256 -> 32 turns an
    8-pixel ghost disk into one bright pixel instead of a diluted grey one.
    """
    if method not in ("mean", "max"):
        raise ValueError(f"unknown resampling method {method!r} (mean or max)")
    out = np.asarray(image, dtype=np.float64)
    for axis, n in enumerate(shape):
        m = out.shape[axis]
        if n >= m:
            out = np.take(out, np.arange(n) * m // n, axis=axis)
            continue
        edges = np.arange(n) * m // n
        if method == "max":
            out = np.maximum.reduceat(out, edges, axis=axis)
        else:
            counts = np.diff(np.append(edges, m)).reshape([-1 if a == axis else 1 for a in range(2)])
            out = np.add.reduceat(out, edges, axis=axis) / counts
    return out


def colourise(values01: np.ndarray, colormap: np.ndarray = COLORMAP) -> np.ndarray:
    """[0, 1] values -> ``(h, w, 3)`` uint8 through an inferno-like colour map (dark = faint)."""
    index = np.round(np.clip(np.nan_to_num(values01), 0, 1) * (len(colormap) - 1)).astype(np.intp)
    return colormap[index]


def hot_pixel_mask(image: np.ndarray, factor: float = 3.0) -> np.ndarray:
    """Bool mask of hot pixels: above ``factor`` times the brightest of their eight neighbours plus
    a floor (ten times the image's median absolute deviation, at least 3 times its smallest
    positive value). A real disk, even a 2-pixel one, has bright neighbours; isolated single
    electrons stay below the floor. On a scan's mean pattern this finds the detector's hot pixels."""
    img = as_image(image)
    if min(img.shape) < 3:
        return np.zeros(img.shape, dtype=bool)
    padded = np.pad(img, 1, mode="edge")
    rows, cols = img.shape
    neighbours = np.full(img.shape, -np.inf)
    for dr in (0, 1, 2):
        for dc in (0, 1, 2):
            if (dr, dc) != (1, 1):
                np.maximum(neighbours, padded[dr:dr + rows, dc:dc + cols], out=neighbours)
    positive = img[img > 0]
    spread = float(np.median(np.abs(img - np.median(img))))
    floor = max(10 * spread, 3 * float(positive.min())) if positive.size else 0.0
    return img > factor * np.maximum(neighbours, 0) + floor


def remove_hot_pixels(image: np.ndarray, factor: float = 3.0) -> np.ndarray:
    """A copy of ``image`` with hot pixels (``hot_pixel_mask``) replaced by the median of their
    eight neighbours."""
    img = as_image(image)
    hot = hot_pixel_mask(img, factor)
    if not hot.any():
        return img
    padded = np.pad(img, 1, mode="edge")
    rows, cols = np.nonzero(hot)
    around = np.stack([padded[rows + 1 + dr, cols + 1 + dc]
                       for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)], axis=1)
    out = img.copy()
    out[rows, cols] = np.median(around, axis=1)
    return out


# ---------------------------------------------------------------- the central beam and the zoom window


@dataclass(frozen=True)
class Beam:
    """The central beam: sub-pixel centre (row, col) and radius, detector pixels."""

    row: float
    col: float
    radius: float


def binned(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean of ``factor`` x ``factor`` blocks (edges padded by repetition)."""
    img = np.asarray(image, dtype=np.float64)
    if factor <= 1:
        return img
    rows, cols = (-(-n // factor) for n in img.shape)
    padded = np.pad(img, ((0, rows * factor - img.shape[0]), (0, cols * factor - img.shape[1])), mode="edge")
    return padded.reshape(rows, factor, cols, factor).mean(axis=(1, 3))


def _coarse_factor(image: np.ndarray) -> int:
    """Binning that brings a pattern near 256 pixels across: finding the beam needs no more."""
    return max(1, min(np.shape(image)) // 256)


def find_beam(image: np.ndarray) -> Beam:
    """The central beam of a (cleaned) pattern: the brightest smoothed spot, its centre the
    weighted centroid and its radius from the area above half its height over the background.
    Large detectors are binned to ~256 pixels first (fast; the centre stays within a pixel)."""
    from scipy.ndimage import gaussian_filter, label

    full = as_image(image)
    f = _coarse_factor(full)
    img = binned(full, f)
    side = min(img.shape)
    smooth = gaussian_filter(img, max(1.0, side / 128))
    peak = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
    floor = float(np.median(smooth))
    height = smooth[peak] - floor
    if height <= 0:
        return Beam((full.shape[0] - 1) / 2, (full.shape[1] - 1) / 2, max(1.0, min(full.shape) / 64))
    regions, _ = label(smooth - floor >= height / 2)
    blob = regions == regions[peak]
    rr, cc = np.nonzero(blob)
    w = smooth[rr, cc] - floor
    radius = float(np.clip(np.sqrt(blob.sum() / np.pi), 1.0, side / 4))
    row, col = (rr * w).sum() / w.sum(), (cc * w).sum() / w.sum()
    return Beam(float((row + 0.5) * f - 0.5), float((col + 0.5) * f - 0.5), radius * f)


def _peaks(smooth: np.ndarray, spacing: float, exclude: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima ``(rows, cols)`` of ``smooth`` at least ``spacing`` apart, outside the disk
    ``exclude`` = (row, col, radius), brightest first, with their heights over the median."""
    from scipy.ndimage import maximum_filter

    size = max(3, int(round(spacing)) | 1)
    floor = float(np.median(smooth))
    peak = (smooth == maximum_filter(smooth, size=size, mode="nearest")) & (smooth > floor)
    rr, cc = np.nonzero(peak)
    er, ec, eradius = exclude
    keep = np.hypot(rr - er, cc - ec) > eradius
    rr, cc = rr[keep], cc[keep]
    heights = smooth[rr, cc] - floor
    order = np.argsort(-heights, kind="stable")
    return np.stack([rr[order], cc[order]], axis=1), heights[order]


def first_disk_distance(image: np.ndarray, beam: Beam | None = None) -> float | None:
    """Distance from the central beam to the nearest Bragg disk (a peak at least a tenth as high
    as the brightest one beside the beam, so ghosts do not count), or None when there is none."""
    from scipy.ndimage import gaussian_filter

    full = as_image(image)
    beam = beam or find_beam(full)
    f = _coarse_factor(full)
    img = binned(full, f)
    radius, row, col = beam.radius / f, (beam.row + 0.5) / f - 0.5, (beam.col + 0.5) / f - 0.5
    smooth = gaussian_filter(img, max(1.0, radius / 2))
    points, heights = _peaks(smooth, 2 * radius, (row, col, 2.5 * radius))
    if not len(points):
        return None
    strong = points[heights >= 0.1 * heights[0]]
    return float(np.hypot(strong[:, 0] - row, strong[:, 1] - col).min()) * f


def zoom_window(pattern: np.ndarray, lattice=None, beam: Beam | None = None) -> tuple[int, int, int, int]:
    """``(r0, r1, c0, c1)``: a square around the central beam reaching just past the nearest
    Bragg disks, so the half-order ghost disks (halfway to them) fill the view.

    ``lattice`` (an ``al4dstem.lattice.Lattice``) gives the centre and spacing; without it both
    are measured on the pattern (``beam``, if given, is its central beam, already found).
    """
    img = as_image(pattern)
    kr, kc = img.shape
    side = min(kr, kc)
    if lattice is not None:
        cy, cx = lattice.centre[1], lattice.centre[0]
        reach = float(min(np.hypot(*lattice.g1), np.hypot(*lattice.g2)))
    else:
        clean = remove_hot_pixels(img) if beam is None else img
        beam = beam or find_beam(clean)
        cy, cx = beam.row, beam.col
        reach = first_disk_distance(clean, beam) or side / 4
    half = int(np.clip(np.ceil(1.3 * reach), side / 8, side / 2))
    r0 = int(np.clip(round(cy) - half, 0, max(0, kr - 2 * half)))
    c0 = int(np.clip(round(cx) - half, 0, max(0, kc - 2 * half)))
    return r0, min(kr, r0 + 2 * half), c0, min(kc, c0 + 2 * half)


# ---------------------------------------------------------------- significance images


def background(image: np.ndarray, size: float, percentile: float = 30.0) -> np.ndarray:
    """The diffuse background: a running low percentile over about ``size`` pixels, on a coarse
    grid (fast), interpolated back. A low percentile rather than the median, because rows of
    disks and ghosts can fill half of a window."""
    from scipy.ndimage import percentile_filter, zoom

    img = np.asarray(image, dtype=np.float64)
    step = max(1, int(size // 6))
    coarse = binned(img, step)
    coarse = percentile_filter(coarse, percentile, size=max(3, int(round(size / step)) | 1), mode="nearest")
    if step == 1:
        return coarse[: img.shape[0], : img.shape[1]]
    fine = zoom(coarse, step, order=1, mode="nearest", grid_mode=True)
    return fine[: img.shape[0], : img.shape[1]]


def noise_sigma(residual: np.ndarray) -> float:
    """Robust standard deviation of a background-subtracted image (1.4826 x median absolute deviation)."""
    residual = np.asarray(residual, dtype=np.float64)
    mad = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
    if mad > 0:
        return mad
    spread = float(np.mean(np.abs(residual)))  # very sparse data: most pixels exactly equal
    return spread if spread > 0 else 1.0


def significance(image: np.ndarray, sigma: float, background_size: float) -> np.ndarray:
    """``image`` smoothed by a Gaussian of ``sigma``, less its background, in units of its noise
    (0 = the typical background pixel).

    The background is measured on the unsmoothed image, where disks are compact and leave the
    gaps between them free; smoothing first would spread them over the gaps.
    """
    from scipy.ndimage import gaussian_filter

    img = as_image(image)
    smooth = gaussian_filter(img, sigma) if sigma > 0 else img
    residual = smooth - background(img, background_size)
    residual -= np.median(residual)
    return residual / noise_sigma(residual)


# ---------------------------------------------------------------- patterns for people


@dataclass
class Prepared:
    """What every drawing of one pattern shares: the cleaned image, its beam, the window shown,
    and (computed on first use) the window's significances and Bragg-disk level."""

    image: np.ndarray  # hot pixels removed, float64
    beam: Beam
    window: tuple[int, int, int, int]  # (r0, r1, c0, c1): the whole detector, or the zoom window
    zoom: bool
    lattice: object | None = None
    significance: np.ndarray | None = None  # (r1 - r0, c1 - c0), noise units
    main_level: float | None = None

    @property
    def side(self) -> int:
        """Detector pixels across the window."""
        r0, r1, c0, c1 = self.window
        return max(r1 - r0, c1 - c0)


def prepare(pattern: np.ndarray, zoom: bool = False, lattice=None) -> Prepared:
    """Clean a pattern, find its beam (or take the lattice's) and the window to show."""
    img = remove_hot_pixels(as_image(pattern))
    if lattice is not None:
        beam = Beam(float(lattice.centre[1]), float(lattice.centre[0]), float(lattice.disk_radius))
    else:
        beam = find_beam(img)
    window = zoom_window(img, lattice, beam) if zoom else (0, img.shape[0], 0, img.shape[1])
    return Prepared(img, beam, window, zoom, lattice)


def _measure(prep: Prepared) -> None:
    """Fill ``prep.significance`` and ``prep.main_level`` (once: every size of drawing shares them)."""
    img, beam, lattice = prep.image, prep.beam, prep.lattice
    kr, kc = img.shape
    r0, r1, c0, c1 = prep.window
    sigma = 0.5 * beam.radius  # not more when shrinking: the Bragg disks' tails would bury the ghosts
    bg_size = max(6 * beam.radius, min(kr, kc) / 10)
    # work on the window and a margin wide enough for the smoothing and the background
    margin = int(np.ceil(bg_size + 4 * sigma))
    w0, w1, v0, v1 = max(0, r0 - margin), min(kr, r1 + margin), max(0, c0 - margin), min(kc, c1 + margin)
    z = significance(img[w0:w1, v0:v1], sigma, bg_size)[r0 - w0:r1 - w0, c0 - v0:c1 - v0]

    # the top of the scale: the Bragg disks, measured without the central beam
    rr, cc = np.ogrid[r0:r1, c0:c1]
    outside_beam = np.hypot(rr - beam.row, cc - beam.col) > 2 * beam.radius
    cores = None
    if lattice is not None:
        from al4dstem.lattice import disk_mask

        cores = disk_mask(lattice, (kr, kc), "main", radius=0.6 * lattice.disk_radius)[r0:r1, c0:c1] & outside_beam
    if cores is not None and cores.any():
        level = float(np.median(z[cores]))
    else:
        level = float(np.percentile(z[outside_beam], 99.5)) if outside_beam.any() else float(z.max())
    prep.significance, prep.main_level = z, level


@dataclass
class PatternView:
    """A pattern prepared for a screen: values in [0, 1], where they came from, and a note."""

    values: np.ndarray  # (size, size) float in [0, 1]
    window: tuple[int, int, int, int]  # (r0, r1, c0, c1) of the detector shown
    beam: Beam
    main_level: float  # significance drawn at the top of the scale
    note: str


def pattern_view(pattern, size: int, zoom: bool = False, lattice=None, gamma: float = GAMMA) -> PatternView:
    """A pattern drawn ``size`` x ``size`` pixels (see the module notes for how).

    ``pattern``: a 2-D array, or a ``Prepared`` one (then ``zoom`` and ``lattice`` are its own;
    drawing it again at another size costs only the resampling).
    ``zoom`` shows only the central beam and its nearest Bragg disks (``zoom_window``), with the
    contrast measured inside that window; ``lattice`` (optional) places the window and masks
    the Bragg disks exactly instead of estimating their level.
    """
    prep = pattern if isinstance(pattern, Prepared) else prepare(pattern, zoom, lattice)
    if prep.significance is None:
        _measure(prep)
    kr, kc = prep.image.shape
    r0, r1, c0, c1 = prep.window
    shrink = prep.side / max(1, size)
    # plain noise stays near black: one sigma, two where each pixel is the maximum of a block
    low = 1.0 if shrink <= 1.5 else 2.0
    top = max(prep.main_level, low + 4.0)  # a pattern of noise alone is not stretched up to white
    values = scale(resample(prep.significance, (size, size), method="max"), low, top, log=True, gamma=gamma)
    if prep.zoom:
        note = f"zoom rows {r0}-{r1 - 1}, cols {c0}-{c1 - 1}"
    else:
        note = f"{kr} x {kc}" + (f", 1:{shrink:.1f}" if shrink > 1 else "")
    return PatternView(values, prep.window, prep.beam, top, note)


def pattern_values(pattern: np.ndarray, size: int, zoom: bool = False, lattice=None,
                   gamma: float = GAMMA) -> tuple[np.ndarray, str]:
    """``(values in [0, 1] of shape (size, size), note)``: see ``pattern_view``."""
    view = pattern_view(pattern, size, zoom, lattice, gamma)
    return view.values, view.note


def pattern_rgb(pattern: np.ndarray, size: int, zoom: bool = False, lattice=None,
                gamma: float = GAMMA) -> tuple[np.ndarray, str]:
    """``(uint8 (size, size, 3), note)``: the pattern through the colour map (dark = faint)."""
    values, note = pattern_values(pattern, size, zoom, lattice, gamma)
    return colourise(values), note


# ---------------------------------------------------------------- the scan from above


def overview_scale(scan_shape, max_width: int, max_height: int) -> tuple[int, int, tuple[int, int]]:
    """``(down, up, shape)``: scan positions per pixel, pixels per position for small scans
    (one of them is 1), and the downsampled shape before ``up`` is applied."""
    rows, cols = scan_shape
    down = max(1, -(-cols // max(1, max_width)), -(-rows // max(1, max_height)))
    shape = (-(-rows // down), -(-cols // down))
    return down, max(1, min(max_width // shape[1], max_height // shape[0])), shape


def overview_rgb(background: np.ndarray, labels: dict, current: tuple[int, int] | None,
                 max_width: int, max_height: int, scheme: str = "class") -> np.ndarray:
    """The scan seen from above, uint8 ``(h, w, 3)``: the virtual image in dim grey, labelled
    positions ``{(x, y): class}`` in their class colour, the ``current`` position (x, y) in the
    marker colour. Scaled by a whole factor to fit ``max_width`` x ``max_height`` pixels.
    """
    from al4dstem.colors import CURRENT_RGB, class_rgb

    colours = class_rgb(scheme)
    f, up, shape = overview_scale(np.shape(background), max_width, max_height)
    grey = stretch(resample(as_image(background), shape), 2, 98, log=False)
    rgb = np.repeat((30 + 100 * grey)[..., None], 3, axis=2).astype(np.uint8)  # dim: colours and marker stand out
    for (x, y), c in labels.items():
        rgb[y // f, x // f] = colours[c]
    if current is not None:
        rgb[current[1] // f, current[0] // f] = CURRENT_RGB
    return rgb.repeat(up, axis=0).repeat(up, axis=1)

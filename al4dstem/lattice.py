"""The crystal lattice on the detector, found from a scan's mean pattern, and where the ghost
disks of each class lie (docs/design.md §4).

Reflections are indexed ``(i, j)`` on the half-order lattice, as in ``al4dstem.simulate``:
reflection ``(i, j)`` sits at ``centre + i g1 / 2 + j g2 / 2``, where ``g1`` and ``g2`` are the
basis vectors of the MAIN lattice (the Bragg disks, even-even indices). Then

- horizontal polarization -> ghosts at ``(odd, even)``: the main lattice shifted by ``g1 / 2``;
- vertical -> ghosts at ``(even, odd)``: shifted by ``g2 / 2``;
- none -> no in-plane ghosts, at most faint ``(odd, odd)`` diagonal ones.

The classes follow the crystal axes, so which axis is "horizontal" is a convention: ``g1`` is
the main-lattice vector closest in angle to detector +x (within 45 degrees), ``g2`` the other
one, turned +90 degrees from it (towards detector +y). A lattice rotated by exactly 45 degrees
is ambiguous, for the labeller as for this module.

Coordinates on the detector are ``(x, y)`` = (column, row), like scan positions (docs/design.md §1).
numpy and scipy only: the terminal and the browser labeller both use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from al4dstem.display import as_image, background, find_beam, noise_sigma, remove_hot_pixels
from al4dstem.errors import Al4dstemError
from al4dstem.labels import CLASSES

KINDS = ("main", "horizontal", "vertical", "diagonal")
_PARITY = {"main": (0, 0), "horizontal": (1, 0), "vertical": (0, 1), "diagonal": (1, 1)}
CLASS_GHOSTS = {0: "diagonal", 1: "vertical", 2: "horizontal"}  # class index -> its ghost family


@dataclass(frozen=True)
class Lattice:
    """The main lattice on the detector, pixels; vectors and points are ``(x, y)``.

    centre: the central beam (reflection 0, 0).
    g1: main-lattice basis vector within 45 degrees of detector +x (the horizontal class's axis).
    g2: the other basis vector, about +90 degrees from ``g1`` (the vertical class's axis).
    disk_radius: radius of the disks.
    n_disks: Bragg disks the fit used; residual: their rms distance from the fitted lattice.
    """

    centre: tuple[float, float]
    g1: tuple[float, float]
    g2: tuple[float, float]
    disk_radius: float
    n_disks: int = 0
    residual: float = 0.0

    @property
    def rotation(self) -> float:
        """Degrees from detector +x to ``g1``, in [-45, 45]."""
        return float(np.degrees(np.arctan2(self.g1[1], self.g1[0])))

    @property
    def spacing(self) -> float:
        """Mean length of the two main basis vectors, pixels."""
        return float((np.hypot(*self.g1) + np.hypot(*self.g2)) / 2)

    def positions(self, indices) -> np.ndarray:
        """``(n, 2)`` float ``(x, y)`` of half-order reflections ``indices`` ``(n, 2)`` as ``(i, j)``."""
        ij = np.asarray(indices, dtype=np.float64).reshape(-1, 2)
        basis = np.array([self.g1, self.g2], dtype=np.float64) / 2
        return np.asarray(self.centre, dtype=np.float64) + ij @ basis


# ---------------------------------------------------------------- finding it


def mean_pattern(dataset, max_patterns: int | None = 2048, batch_size: int = 256) -> np.ndarray:
    """The mean diffraction pattern of a scan, float64 ``(det_rows, det_cols)``, non-finite pixels as 0.

    Streams the scan; with ``max_patterns``, only that many positions spread evenly over it
    (the lattice is the same everywhere, so a sample is enough and much faster).
    """
    total = np.zeros(dataset.detector_shape, dtype=np.float64)
    n = dataset.n_positions
    if max_patterns is not None and n > max_patterns:
        picks = dataset.all_positions()[np.linspace(0, n - 1, int(max_patterns)).round().astype(np.int64)]
        for start in range(0, len(picks), batch_size):
            block = dataset.get(picks[start:start + batch_size]).astype(np.float64)
            total += np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0).sum(axis=0)
        return total / len(picks)
    for batch in dataset.iter_batches(batch_size):
        block = batch.patterns.astype(np.float64)
        total += np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0).sum(axis=0)
    return total / n


def _centroid(image: np.ndarray, x: float, y: float, radius: float) -> tuple[float, float, float]:
    """Weighted centroid ``(x, y, peak)`` of the positive part of ``image`` within ``radius`` of (x, y)."""
    rows, cols = image.shape
    r = max(1, int(np.ceil(radius)))
    r0, r1 = max(0, int(round(y)) - r), min(rows, int(round(y)) + r + 1)
    c0, c1 = max(0, int(round(x)) - r), min(cols, int(round(x)) + r + 1)
    if r0 >= r1 or c0 >= c1:
        return x, y, 0.0
    patch = image[r0:r1, c0:c1]
    yy, xx = np.mgrid[r0:r1, c0:c1]
    w = np.where(np.hypot(yy - y, xx - x) <= radius, np.maximum(patch, 0), 0.0)
    total = w.sum()
    if total <= 0:
        return x, y, 0.0
    return float((xx * w).sum() / total), float((yy * w).sum() / total), float(patch.max())


def _reduce(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gauss (Lagrange) reduction: the two shortest vectors spanning the same 2-D lattice."""
    u, v = u.astype(np.float64), v.astype(np.float64)
    for _ in range(100):
        if u @ u > v @ v:
            u, v = v, u
        m = np.round((u @ v) / (u @ u))
        if m == 0:
            break
        v = v - m * u
    return u, v


def _orient(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(g1, g2)`` from a reduced basis: g1 the one of +-u, +-v closest in angle to detector +x,
    g2 the other with a positive cross product (turned towards +y)."""
    candidates = [u, -u, v, -v]
    k = int(np.argmin([abs(np.degrees(np.arctan2(c[1], c[0]))) for c in candidates]))
    g1 = candidates[k]
    other = v if k < 2 else u
    g2 = other if g1[0] * other[1] - g1[1] * other[0] > 0 else -other
    return g1, g2


def _index(points: np.ndarray, basis: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Integer indices of ``points`` (relative to the centre) on ``basis`` (rows g1, g2), and which
    lie within ``tolerance`` pixels of their lattice node."""
    hk = np.linalg.solve(basis.T, points.T).T
    whole = np.round(hk)
    miss = np.linalg.norm((hk - whole) @ basis, axis=1)
    return whole.astype(np.int64), miss <= tolerance


def _disks_on_nodes(resid: np.ndarray, centre, g1, g2, radius: float, threshold: float,
                    tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """``(found (n, 2) xy, indices (n, 2) float)``: main-lattice nodes inside the detector where a
    disk peaks above ``threshold`` within ``tolerance`` of the node, with its centroid."""
    g = np.array([g1, g2], dtype=np.float64)
    rows, cols = resid.shape
    reach = int(np.ceil(np.hypot(rows, cols) / min(np.hypot(*g[0]), np.hypot(*g[1])))) + 1
    hh, kk = np.meshgrid(np.arange(-reach, reach + 1), np.arange(-reach, reach + 1), indexing="ij")
    hk = np.stack([hh.ravel(), kk.ravel()], axis=1).astype(np.float64)
    predicted = np.asarray(centre, dtype=np.float64) + hk @ g
    inside = ((predicted[:, 0] >= radius) & (predicted[:, 0] <= cols - 1 - radius)
              & (predicted[:, 1] >= radius) & (predicted[:, 1] <= rows - 1 - radius))
    found, used = [], []
    for index, (px, py) in zip(hk[inside], predicted[inside], strict=True):
        x, y, peak = _centroid(resid, px, py, radius)
        x, y, peak = _centroid(resid, x, y, radius)  # again, centred on the disk
        if peak > threshold and np.hypot(x - px, y - py) <= tolerance:
            found.append((x, y))
            used.append(index)
    return np.asarray(found, dtype=np.float64).reshape(-1, 2), np.asarray(used, dtype=np.float64).reshape(-1, 2)


def find_lattice(pattern, max_disks: int = 80) -> Lattice:
    """The main lattice of a (mean) diffraction pattern.

    Finds the central beam, then disk-like peaks (smoothed at half the beam's radius, diffuse
    background removed); tries pairs of the nearest strong peaks as a basis and keeps the
    largest cell that indexes nearly all the strong peaks' intensity (so faint half-order
    ghosts neither become the basis nor halve it); then refines centre and basis by least
    squares over every lattice node where a disk stands out. Hot pixels are removed first.
    """
    from scipy.ndimage import gaussian_filter, maximum_filter

    img = remove_hot_pixels(as_image(pattern))
    side = min(img.shape)
    beam = find_beam(img)
    r = beam.radius
    smooth = gaussian_filter(img, max(1.0, r / 2))
    resid = smooth - background(smooth, max(6 * r, side / 10))
    sigma = noise_sigma(resid)
    cx, cy, _ = _centroid(resid, beam.col, beam.row, 1.5 * r)

    size = max(3, int(round(2 * r)) | 1)
    is_peak = (resid == maximum_filter(resid, size=size, mode="nearest")) & (resid > 5 * sigma)
    rows, cols = np.nonzero(is_peak)
    far = np.hypot(rows - cy, cols - cx) > 2.5 * r
    rows, cols = rows[far], cols[far]
    heights = resid[rows, cols]
    order = np.argsort(-heights, kind="stable")[:max_disks]
    rows, cols, heights = rows[order], cols[order], heights[order]
    if len(rows) < 3:
        raise Al4dstemError(f"found {len(rows)} diffraction disks beside the central beam; "
                            "need at least 3 to fit a lattice")
    strong = heights >= 0.1 * np.median(heights[:5])
    points = np.stack([cols[strong] - cx, rows[strong] - cy], axis=1).astype(np.float64)
    weights = heights[strong]

    nearest = points[np.argsort(np.hypot(points[:, 0], points[:, 1]))[:12]]
    tolerance = max(1.5, 0.6 * r)
    best: list[tuple[float, float, np.ndarray]] = []  # (score, cell area, basis)
    for i in range(len(nearest)):
        for j in range(i + 1, len(nearest)):
            u, v = nearest[i], nearest[j]
            area = abs(u[0] * v[1] - u[1] * v[0])
            if area < 0.3 * np.hypot(*u) * np.hypot(*v):  # nearly parallel
                continue
            basis = np.array(_reduce(u, v))
            _, ok = _index(points, basis, tolerance)
            best.append((float(weights[ok].sum()), area, basis))
    if not best:
        raise Al4dstemError("the diffraction disks lie on one line; cannot fit a 2-D lattice")
    top = max(score for score, _, _ in best)
    _, _, basis = max((b for b in best if b[0] >= 0.9 * top), key=lambda b: b[1])
    g1, g2 = _orient(*basis)
    centre = np.array([cx, cy])

    # refine on every node of the main lattice where a disk stands out above the noise
    found, used = np.zeros((0, 2)), np.zeros((0, 2))
    for _ in range(2):
        found, used = _disks_on_nodes(resid, centre, g1, g2, r, 5 * sigma, tolerance)
        if len(found) < 3:
            break
        design = np.column_stack([np.ones(len(used)), used])
        solution, *_ = np.linalg.lstsq(design, found, rcond=None)
        centre, g1, g2 = solution[0], solution[1], solution[2]
    misfit = found - (centre + used @ np.array([g1, g2])) if len(found) else np.zeros((1, 2))
    residual = float(np.sqrt(np.mean(np.sum(misfit**2, axis=1))))
    g1, g2 = _orient(*_reduce(np.asarray(g1), np.asarray(g2)))
    return Lattice((float(centre[0]), float(centre[1])), (float(g1[0]), float(g1[1])),
                   (float(g2[0]), float(g2[1])), float(r), len(found), residual)


# ---------------------------------------------------------------- where the disks are


def _kind(kind) -> str:
    """A family name from a name or a class (0 none -> diagonal, 1 vertical, 2 horizontal)."""
    if isinstance(kind, (int, np.integer)) and not isinstance(kind, bool):
        if int(kind) not in CLASS_GHOSTS:
            raise Al4dstemError(f"unknown class {kind!r} (0 none, 1 vertical, 2 horizontal)")
        return CLASS_GHOSTS[int(kind)]
    if kind in CLASSES:
        return CLASS_GHOSTS[CLASSES.index(kind)]
    if kind not in KINDS:
        raise Al4dstemError(f"unknown reflection family {kind!r} (one of {', '.join(KINDS)} or a class)")
    return kind


def reflections(lattice: Lattice, kind, shape: tuple[int, int], margin: float = 0.0,
                include_centre: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(indices (n, 2) as (i, j), positions (n, 2) as (x, y))`` of one family of reflections
    inside a detector of ``shape`` (rows, cols), at least ``margin`` pixels from its edges.

    ``kind``: "main", "horizontal", "vertical", "diagonal", or a class (index or name; none
    gives the diagonal family). The central beam (0, 0) counts as main only with ``include_centre``.
    """
    family = _kind(kind)
    pi, pj = _PARITY[family]
    half = min(np.hypot(*lattice.g1), np.hypot(*lattice.g2)) / 2
    reach = int(np.ceil(np.hypot(*shape) / max(half, 1e-9))) + 2
    ii, jj = np.meshgrid(np.arange(-reach, reach + 1), np.arange(-reach, reach + 1), indexing="ij")
    keep = (ii % 2 == pi) & (jj % 2 == pj)
    if family == "main" and not include_centre:
        keep &= (ii != 0) | (jj != 0)
    ij = np.stack([ii[keep], jj[keep]], axis=1)
    xy = lattice.positions(ij)
    rows, cols = shape
    inside = ((xy[:, 0] >= margin) & (xy[:, 0] <= cols - 1 - margin)
              & (xy[:, 1] >= margin) & (xy[:, 1] <= rows - 1 - margin))
    return ij[inside], xy[inside]


def ghost_positions(lattice: Lattice, cls, shape: tuple[int, int], max_distance: float | None = None) -> np.ndarray:
    """``(n, 2)`` float ``(x, y)``: where the ghost disks of class ``cls`` fall on a detector of
    ``shape`` (rows, cols). ``cls``: 2 / "horizontal" -> (odd, even), 1 / "vertical" -> (even,
    odd), 0 / "none" -> the faint diagonal (odd, odd) ones. ``max_distance`` keeps those that
    close to the centre (the ghosts fade with the Bragg disks further out).
    """
    _, xy = reflections(lattice, cls, shape)
    if max_distance is not None:
        xy = xy[np.hypot(*(xy - np.asarray(lattice.centre)).T) <= max_distance]
    return xy


def disk_mask(lattice: Lattice, shape: tuple[int, int], kind, radius: float | None = None,
              max_distance: float | None = None, inner: float = 0.0) -> np.ndarray:
    """Bool ``(rows, cols)``: True on the disks of one family (``kind`` as in ``reflections``),
    each ``radius`` pixels (default the lattice's disk radius), within ``max_distance`` of the
    centre. ``inner`` > 0 makes rings: pixels between ``inner`` and ``radius`` from each centre."""
    radius = lattice.disk_radius if radius is None else float(radius)
    _, xy = reflections(lattice, kind, shape, margin=-radius)
    if max_distance is not None:
        xy = xy[np.hypot(*(xy - np.asarray(lattice.centre)).T) <= max_distance]
    mask = np.zeros(shape, dtype=bool)
    r = int(np.ceil(radius))
    for x, y in xy:
        r0, r1 = max(0, int(np.floor(y)) - r), min(shape[0], int(np.ceil(y)) + r + 1)
        c0, c1 = max(0, int(np.floor(x)) - r), min(shape[1], int(np.ceil(x)) + r + 1)
        if r0 >= r1 or c0 >= c1:
            continue
        yy, xx = np.ogrid[r0:r1, c0:c1]
        d2 = (yy - y) ** 2 + (xx - x) ** 2
        mask[r0:r1, c0:c1] |= (d2 <= radius * radius) & (d2 > inner * inner if inner > 0 else True)
    return mask


def ghost_masks(lattice: Lattice, shape: tuple[int, int], radius: float | None = None,
                max_distance: float | None = None) -> np.ndarray:
    """Bool ``(3, rows, cols)`` virtual dark-field masks on the ghost disks of each class, in class
    order (none: the diagonal ghosts, vertical, horizontal). ``max_distance`` defaults to three
    main-lattice spacings: further out the ghosts fade with the Bragg disks and only add noise."""
    if max_distance is None:
        max_distance = 3 * lattice.spacing
    return np.stack([disk_mask(lattice, shape, c, radius, max_distance) for c in range(len(CLASSES))])


def virtual_images(dataset, masks: np.ndarray, batch_size: int = 256, progress=None) -> np.ndarray:
    """Float64 ``(n_masks, rows, cols)``: each pattern weighted by each detector mask
    ``(n_masks, det_rows, det_cols)`` (bool or float weights) and summed, streaming the scan
    (non-finite pixels count as 0)."""
    masks = np.asarray(masks)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.shape[1:] != tuple(dataset.detector_shape):
        raise Al4dstemError(f"detector masks of shape {masks.shape[1:]} do not match the detector "
                            f"{tuple(dataset.detector_shape)}")
    weights = masks.reshape(len(masks), -1).T.astype(np.float64)  # (pixels, n_masks)
    out = np.zeros((len(masks), dataset.n_positions), dtype=np.float64)
    done = 0
    for batch in dataset.iter_batches(batch_size):
        flat = batch.patterns.reshape(len(batch.positions), -1).astype(np.float64)
        out[:, batch.start:batch.stop] = (np.nan_to_num(flat, nan=0.0, posinf=0.0, neginf=0.0) @ weights).T
        done += len(batch.positions)
        if progress is not None:
            progress(done, dataset.n_positions)
    return out.reshape(len(masks), *dataset.scan_shape)


def ghost_weights(lattice: Lattice, shape: tuple[int, int], radius: float | None = None,
                  max_distance: float | None = None, exclude: np.ndarray | None = None) -> np.ndarray:
    """Float ``(4, rows, cols)`` detector weights: for each class's ghosts (class order), then for
    the Bragg disks, the mean over the disks less the mean over a ring just around them (the
    local diffuse background). A pattern's dot product with one is its mean excess per disk pixel.
    ``exclude`` (bool detector mask, e.g. ``display.hot_pixel_mask`` of the mean pattern) drops
    pixels: one hot pixel on a ghost disk outshines the ghost."""
    radius = lattice.disk_radius if radius is None else float(radius)
    if max_distance is None:
        max_distance = 3 * lattice.spacing
    out = np.zeros((len(CLASSES) + 1, *shape))
    for k, kind in enumerate([*range(len(CLASSES)), "main"]):
        disks = disk_mask(lattice, shape, kind, radius, max_distance)
        ring = disk_mask(lattice, shape, kind, 2.2 * radius, max_distance, inner=1.4 * radius)
        if exclude is not None:
            disks, ring = disks & ~exclude, ring & ~exclude
        if not disks.any() or not ring.any():
            raise Al4dstemError(f"no {_kind(kind)} disks fall on this {shape[1]} x {shape[0]} detector")
        out[k] = disks / disks.sum() - ring / ring.sum()
    return out


def ghost_maps(dataset, lattice: Lattice, radius: float | None = None, exclude: np.ndarray | None = None,
               batch_size: int = 256, progress=None) -> np.ndarray:
    """Float32 ``(3, rows, cols)``: ghost strength of each class at each scan position.

    The excess over the local background on the class's ghost disks (within three lattice
    spacings of the centre), over the same on the Bragg disks: about ``ghost_strength`` where a
    class's ghosts are present, about 0 where not (the diagonal ghosts stand for none). A
    virtual dark-field picture of the domains that needs no model. ``exclude``: detector pixels
    to leave out (pass ``display.hot_pixel_mask(mean_pattern(dataset))``; hot pixels swamp ghosts).
    """
    weights = ghost_weights(lattice, tuple(dataset.detector_shape), radius, exclude=exclude)
    sums = virtual_images(dataset, weights, batch_size, progress)
    bragg = np.where(np.abs(sums[-1]) > 1e-12, sums[-1], 1e-12)
    return (sums[:-1] / bragg).astype(np.float32)

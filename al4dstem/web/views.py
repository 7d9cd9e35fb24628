"""What the browser page shows besides the session's state, computed off the request path.

- ``Survey``: one background pass over the scan for the maps (virtual bright field, virtual dark
  field on each class's ghost disks) after finding the lattice in a mean pattern, which also
  gives the ghost-disk overlay.
- ``enhanced_pattern``: a pattern as significances (``al4dstem.display``): hot pixels removed,
  smoothed at half a disk radius, background subtracted, in noise units; the page stretches it.
- ``PredictionCache``: the model's probabilities over the scan, predicted in a background
  thread, kept until the model changes.

Plain numpy here (no web framework), so it is tested without a server.
"""

from __future__ import annotations

import threading
import traceback

import numpy as np

from al4dstem.labels import CLASSES

MEAN_SAMPLES = 64  # patterns averaged (spread over the scan): the beam, hot pixels
SURVEY_BATCH = 256  # patterns per read of the survey pass
PREDICT_CHUNK = 32  # positions per model call: short, so an answer never waits long for the lock
GHOST_CLASSES = ("vertical", "horizontal")  # the classes with in-plane ghost disks (rings on the page)
OVERLAY_REACH = 3  # rings within this many main-lattice spacings of the centre (ghosts fade further out)


# ---------------------------------------------------------------- the lattice and the ghost overlay


def find_overlay(mean: np.ndarray, found=None) -> dict:
    """Where the page draws things on a pattern: the beam ``{row, col, radius}`` and, when the
    lattice is known, ``ghosts`` ``{class name: [[row, col], ...]}`` with their ``disk_radius``.

    ``found`` is the scan's ``al4dstem.lattice.Lattice`` (None: no lattice, no rings; ``note``
    says so); ``mean`` is the mean pattern (for the beam, when there is no lattice).
    """
    from al4dstem import lattice as lattices
    from al4dstem.display import find_beam, remove_hot_pixels

    beam = find_beam(remove_hot_pixels(mean))
    overlay = {"beam": {"row": beam.row, "col": beam.col, "radius": beam.radius}, "ghosts": None,
               "disk_radius": beam.radius, "lattice": None, "note": ""}
    if found is None:
        overlay["note"] = "no ghost rings: no lattice found in the scan's mean pattern"
        return overlay
    ghosts = {}
    for name in GHOST_CLASSES:
        xy = lattices.ghost_positions(found, name, mean.shape, max_distance=OVERLAY_REACH * found.spacing)
        ghosts[name] = [[round(float(y), 2), round(float(x), 2)] for x, y in np.reshape(xy, (-1, 2))]
    cx, cy = (float(v) for v in found.centre)
    overlay.update(ghosts=ghosts, disk_radius=float(found.disk_radius), lattice=found,
                   beam={"row": cy, "col": cx, "radius": float(found.disk_radius)})
    return overlay


def disk_masks(shape, points, radius: float) -> np.ndarray:
    """Boolean ``shape`` mask: disks of ``radius`` around ``points`` ``[[row, col], ...]``."""
    mask = np.zeros(shape, dtype=bool)
    rr, cc = np.ogrid[0:shape[0], 0:shape[1]]
    for r, c in points:
        mask |= (rr - r) ** 2 + (cc - c) ** 2 <= radius * radius
    return mask


class Survey:
    """The scan maps, computed once in a background thread: ``ready``, ``error``, ``maps``, ``overlay``.

    ``maps`` holds float32 ``(rows, cols)`` arrays: ``bright-field`` (a disk around the beam) and,
    when the lattice is found, ``dark-field vertical`` / ``dark-field horizontal``: each class's
    ghost strength (``al4dstem.lattice.ghost_maps``: excess on its ghost disks over the Bragg
    disks'), a picture of the domains that needs no model. One streaming pass for all of them.
    """

    def __init__(self, session):
        self.session, self.dataset = session, session.dataset
        self.ready = threading.Event()
        self.overlay: dict | None = None
        self.maps: dict[str, np.ndarray] = {}
        self.error: str | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Survey:
        self._thread = threading.Thread(target=self._run, name="al4dstem-survey", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        from al4dstem import lattice as lattices

        try:
            mean = lattices.mean_pattern(self.dataset, max_patterns=MEAN_SAMPLES)
            self.overlay = find_overlay(mean, self.session.lattice())  # the lattice the terminal uses too
            self.maps = self._stream_maps(self.overlay, mean)
        except Exception as e:  # shown on the page; labelling works on without maps
            self.error = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        finally:
            self.ready.set()

    def _stream_maps(self, overlay: dict, mean: np.ndarray) -> dict[str, np.ndarray]:
        from al4dstem import lattice as lattices
        from al4dstem.display import hot_pixel_mask

        shape = tuple(self.dataset.detector_shape)
        beam = overlay["beam"]
        weights = [disk_masks(shape, [[beam["row"], beam["col"]]], max(2.0, 1.5 * beam["radius"])).astype(float)]
        found = overlay["lattice"]
        if found is not None:
            try:  # ghosts of each class (class order), then the Bragg disks
                weights += list(lattices.ghost_weights(found, shape, exclude=hot_pixel_mask(mean)))
            except Exception as e:
                overlay["note"] = f"no ghost dark field: {e}"
        sums = lattices.virtual_images(self.dataset, np.stack(weights), SURVEY_BATCH)
        maps = {"bright-field": sums[0].astype(np.float32)}
        if len(sums) > 1:
            bragg = np.where(np.abs(sums[-1]) > 1e-12, sums[-1], 1e-12)
            for name in GHOST_CLASSES:
                maps[f"dark-field {name}"] = (sums[1 + CLASSES.index(name)] / bragg).astype(np.float32)
        return maps


# ---------------------------------------------------------------- one pattern for the page


def enhanced_pattern(pattern: np.ndarray, disk_radius: float) -> np.ndarray:
    """Significances (float32, detector shape): see ``al4dstem.display.significance``.

    The matched smoothing lifts faint ghost disks out of the counting noise; the page then
    only chooses levels.
    """
    from al4dstem.display import remove_hot_pixels, significance

    img = remove_hot_pixels(pattern)
    side = min(img.shape)
    return significance(img, 0.5 * disk_radius, max(6 * disk_radius, side / 10)).astype(np.float32)


def shrink(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` brought within ``size`` x ``size`` keeping each block's maximum (small disks survive)."""
    from al4dstem.display import resample

    rows, cols = image.shape
    if max(rows, cols) <= size:
        return image
    factor = max(rows, cols) / size
    return resample(image, (max(1, round(rows / factor)), max(1, round(cols / factor))), method="max")


# ---------------------------------------------------------------- the model over the scan


def model_key(session):
    """What identifies the fitted model: a refit replaces the network (or the model's own
    ``model_version`` / the session's, where they exist); None when no fitted model."""
    model = session.model
    if model is None or not hasattr(model, "classes_"):
        return None
    for owner in (session, model):
        if hasattr(owner, "model_version"):
            return (id(model), owner.model_version)
    return (id(model), id(getattr(model, "network_", None)), id(getattr(model, "classes_", None)))


class PredictionCache:
    """The model's probabilities over the whole scan, for the prediction and uncertainty maps.

    ``get()`` returns the latest finished prediction (maybe for an older model: the page says
    so) and starts a new one in a background thread when the model changed. Predictions run in
    short chunks under the session's lock, so they never overlap a refit and an answer waits
    at most one chunk.
    """

    def __init__(self, session):
        self.session = session
        self.key = None
        self.probs: np.ndarray | None = None  # (rows, cols, 3) float32
        self.error: str | None = None
        self._running_key = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._guard = threading.Lock()

    def get(self) -> dict:
        key = model_key(self.session)
        with self._guard:
            if key is not None and key != self.key and not self.running and not self.session.retraining:
                self._running_key = key
                self._thread = threading.Thread(target=self._run, args=(key,), name="al4dstem-predict", daemon=True)
                self._thread.start()
            return {"model": key is not None, "fresh": key is not None and key == self.key,
                    "running": self.running, "error": self.error,
                    "probs": None if self.probs is None else self.probs}

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()

    def _run(self, key) -> None:
        session = self.session
        positions = session.dataset.all_positions()
        out = np.full((len(positions), len(CLASSES)), np.nan, dtype=np.float32)
        try:
            for start in range(0, len(positions), PREDICT_CHUNK):
                if self._stop.is_set():
                    return
                with session.lock:
                    if session.retraining or model_key(session) != key:
                        return  # the model is changing: predict the new one later
                    model = session.model
                    proba = np.asarray(model.predict_proba(positions[start:start + PREDICT_CHUNK]))
                out[start:start + len(proba), np.asarray(model.classes_, dtype=int)] = proba
        except Exception as e:
            self.error = f"prediction failed: {type(e).__name__}: {e}"
            return
        rows, cols = session.scan_shape
        with self._guard:
            self.probs, self.key, self.error = out.reshape(rows, cols, len(CLASSES)), key, None


def guess(session, position) -> list[float] | None:
    """The model's probabilities at ``position`` (none, vertical, horizontal), or None (no model,
    or it is being refitted)."""
    with session.lock:
        if session.retraining or not session.model_ready:
            return None
        probs = session.guess(position)
    return None if probs is None else [float(p) for p in probs]

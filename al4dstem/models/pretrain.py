"""Pre-training a CNN on simulated patterns (``al4dstem.simulate``), to be fine-tuned on a person's few labels.

``pretrain(dataset)`` finds the scan's lattice from its mean pattern (``features.find_scan_lattice``)
and simulates small scans whose lattice matches it (rotation, spacing and disk radius as fractions of
the detector side), with the rest of the physics drawn at random over a wide range (ghost strength,
dose, diffuse background, thickness and tilt variation, domain geometry): the network learns what a
ghost disk of *this* lattice looks like at many signal levels, from thousands of labelled patterns
instead of a few dozen. It returns a fitted ``CNNClassifier`` (the simulated labels are exact), saved
as an ordinary model file; ``CNNClassifier(init=that file)`` (``al4dstem train --init``) starts from
its weights and fine-tunes them on the labels as usual.

The simulation runs at the scan's detector size, capped at ``MAX_DETECTOR`` pixels a side (lengths
are fractions of the side, and the CNN bins every pattern to 64 x 64: a larger detector would only
cost time). Without a lattice in the scan's mean pattern, every simulated scan gets a random rotation.

Cost on one core: about 1 s of simulation per 1,000 patterns at 128 x 128 and a training of
``epochs`` passes over them (``benchmarks/bench_difficulty.py --pretrained`` measures what it gains).
"""

from __future__ import annotations

import math
import time

import numpy as np

from al4dstem.errors import Al4dstemError

MAX_DETECTOR = 128  # simulated detector side at most
SCAN_SIDE = 32  # each simulated scan is SCAN_SIDE x SCAN_SIDE positions
N_PATTERNS = 3072  # simulated patterns by default (three scans)
EPOCHS = 12  # passes over the simulated patterns
#: Ranges the physics of each simulated scan is drawn from (log-uniform for ghost strength and dose).
RANGES = {"ghost_strength": (0.005, 0.04), "dose": (1e4, 2e5), "background": (0.05, 0.4),
          "thickness_variation": (0.05, 0.4), "tilt_variation": (0.05, 0.4)}
GEOMETRIES = ("bullseye", "stripes", "bands", "tilted", "needles")


def matched_lattice(lattice, detector_shape) -> dict:
    """Simulation options (``Physics``) that reproduce ``lattice`` (a ``Lattice`` on the detector, or None)
    on a square detector: rotation in degrees, half-order spacing and disk radius as fractions of the side."""
    if lattice is None:
        return {}
    side = float(min(detector_shape))
    spacing = float(np.clip(lattice.spacing / 2 / side, 0.02, 0.25))
    radius = float(np.clip(lattice.disk_radius / side, 0.004, spacing / 2.2))
    return {"rotation": float(lattice.rotation), "spacing": spacing, "disk_radius": radius}


def draw_physics(rng: np.random.Generator, lattice_options: dict) -> dict:
    """One simulated scan's physics: the matched lattice, the rest at random over ``RANGES``."""
    physics = {}
    for name, (lo, hi) in RANGES.items():
        physics[name] = float(math.exp(rng.uniform(math.log(lo), math.log(hi)))) if name in ("ghost_strength", "dose") \
            else float(rng.uniform(lo, hi))
    physics.update(lattice_options)
    if "rotation" not in lattice_options:
        physics["rotation"] = float(rng.uniform(-45.0, 45.0))
    return physics


def simulated_patterns(detector_shape, lattice=None, n_patterns: int = N_PATTERNS, seed: int = 0,
                       threads: int | None = 1, progress=None) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """``(patterns uint16 (n, K, K), classes (n,), physics of each scan)``: ``n_patterns`` simulated
    patterns (whole ``SCAN_SIDE`` x ``SCAN_SIDE`` scans, the last one cut) matching ``lattice``."""
    from al4dstem.simulate import simulate_scan

    if int(n_patterns) < 1:
        raise Al4dstemError(f"pre-training needs at least one simulated pattern, got {n_patterns}")
    side = int(min(MAX_DETECTOR, min(int(s) for s in detector_shape)))
    if side < 16:
        raise Al4dstemError(f"the detector is {detector_shape[0]} x {detector_shape[1]} pixels: too small to "
                            "simulate patterns for pre-training (at least 16 x 16)")
    rng = np.random.default_rng([int(seed), 17])
    options = matched_lattice(lattice, detector_shape)
    per_scan = SCAN_SIDE * SCAN_SIDE
    n_scans = math.ceil(int(n_patterns) / per_scan)
    patterns, classes, physics_list = [], [], []
    for k in range(n_scans):
        physics = draw_physics(rng, options)
        geometry = GEOMETRIES[k % len(GEOMETRIES)]
        sim = simulate_scan(nx=SCAN_SIDE, ny=SCAN_SIDE, detector=side, geometry=geometry,
                            seed=int(rng.integers(0, 2**31)), threads=threads, **physics)
        patterns.append(sim.data.reshape(-1, side, side))
        classes.append(sim.truth.reshape(-1).astype(np.int64))
        physics_list.append({"geometry": geometry, **physics})
        if progress is not None:
            progress(k + 1, n_scans)
    x = np.concatenate(patterns)[:int(n_patterns)]
    y = np.concatenate(classes)[:int(n_patterns)]
    return x, y, physics_list


def pretrain(dataset=None, detector_shape=None, network: str = "default", n_patterns: int = N_PATTERNS,
             epochs: int = EPOCHS, random_state: int = 0, n_threads: int | None = None,
             orientation: str = "detector", progress=None, device="cpu"):
    """A ``CNNClassifier`` trained on simulated patterns matched to ``dataset``'s lattice and detector
    (or, without a dataset, to a detector of ``detector_shape`` and a random rotation).

    ``progress(step, steps, record)`` as for ``CNNClassifier.fit``; ``record["stage"]`` says whether
    patterns are being simulated or the network trained.
    """
    from al4dstem.data import open_dataset
    from al4dstem.engines.device import resolve_device
    from al4dstem.models.classifier import CNNClassifier
    from al4dstem.models.networks import CNN_NETWORKS

    if network not in CNN_NETWORKS:
        raise Al4dstemError(f"only a CNN can be pre-trained ({', '.join(CNN_NETWORKS)}), not {network!r}")
    resolve_device(device)  # before the simulation, not after it
    start = time.perf_counter()
    lattice = None
    if dataset is not None:
        from al4dstem.models.features import find_scan_lattice, mean_raw_pattern

        ds = open_dataset(dataset)
        detector_shape = tuple(ds.detector_shape)
        lattice = find_scan_lattice(mean_raw_pattern(ds))
    if detector_shape is None:
        raise Al4dstemError("pre-training needs a scan (for its lattice and detector) or a detector shape")
    n_scans = math.ceil(int(n_patterns) / (SCAN_SIDE * SCAN_SIDE))

    def simulating(done, total):
        if progress is not None:
            progress(done, total + int(epochs), {"val_loss": float("nan"), "val_accuracy": float("nan"),
                                                 "stage": f"simulating patterns for pre-training, scan {done}/{total}"})

    x, y, physics = simulated_patterns(detector_shape, lattice, n_patterns, random_state, progress=simulating)

    def training(epoch, max_epochs, record):
        if progress is not None:
            progress(n_scans + epoch, n_scans + max_epochs,
                     {**record, "stage": f"pre-training on {len(y)} simulated patterns"})

    clf = CNNClassifier(network=network, epochs=int(epochs), random_state=random_state, n_threads=n_threads,
                        orientation=orientation, device=device)
    clf.fit(x, y, progress=training)
    clf.summary_ = {**clf.summary_, "pretraining": {
        "simulated_patterns": int(len(y)), "simulated_detector": list(x.shape[1:]),
        "matched_lattice": matched_lattice(lattice, detector_shape) or None,
        "scans": physics, "seconds": time.perf_counter() - start}}
    return clf


_LOADED: dict = {}  # (path, size, mtime) -> (network name, state dict): CV folds start from the same file


def initial_weights(path, name: str, net=None) -> None:
    """Load the weights of model file ``path`` into ``net`` (a fresh ``name`` CNN; None: only check that the
    file holds a ``name`` network). The file must hold the same network with the same layer shapes (its
    temperature and orientation may differ: those are settings, not weights). Any mismatch is one
    ``Al4dstemError`` naming the file."""
    import os

    from al4dstem.models.trained import TrainedNetwork

    try:
        stat = os.stat(path)
    except OSError as e:
        raise Al4dstemError(f"--init {path}: cannot read the model file ({e.strerror or e})") from None
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _LOADED:
        trained = TrainedNetwork.load(path)
        _LOADED.clear()
        _LOADED[key] = (trained.name, {k: v.clone() for k, v in trained.network_.state_dict().items()})
    stored, state = _LOADED[key]
    if stored != name:
        raise Al4dstemError(f"--init {path}: holds a {stored} network, and the {name} network is to be trained "
                            f"(pre-train a {name} network, or train --network {stored})")
    if net is None:
        return
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        reason = (str(e).strip().splitlines() or ["shapes differ"])[-1].strip()[:160]
        raise Al4dstemError(f"--init {path}: its {name} network has other layer shapes ({reason})") from None

"""Finding the lattice on the detector and the ghost disks of each class (al4dstem.lattice)."""

import numpy as np
import pytest

from al4dstem.data import open_dataset
from al4dstem.display import hot_pixel_mask
from al4dstem.errors import Al4dstemError
from al4dstem.lattice import (
    Lattice,
    disk_mask,
    find_lattice,
    ghost_maps,
    ghost_masks,
    ghost_positions,
    ghost_weights,
    mean_pattern,
    reflections,
    virtual_images,
)
from al4dstem.simulate import simulate_scan

DETECTOR = 128
SPACING = 0.072  # the simulator's default half-order step, fraction of the detector side
HORIZONTAL, VERTICAL = 2, 1


def simulated(rotation, **physics):
    options = dict(drift=0.0, ghost_strength=0.01, hot_pixels=1e-3)  # faint ghosts, many hot pixels
    options.update(physics)
    return simulate_scan(nx=10, ny=10, detector=DETECTOR, geometry="bands", seed=2, threads=1,
                         rotation=rotation, **options)


def axis_angle(vector) -> float:
    """Angle of a lattice vector modulo 90 degrees, in [-45, 45)."""
    return (np.degrees(np.arctan2(vector[1], vector[0])) + 45) % 90 - 45


def angle_gap(a, b) -> float:
    return abs((a - b + 45) % 90 - 45)


def mean_of(scan, cls):
    return scan.data[scan.truth == cls].astype(np.float64).mean(axis=0)


def excess(lattice, pattern):
    """Mean excess over the local background on each class's ghosts and on the Bragg disks."""
    weights = ghost_weights(lattice, pattern.shape, exclude=hot_pixel_mask(pattern))
    return np.tensordot(weights, pattern, axes=2)


@pytest.mark.parametrize("rotation", [0.0, 4.0, 31.0, 45.0])
def test_finds_centre_and_basis_at_any_rotation(rotation):
    scan = simulated(rotation)
    lattice = find_lattice(scan.data.reshape(-1, DETECTOR, DETECTOR).mean(axis=0))
    centre = (DETECTOR - 1) / 2
    assert np.hypot(lattice.centre[0] - centre, lattice.centre[1] - centre) < 1.0
    main_step = 2 * SPACING * DETECTOR
    for g in (lattice.g1, lattice.g2):
        assert np.hypot(*g) == pytest.approx(main_step, rel=0.03)
        assert angle_gap(axis_angle(g), rotation) < 1.0
    cos = np.dot(lattice.g1, lattice.g2) / (np.hypot(*lattice.g1) * np.hypot(*lattice.g2))
    assert abs(cos) < 0.03  # square
    assert -45 <= lattice.rotation <= 45 and np.cross(lattice.g1, lattice.g2) > 0
    assert lattice.n_disks >= 12 and lattice.residual < 0.5


@pytest.mark.parametrize("rotation", [0.0, 4.0, 31.0, 45.0])
def test_predicted_ghosts_land_on_the_simulated_ghosts_of_the_right_class(rotation):
    scan = simulated(rotation, dose=1e6)
    lattice = find_lattice(scan.data.reshape(-1, DETECTOR, DETECTOR).mean(axis=0))
    h = excess(lattice, mean_of(scan, HORIZONTAL))
    v = excess(lattice, mean_of(scan, VERTICAL))
    if rotation == 45.0:  # both crystal axes are 45 degrees from detector x: which is "horizontal" is a tie
        if h[VERTICAL] > h[HORIZONTAL]:
            h, v = v, h
    strength = 0.01
    # each class's own ghosts stand out (about ghost_strength of the Bragg disks); the other's do not
    assert h[HORIZONTAL] > 0.5 * strength * h[3] and v[VERTICAL] > 0.5 * strength * v[3]
    assert abs(h[VERTICAL]) < 0.15 * strength * h[3] and abs(v[HORIZONTAL]) < 0.15 * strength * v[3]
    assert abs(h[0]) < 0.15 * strength * h[3]  # no diagonal ghosts were simulated


def test_ghost_positions_are_the_main_lattice_shifted_by_half_a_basis_vector():
    lattice = Lattice(centre=(50.0, 40.0), g1=(20.0, 2.0), g2=(-2.0, 20.0), disk_radius=2.0)
    shape = (90, 110)
    main = reflections(lattice, "main", shape, include_centre=True)[1]
    horizontal = ghost_positions(lattice, HORIZONTAL, shape)
    vertical = ghost_positions(lattice, "vertical", shape)
    diagonal = ghost_positions(lattice, "none", shape)

    def on(points, shifted_lattice):
        return all(np.min(np.hypot(*(shifted_lattice - p).T)) < 1e-9 for p in points)

    half1, half2 = np.array(lattice.g1) / 2, np.array(lattice.g2) / 2
    assert on(horizontal[np.all((horizontal - half1 >= 0) & (horizontal - half1 <= [109, 89]), axis=1)] - half1, main)
    assert on(vertical[np.all((vertical - half2 >= 0) & (vertical - half2 <= [109, 89]), axis=1)] - half2, main)
    assert on(diagonal[np.all((diagonal - half1 - half2 >= 0) & (diagonal - half1 - half2 <= [109, 89]), axis=1)]
              - half1 - half2, main)
    for points in (horizontal, vertical, diagonal):
        assert ((points >= 0) & (points <= [109, 89])).all() and len(points) > 10
    near = ghost_positions(lattice, HORIZONTAL, shape, max_distance=15)
    assert sorted(map(tuple, near.round(6))) == sorted([(60.0, 41.0), (40.0, 39.0)])
    with pytest.raises(Al4dstemError, match="unknown class"):
        ghost_positions(lattice, 7, shape)
    with pytest.raises(Al4dstemError, match="unknown reflection family"):
        ghost_positions(lattice, "sideways", shape)


def test_hot_pixels_do_not_move_the_lattice():
    scan = simulated(4.0)
    mean = scan.data.reshape(-1, DETECTOR, DETECTOR).mean(axis=0)
    clean = find_lattice(mean)
    spoiled = mean.copy()
    spoiled[[3, 90, 100, 20], [7, 12, 100, 70]] = mean.max() * np.array([50.0, 3.0, 1.0, 0.5])
    found = find_lattice(spoiled)
    assert np.allclose(found.centre, clean.centre, atol=0.2)
    assert np.allclose(found.g1, clean.g1, atol=0.2) and np.allclose(found.g2, clean.g2, atol=0.2)


def test_a_pattern_without_disks_is_a_user_error():
    flat = np.random.default_rng(0).poisson(2.0, (64, 64)).astype(float)
    flat[30:34, 30:34] += 100
    with pytest.raises(Al4dstemError, match="need at least 3"):
        find_lattice(flat)


def test_ghost_maps_tell_the_domains_apart_without_a_model():
    scan = simulated(31.0, dose=2e5)
    dataset = open_dataset(scan.data)
    mean = mean_pattern(dataset)
    lattice = find_lattice(mean)
    maps = ghost_maps(dataset, lattice, exclude=hot_pixel_mask(mean))
    assert maps.shape == (3, 10, 10) and maps.dtype == np.float32
    pure = scan.fractions.max(axis=-1) > 0.95
    h, v = maps[HORIZONTAL], maps[VERTICAL]
    horizontal, vertical = pure & (scan.truth == HORIZONTAL), pure & (scan.truth == VERTICAL)
    assert horizontal.sum() > 5 and vertical.sum() > 5
    assert np.mean(h[horizontal] > v[horizontal]) > 0.9 and np.mean(v[vertical] > h[vertical]) > 0.9
    assert np.median(h[horizontal]) == pytest.approx(0.01, abs=0.005)


def test_ghost_masks_and_virtual_images():
    lattice = Lattice(centre=(31.5, 31.5), g1=(16.0, 0.0), g2=(0.0, 16.0), disk_radius=2.0)
    masks = ghost_masks(lattice, (64, 64))
    assert masks.shape == (3, 64, 64) and masks.dtype == bool
    assert not (masks[1] & masks[2]).any() and not (masks[0] & masks[1]).any()
    assert masks[HORIZONTAL][32, 39] and masks[VERTICAL][39, 32] and masks[0][39, 39]  # (x, y) -> [row, col]
    main = disk_mask(lattice, (64, 64), "main")
    assert main[32, 47] and not (main & masks.any(axis=0)).any()
    data = np.zeros((2, 3, 64, 64))
    data[1, 2] = masks[HORIZONTAL] * 5.0
    data[0, 1] = np.nan
    images = virtual_images(open_dataset(data), masks)
    assert images.shape == (3, 2, 3)
    assert images[HORIZONTAL, 1, 2] == 5.0 * masks[HORIZONTAL].sum() and images[VERTICAL, 1, 2] == 0
    assert np.isfinite(images).all()
    with pytest.raises(Al4dstemError, match="do not match the detector"):
        virtual_images(open_dataset(data), masks[:, :32])


def test_mean_pattern_streams_or_samples():
    rng = np.random.default_rng(1)
    data = rng.random((5, 7, 8, 8))
    dataset = open_dataset(data)
    assert np.allclose(mean_pattern(dataset, max_patterns=None, batch_size=4), data.mean(axis=(0, 1)))
    sampled = mean_pattern(dataset, max_patterns=6)
    picks = np.linspace(0, 34, 6).round().astype(int)
    assert np.allclose(sampled, data.reshape(35, 8, 8)[picks].mean(axis=0))

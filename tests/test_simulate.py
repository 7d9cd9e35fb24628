"""The synthetic 4D-STEM simulator: determinism, geometry, physics, files and the CLI."""

import subprocess

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare, poisson

from al4dstem.errors import Al4dstemError
from al4dstem.labels import read_labels
from al4dstem.simulate import (
    GEOMETRIES,
    Physics,
    domain_map,
    poisson_counts,
    simulate_scan,
    simulate_to_file,
)

NONE, VERTICAL, HORIZONTAL = 0, 1, 2
SMALL = dict(nx=10, ny=8, detector=32)
quick = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ------------------------------------------------------------------ determinism


@quick
@given(geometry=st.sampled_from(GEOMETRIES), seed=st.integers(0, 2**31))
def test_same_seed_same_scan_other_seed_other_scan(geometry, seed):
    a = simulate_scan(**SMALL, geometry=geometry, seed=seed)
    b = simulate_scan(**SMALL, geometry=geometry, seed=seed, threads=1)  # threads never matter
    c = simulate_scan(**SMALL, geometry=geometry, seed=seed + 1)
    assert np.array_equal(a.data, b.data) and np.array_equal(a.truth, b.truth)
    assert not np.array_equal(a.data, c.data)


def test_shapes_and_types():
    s = simulate_scan(nx=12, ny=9, detector=48)
    assert s.data.shape == (9, 12, 48, 48) and s.data.dtype == np.uint16
    assert s.truth.shape == (9, 12) and s.truth.dtype.kind == "i"
    assert s.fractions.shape == (9, 12, 3)
    assert np.allclose(s.fractions.sum(-1), 1)
    assert np.array_equal(s.truth, s.fractions.argmax(-1))
    assert sum(s.class_counts.values()) == 9 * 12


# ------------------------------------------------------------------ geometry


@settings(max_examples=40, deadline=None)
@given(geometry=st.sampled_from(GEOMETRIES), nx=st.integers(24, 160), ny=st.integers(24, 160),
       seed=st.integers(0, 2**31))
def test_every_geometry_has_all_classes_with_none_a_minority(geometry, nx, ny, seed):
    truth, _ = domain_map(geometry, nx, ny, seed)
    share = np.bincount(truth.ravel(), minlength=3) / truth.size
    assert (share > 0).all(), share
    assert 0.05 <= share[NONE] <= 0.4, share


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_paper_sized_geometries_are_balanced(geometry):
    truth, _ = domain_map(geometry, 206, 34, seed=0)
    share = np.bincount(truth.ravel(), minlength=3) / truth.size
    assert 0.08 <= share[NONE] <= 0.3 and min(share[VERTICAL], share[HORIZONTAL]) >= 0.15, share


def test_bands_follow_the_paper_map():
    """Vertical on top (rows ~0..13 of 34), none in the middle, horizontal below."""
    truth, _ = domain_map("bands", 206, 34, seed=0)
    assert (truth[:10] == VERTICAL).all()
    assert (truth[24:] == HORIZONTAL).all()
    assert (truth[16:18] == NONE).mean() > 0.9


def test_wall_width_blurs_the_fractions_not_the_classes():
    sharp_truth, sharp = domain_map("tilted", 64, 32, seed=1, wall_width=0)
    _, soft = domain_map("tilted", 64, 32, seed=1, wall_width=2.0)
    assert set(np.unique(sharp)) <= {0.0, 1.0}
    mixed = lambda f: ((f > 0.05) & (f < 0.95)).any(-1).mean()  # noqa: E731
    assert mixed(soft) > mixed(sharp) == 0
    assert np.bincount(sharp_truth.ravel(), minlength=3).min() > 0


# ------------------------------------------------------------------ physics


def _aperture_sum(mean_pattern, points, radius=1.5):
    """Summed intensity in small apertures at (row, col) points."""
    yy, xx = np.mgrid[0:mean_pattern.shape[0], 0:mean_pattern.shape[1]]
    return sum(mean_pattern[(yy - y) ** 2 + (xx - x) ** 2 <= radius**2].sum() for y, x in points)


def _reflections(k, rotation, parity):
    """Detector (row, col) of the reflections (i, j), |i|, |j| <= 3, of a parity, as documented:
    half-order step spacing*k, (1, 0) along detector x rotated by `rotation` degrees."""
    step, t, c = Physics().spacing * k, np.deg2rad(rotation), (k - 1) / 2
    out = []
    for i in range(-3, 4):
        for j in range(-3, 4):
            if (i % 2, j % 2) == parity and (i, j) != (0, 0):
                x = c + i * step * np.cos(t) - j * step * np.sin(t)
                y = c + i * step * np.sin(t) + j * step * np.cos(t)
                out.append((y, x))
    return out


@pytest.mark.parametrize("rotation", [0.0, 30.0])
def test_ghost_disks_sit_at_the_half_order_positions_of_each_class(rotation):
    """Mean of many high-dose patterns per class: horizontal lights (odd, even), vertical
    (even, odd), none neither; main (even, even) disks are bright in all three."""
    k = 128
    s = simulate_scan(nx=24, ny=24, detector=k, geometry="bands", seed=3, dose=1e6, drift=0.0,
                      rotation=rotation, hot_pixels=0.0)
    horizontal, vertical = _reflections(k, rotation, (1, 0)), _reflections(k, rotation, (0, 1))
    main = _reflections(k, rotation, (0, 0))
    for c in (NONE, VERTICAL, HORIZONTAL):
        pure = (s.truth == c) & (s.fractions[..., c] > 0.99)
        assert pure.sum() >= 20
        mean = s.data[pure].mean(axis=0)
        at_h, at_v = _aperture_sum(mean, horizontal), _aperture_sum(mean, vertical)
        assert _aperture_sum(mean, main) > 5 * max(at_h, at_v)
        ratio = at_h / at_v
        if c == HORIZONTAL:
            assert ratio > 1.5, ratio
        elif c == VERTICAL:
            assert ratio < 1 / 1.5, ratio
        else:
            assert 0.85 < ratio < 1.18, ratio


def test_ghosts_are_faint_relative_to_main_disks():
    """Noiseless: in a horizontal pattern the ghost family carries ~ghost_strength of the main one."""
    k, strength = 128, 0.03
    s = simulate_scan(nx=24, ny=24, detector=k, geometry="bands", seed=2, counting=False, drift=0.0,
                      rotation=0.0, hot_pixels=0.0, background=0.0, ghost_strength=strength)
    pure = (s.truth == HORIZONTAL) & (s.fractions[..., HORIZONTAL] > 0.999)
    mean = s.data[pure].astype(float).mean(axis=0)
    pure_none = (s.truth == NONE) & (s.fractions[..., NONE] > 0.999)
    excess = mean - s.data[pure_none].astype(float).mean(axis=0)  # the ghosts alone (and noise of rounding)
    ghosts = _aperture_sum(excess, _reflections(k, 0.0, (1, 0)))
    main = _aperture_sum(mean, _reflections(k, 0.0, (0, 0)))
    assert 0.3 * strength < ghosts / main < 3 * strength


def test_dose_is_electrons_per_pattern():
    s = simulate_scan(nx=12, ny=10, detector=128, dose=1e4, hot_pixels=0.0)
    totals = s.data.reshape(120, -1).sum(axis=1)
    assert 0.9 < totals.mean() / 1e4 < 1.1
    assert (s.data == 0).mean() > 0.5  # under one electron per pixel: mostly zeros


def test_hot_pixels_are_the_same_detector_pixels_everywhere():
    base = dict(nx=10, ny=10, detector=64, seed=4, counting=False)
    hot = simulate_scan(**base, hot_pixels=2e-3).data.astype(int)
    cold = simulate_scan(**base, hot_pixels=0.0).data.astype(int)
    where = (hot - cold).reshape(100, -1) > 0
    assert where.any(axis=0).sum() == round(2e-3 * 64 * 64)
    assert (where == where[0]).all()


def test_descan_drift_moves_the_centre_smoothly_within_its_amplitude():
    k, drift = 128, 0.03
    s = simulate_scan(nx=16, ny=16, detector=k, seed=5, counting=False, drift=drift, hot_pixels=0.0)
    yy, xx = np.mgrid[0:k, 0:k]
    box = (np.abs(yy - (k - 1) / 2) < 6) & (np.abs(xx - (k - 1) / 2) < 6)  # the central disk
    w = s.data.reshape(256, k, k)[:, box].astype(float)
    cy = (w * yy[box]).sum(1) / w.sum(1) - (k - 1) / 2
    cx = (w * xx[box]).sum(1) / w.sum(1) - (k - 1) / 2
    shift = np.hypot(cy, cx).reshape(16, 16)
    assert shift.max() <= drift * k * np.sqrt(2) + 0.5
    assert np.ptp(cx) > 0.3 * drift * k or np.ptp(cy) > 0.3 * drift * k
    assert np.abs(np.diff(cx.reshape(16, 16), axis=1)).max() < 0.25 * drift * k  # smooth along a row


@pytest.mark.parametrize("lam", [0.05, 0.7, 1.9, 2.5, 30.0])
def test_poisson_sampler_matches_the_poisson_distribution(lam):
    x = poisson_counts(np.random.default_rng(7), np.full((400, 500), lam, np.float32))
    assert x.shape == (400, 500)
    top = int(lam + 6 * np.sqrt(lam) + 3)
    observed = np.bincount(np.minimum(x.ravel(), top), minlength=top + 1)
    expected = np.append(poisson.pmf(np.arange(top), lam), poisson.sf(top - 1, lam)) * x.size
    keep = expected > 5
    expected = expected[keep] * observed[keep].sum() / expected[keep].sum()
    assert chisquare(observed[keep], expected).pvalue > 1e-3


# ------------------------------------------------------------------ files


def test_npy_and_h5_files_equal_the_in_memory_scan_and_truth_round_trips(tmp_path):
    params = dict(nx=11, ny=9, detector=40, geometry="stripes", seed=8, dose=5e4)
    memory = simulate_scan(**params)
    result = simulate_to_file(tmp_path / "d.npy", tmp_path / "t.csv", threads=1, **params)
    assert np.array_equal(np.load(tmp_path / "d.npy"), memory.data)
    assert result.shape == memory.shape and result.class_counts == memory.class_counts
    simulate_to_file(tmp_path / "d.h5", **params)
    with h5py.File(tmp_path / "d.h5", "r") as f:
        assert np.array_equal(f["data"][()], memory.data)
    rows = read_labels(tmp_path / "t.csv", scan_shape=(9, 11))
    assert len(rows) == 99
    assert all(r.label == memory.truth[r.y, r.x] for r in rows)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no partial files left


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(geometry="spiral"), "unknown geometry 'spiral'"),
        (dict(nx=3), "nx must be an integer"),
        (dict(detector=10_000), "detector must be an integer"),
        (dict(sparkle=1), "unknown simulation option 'sparkle'"),
        (dict(dose=-5), "dose must be"),
    ],
)
def test_bad_parameters_are_one_line_errors(tmp_path, kwargs, message):
    with pytest.raises(Al4dstemError, match=message):
        simulate_to_file(tmp_path / "d.npy", **{**SMALL, **kwargs})


def test_bad_output_paths(tmp_path):
    with pytest.raises(Al4dstemError, match="unknown output format '.tif'"):
        simulate_to_file(tmp_path / "d.tif", **SMALL)
    (tmp_path / "file").write_text("")
    with pytest.raises(Al4dstemError, match="cannot create folder"):
        simulate_to_file(tmp_path / "file" / "d.npy", **SMALL)


# ------------------------------------------------------------------ command line


def test_cli_simulate_writes_data_and_truth(tmp_path):
    out, truth = tmp_path / "scan.npy", tmp_path / "truth.csv"
    r = subprocess.run(["al4dstem", "simulate", str(out), "--truth", str(truth), "--nx", "12", "--ny", "10",
                        "--detector", "48", "--geometry", "bullseye", "--seed", "2", "--dose", "3e4"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert np.load(out).shape == (10, 12, 48, 48)
    assert len(read_labels(truth, scan_shape=(10, 12))) == 120
    assert "(10, 12, 48, 48)" in r.stdout and len(r.stdout.strip().splitlines()) == 1


def test_cli_unknown_geometry_is_one_clear_line(tmp_path):
    r = subprocess.run(["al4dstem", "simulate", str(tmp_path / "x.npy"), "--geometry", "spiral"],
                       capture_output=True, text=True)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == [
        "error: unknown geometry 'spiral' (one of " + ", ".join(GEOMETRIES) + ")"]
    assert not (tmp_path / "x.npy").exists()


def test_cli_defaults_are_the_library_defaults():
    """The CLI spells its defaults out for --help; they must not drift from Physics and simulate_scan."""
    import inspect

    import typer

    from al4dstem.cli import app

    command = typer.main.get_command(app).commands["simulate"]
    cli = {p.name: p.default for p in command.params}
    library = {**vars(Physics()), **{name: p.default for name, p in inspect.signature(simulate_scan).parameters.items()
                                     if p.default is not inspect.Parameter.empty}}
    shared = set(cli) & set(library)
    assert {"dose", "ghost_strength", "wall_width", "none_width", "rotation", "drift", "counting", "nx", "ny",
            "detector", "geometry", "seed", "threads"} <= shared
    assert {name: cli[name] for name in shared} == {name: library[name] for name in shared}

"""Showing patterns to people (al4dstem.display) and the class colours (al4dstem.colors)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from al4dstem.colors import (
    CURRENT_RGB,
    CVD_MATRICES,
    class_hex,
    class_rgb,
    class_style,
    min_distance,
    probabilities_rgb,
)
from al4dstem.display import (
    find_beam,
    hot_pixel_mask,
    overview_rgb,
    pattern_view,
    remove_hot_pixels,
    resample,
    scale,
    stretch,
    zoom_window,
)
from al4dstem.errors import Al4dstemError

SIDE = 128
CENTRE = 64.0
STEP = 24  # main-lattice spacing, pixels; ghosts halfway


def disk(img, row, col, radius, value):
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    img[np.hypot(yy - row, xx - col) <= radius] += value


def expected_pattern(ghosts: bool, ghost_value: float = 1.5, ghost_radius: float = 2.5) -> np.ndarray:
    """Mean counts of a boracite-like pattern: central beam, main disks at even steps, and
    (optionally) horizontal ghosts at half steps, on a flat 0.3-count background."""
    img = np.full((SIDE, SIDE), 0.3)
    disk(img, CENTRE, CENTRE, 3, 800.0)
    for i in range(-2, 3):
        for j in range(-2, 3):
            if (i, j) != (0, 0):
                disk(img, CENTRE + j * STEP, CENTRE + i * STEP, 3, 30.0)
            if ghosts and abs(i) <= 1:
                disk(img, CENTRE + j * STEP, CENTRE + i * STEP + STEP / 2, ghost_radius, ghost_value)
    return img


def counted(mean: np.ndarray, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).poisson(mean).astype(np.float64)


def pixel_of(view, row, col, size):
    """The view pixel showing detector pixel (row, col)."""
    r0, r1, c0, c1 = view.window
    return int((row - r0) * size / (r1 - r0)), int((col - c0) * size / (c1 - c0))


# ---------------------------------------------------------------- resampling keeps small disks


def test_max_resampling_keeps_a_two_pixel_disk_that_sampling_and_averaging_lose():
    img = np.zeros((256, 256))
    img[101:103, 45:47] = 10.0  # a 2 x 2 ghost
    assert img[::8, ::8].max() == 0  # nearest-neighbour shrinking drops it
    assert resample(img, (32, 32)).max() == pytest.approx(10.0 * 4 / 64)  # averaging dilutes it 16x
    kept = resample(img, (32, 32), method="max")
    assert kept.max() == 10.0 and kept[101 // 8, 45 // 8] == 10.0
    assert np.count_nonzero(kept) == 1


def test_faint_ghost_stays_visible_after_shrinking():
    """Same counting noise with and without ghosts: the ghost's block is clearly brighter."""
    size = 16  # 128 -> 16: each ghost disk (5 px across) is under one screen pixel
    with_ghosts = pattern_view(counted(expected_pattern(True)), size).values
    without = pattern_view(counted(expected_pattern(False)), size).values
    r, c = int(CENTRE * size / SIDE), int((CENTRE + STEP / 2) * size / SIDE)
    assert with_ghosts[r, c] > 0.3
    assert with_ghosts[r, c] - without[r, c] > 0.2
    assert without[r, c] < 0.2  # noise alone stays dark, not stretched up


def test_zoom_contrast_separates_ghost_from_main_disk_and_noise():
    img = counted(expected_pattern(True))
    size = 64
    view = pattern_view(img, size, zoom=True)
    r0, r1, c0, c1 = view.window
    assert r0 <= CENTRE - STEP and r1 > CENTRE + STEP  # the first Bragg disks are inside
    ghost = view.values[pixel_of(view, CENTRE, CENTRE + STEP / 2, size)]
    main = view.values[pixel_of(view, CENTRE, CENTRE + STEP, size)]
    gap = view.values[pixel_of(view, CENTRE + STEP / 2, CENTRE + STEP / 2, size)]  # no disk here
    assert main > 0.85
    assert 0.2 < ghost < main - 0.25  # distinct from the Bragg disks (not both white) ...
    assert ghost > gap + 0.2  # ... and from the background


def test_zoom_window_is_square_and_holds_beam_and_first_disks():
    r0, r1, c0, c1 = zoom_window(counted(expected_pattern(True)))
    assert r1 - r0 == c1 - c0 < SIDE
    assert r0 <= CENTRE - STEP and c0 <= CENTRE - STEP and r1 > CENTRE + STEP and c1 > CENTRE + STEP


def test_pattern_without_ghosts_is_not_stretched_into_fake_ones():
    view = pattern_view(counted(expected_pattern(False), seed=3), 64, zoom=True)
    ghost_sites = [view.values[pixel_of(view, CENTRE + j * STEP, CENTRE + i * STEP / 2, 64)] for i in (-1, 1)
                   for j in (-1, 0, 1)]
    assert max(ghost_sites) < 0.25


def test_hot_pixels_removed_disks_kept():
    img = counted(expected_pattern(True))
    img[10, 10] = 5e4
    img[100, 20] = 900.0
    hot = hot_pixel_mask(img)
    assert hot[10, 10] and hot[100, 20]
    assert not hot[int(CENTRE) - 2:int(CENTRE) + 3, int(CENTRE) - 2:int(CENTRE) + 3].any()  # the beam
    clean = remove_hot_pixels(img)
    assert clean[10, 10] < 10 and clean[100, 20] < 10
    assert (clean[~hot] == img[~hot]).all()
    beam = find_beam(clean)
    assert abs(beam.row - CENTRE) < 0.5 and abs(beam.col - CENTRE) < 0.5 and 2 < beam.radius < 4.5


def test_find_beam_survives_a_blazing_hot_pixel_after_cleaning():
    img = counted(expected_pattern(False))
    img[5, 120] = 1e7
    beam = find_beam(remove_hot_pixels(img))
    assert abs(beam.row - CENTRE) < 0.5 and abs(beam.col - CENTRE) < 0.5


# ---------------------------------------------------------------- contrast maths


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, (6, 7), elements=finite), st.floats(0, 49), st.floats(51, 100),
       st.floats(0.2, 3.0), st.booleans())
def test_stretch_keeps_order_and_range(img, low, high, gamma, log):
    out = stretch(img, low, high, log=log, gamma=gamma)
    assert out.shape == img.shape and (out >= 0).all() and (out <= 1).all()
    order = np.argsort(img, axis=None, kind="stable")
    assert (np.diff(out.ravel()[order]) >= -1e-12).all()  # never reverses two pixels


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, (5, 5), elements=st.floats(0, 1e5)), st.floats(0, 10), st.floats(1, 1e4),
       st.floats(0.2, 0.99))
def test_scale_monotone_and_gamma_below_one_lifts(img, low, span, gamma):
    plain = scale(img, low, low + span, log=True)
    lifted = scale(img, low, low + span, log=True, gamma=gamma)
    order = np.argsort(img, axis=None, kind="stable")
    assert (np.diff(plain.ravel()[order]) >= -1e-12).all()
    assert (lifted >= plain - 1e-12).all() and (lifted <= 1).all() and (plain >= 0).all()


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 20), st.integers(1, 20)), elements=st.floats(-1e3, 1e3)),
       st.integers(1, 20), st.integers(1, 20))
def test_max_resampling_bounds_mean_resampling(img, rows, cols):
    mean, high = resample(img, (rows, cols)), resample(img, (rows, cols), method="max")
    assert mean.shape == high.shape == (rows, cols)
    assert (high >= mean - 1e-9).all() and high.max() <= img.max() + 1e-9


def test_resample_rejects_unknown_method():
    with pytest.raises(ValueError, match="unknown resampling"):
        resample(np.zeros((4, 4)), (2, 2), method="median")


# ---------------------------------------------------------------- colours


def test_class_colours_stay_apart_for_colour_blind_people():
    ours = class_rgb("class")
    paper_fig7 = ((110, 200, 255), (255, 150, 30), (255, 90, 200))  # the colours we replaced
    for vision in ("normal", *CVD_MATRICES):
        assert min_distance(ours, vision) > 30, vision
    worst_ours = min(min_distance(ours, v) for v in CVD_MATRICES)
    worst_paper = min(min_distance(paper_fig7, v) for v in CVD_MATRICES)
    assert worst_ours > worst_paper + 10


def test_current_marker_is_no_class_colour():
    for vision in ("normal", *CVD_MATRICES):
        assert min_distance([*class_rgb("class"), CURRENT_RGB], vision) > 20, vision
    assert CURRENT_RGB not in class_rgb("class") and CURRENT_RGB not in class_rgb("paper")


def test_schemes_hex_styles_and_probability_colours():
    assert class_rgb("paper") == ((255, 0, 0), (0, 255, 0), (0, 0, 255))
    assert class_hex("class") == ("#66ccee", "#ccbb44", "#ee6677")
    assert class_style(2) == "#ee6677" and class_style(0, bold=True) == "bold #66ccee"
    probs = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.5]])
    assert probabilities_rgb(probs, "paper").tolist() == [[255, 0, 0], [0, 128, 128]]
    mixed = probabilities_rgb(probs, "class")
    assert tuple(mixed[0]) == class_rgb("class")[0]
    assert tuple(mixed[1]) == tuple(np.rint((np.add(class_rgb()[1], class_rgb()[2])) / 2).astype(int))
    with pytest.raises(Al4dstemError, match="unknown colour scheme"):
        class_rgb("rainbow")


def test_overview_colours_labels_and_marks_current_in_the_scheme():
    bg = np.random.default_rng(0).random((8, 12))
    rgb = overview_rgb(bg, {(1, 2): 0, (5, 6): 2}, (11, 7), max_width=12, max_height=8)
    assert tuple(rgb[2, 1]) == class_rgb()[0] and tuple(rgb[6, 5]) == class_rgb()[2]
    assert tuple(rgb[7, 11]) == CURRENT_RGB
    unlabelled = np.ones((8, 12), bool)
    unlabelled[[2, 6, 7], [1, 5, 11]] = False
    assert rgb[unlabelled].max() <= 130  # the scan is dim grey: colours and the marker stand out
    paper = overview_rgb(bg, {(1, 2): 1}, None, 12, 8, scheme="paper")
    assert tuple(paper[2, 1]) == (0, 255, 0)


def test_maps_and_figures_take_the_schemes(tmp_path):
    from PIL import Image

    from al4dstem.figures import plot_sampling_pattern
    from al4dstem.labels import Label
    from al4dstem.maps import rgb_map, save_figure, save_map_png

    probs = np.zeros((4, 6, 3), np.float32)
    probs[:, :2, 0], probs[:, 2:4, 1], probs[:, 4:, 2] = 1, 1, 1
    valid = np.ones((4, 6), bool)
    valid[0, 0] = False
    assert tuple(rgb_map(probs)[1, 5]) == (0, 0, 255)  # the paper's map stays the default
    ours = rgb_map(probs, valid, scheme="class")
    assert [tuple(ours[1, c]) for c in (0, 2, 4)] == list(class_rgb("class")) and tuple(ours[0, 0]) == (0, 0, 0)
    png = np.asarray(Image.open(save_map_png(probs, tmp_path / "m.png", scale=2, scheme="class")))
    assert tuple(png[3, 9]) == class_rgb("class")[2]  # row 1, column 4 at scale 2

    def colours_in(path):
        pixels = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)
        return {tuple(p) for p in np.unique(pixels, axis=0)}

    labels = (np.array([[0, 1], [3, 2], [5, 3]]), np.array([0, 1, 2]))
    found = colours_in(save_figure(probs, tmp_path / "f.png", labels=labels, scheme="class"))
    assert all(rgb in found for rgb in class_rgb("class"))  # markers in the map's scheme (test_maps checks paper's)
    rows = [Label(0, 1, 0), Label(3, 2, 1), Label(5, 3, 2), Label(1, 1, None)]
    found = colours_in(plot_sampling_pattern(tmp_path / "s.png", rows, (4, 6)))
    assert all(rgb in found for rgb in class_rgb("class"))

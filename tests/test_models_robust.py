"""Issue 12: faint, rotated scans. Lattice-aware symmetries, the wall rule, collapse warnings, the
baselines behind the Model contract and checkpoint format, model selection, calibration.

Small simulated scans (64 px detector, a few hundred positions) made in the tests.
"""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from al4dstem.data import Preprocessing
from al4dstem.models import CNNClassifier
from al4dstem.models.augment import (
    D4,
    ROTATIONS,
    SWAP,
    WALL_SHARE,
    Augmenter,
    Finish,
    apply,
    lattice_symmetries,
    wall_labels,
)
from al4dstem.models.calibration import (
    expected_calibration_error,
    fit_temperature,
    nll,
    softmax,
)
from al4dstem.models.classifier import torch_threads
from al4dstem.models.features import find_scan_lattice, ghost_masks, lattice_on_grid
from al4dstem.models.selection import fit_auto, selection_table
from al4dstem.models.trained import TrainedNetwork
from al4dstem.models.training import CollapseWarning, TrainConfig, collapse_message, train_network
from al4dstem.simulate import simulate_scan

NONE, VERTICAL, HORIZONTAL = 0, 1, 2
FAST = settings(max_examples=60, deadline=None)
_SCANS: dict = {}


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def scan(rotation: float, counting: bool = False, ghost_strength: float = 0.05, dose: float = 1e5, seed: int = 1):
    """A small simulated scan (cached): patterns (n, 64, 64), truth (n,), pure (n,) one-class positions."""
    key = (rotation, counting, ghost_strength, dose, seed)
    if key not in _SCANS:
        s = simulate_scan(nx=18, ny=14, detector=64, geometry="tilted", seed=seed, rotation=rotation,
                          ghost_strength=ghost_strength, dose=dose, drift=0.0, counting=counting, hot_pixels=0.0,
                          threads=1)
        pure = s.fractions.max(axis=-1).ravel() > 0.999
        _SCANS[key] = (s.data.reshape(-1, 64, 64), s.truth.ravel(), pure)
    return _SCANS[key]


def visible_in_plane_class(pattern: np.ndarray, masks: np.ndarray) -> tuple[int, float]:
    """(vertical or horizontal: whose ghosts are brighter, the brighter one's ghost / Bragg ratio)."""
    sums = masks.reshape(4, -1) @ pattern.reshape(-1).astype(np.float64)
    ratios = sums[:3] / sums[3]
    return (VERTICAL if ratios[VERTICAL] > ratios[HORIZONTAL] else HORIZONTAL), float(ratios[1:].max())


# ---------------------------------------------------------------- symmetries of a rotated lattice


@FAST
@given(angle=st.floats(-89.0, 89.0))
def test_lattice_symmetries_map_the_lattice_onto_itself(angle):
    group = lattice_symmetries(angle)
    assert set(ROTATIONS) <= {s for s in group if not s.swap or s.transpose} | set(ROTATIONS)
    assert all(r in [(s.transpose, s.flip_rows, s.flip_cols) for s in group]
               for r in [(s.transpose, s.flip_rows, s.flip_cols) for s in ROTATIONS])
    assert len(group) in (4, 8)
    g = np.array([[np.cos(np.radians(angle)), np.sin(np.radians(angle))],
                  [-np.sin(np.radians(angle)), np.cos(np.radians(angle))]])
    for s in group:
        image = s.matrix() @ g[0]
        target = g[1] if s.swap else g[0]
        assert abs(abs(image @ target) - 1) < 1e-2  # g1 goes to +-g1 (kept) or +-g2 (swapped)


def test_mirrors_are_symmetries_only_of_aligned_or_diagonal_lattices():
    assert lattice_symmetries(0.0) == D4
    assert len(lattice_symmetries(31.0)) == 4 and len(lattice_symmetries(4.0)) == 4
    diagonal = {(s.transpose, s.flip_rows, s.flip_cols): s.swap for s in lattice_symmetries(45.0)}
    assert len(diagonal) == 8
    assert diagonal[(True, False, False)] is False  # at 45 degrees a transpose keeps the crystal axes
    assert diagonal[(False, False, True)] is True  # and a mirror flip exchanges them
    assert lattice_symmetries(None) == ROTATIONS


@pytest.mark.parametrize("rotation", [31.0, 45.0, 4.0])
def test_every_augmented_view_shows_the_class_it_is_labelled(rotation):
    """The root cause of the collapse: with the old "transposes swap, flips keep" rule on a rotated
    lattice, mirror views show ghosts where no class has them (31 degrees) or the other class's
    (45 degrees), labelled as the original. Every view must show its label's ghosts."""
    patterns, truth, pure = scan(rotation)
    lattice = find_scan_lattice(patterns.mean(axis=0).astype(np.float64))
    assert lattice is not None and abs(abs(lattice.rotation) - (rotation if rotation < 45 else 45)) < 1.5
    prep = Preprocessing(size=64, scaling="linear", normalise="none")
    masks = ghost_masks(lattice, patterns.mean(axis=0), (64, 64), prep)
    pick = np.flatnonzero(pure & (truth != NONE))[:12]
    x = torch.from_numpy(patterns[pick].astype(np.float32))[:, None]
    y = torch.from_numpy(truth[pick])
    for s in lattice_symmetries(lattice.rotation):
        xs, ys = apply(x, y, s)
        for pattern, label in zip(xs[:, 0].numpy(), ys.numpy(), strict=True):
            seen, strength = visible_in_plane_class(pattern, masks)
            assert seen == label and strength > 0.02, (s, rotation)


def test_detector_mirrors_on_a_rotated_lattice_show_the_wrong_ghosts():
    """The same check on the old augmentation (all of D4, axis-aligned rule) fails at 45 degrees."""
    patterns, truth, pure = scan(45.0)
    lattice = find_scan_lattice(patterns.mean(axis=0).astype(np.float64))
    masks = ghost_masks(lattice, patterns.mean(axis=0), (64, 64), Preprocessing(64, scaling="linear",
                                                                                 normalise="none"))
    pick = np.flatnonzero(pure & (truth != NONE))[:6]
    x = torch.from_numpy(patterns[pick].astype(np.float32))[:, None]
    y = torch.from_numpy(truth[pick])
    wrong = 0
    for s in D4:
        xs, ys = apply(x, y, s)
        wrong += sum(visible_in_plane_class(p, masks)[0] != label for p, label in zip(xs[:, 0].numpy(), ys.numpy(),
                                                                                       strict=True))
    assert wrong == 4 * len(pick)  # the four mirrors, every pattern


def test_augmenter_draws_from_its_group_only():
    x = torch.arange(16.0).view(1, 1, 4, 4).repeat(64, 1, 1, 1)
    t = torch.nn.functional.one_hot(torch.full((64,), HORIZONTAL), 3).float()
    xa, _ = Augmenter(mix=0.0, dose=(1.0, 1.0), resample=0.0, shift=0.0)(x, t, np.random.default_rng(0))
    rotations = [torch.rot90(x[0], k, dims=(-2, -1)) for k in range(4)]
    assert all(any(torch.equal(v, r) for r in rotations) for v in xa)  # default group: the rotations
    assert len({tuple(v.flatten().tolist()) for v in xa}) == 4


# ---------------------------------------------------------------- walls


@FAST
@given(w=st.floats(0.0, 1.0), a=st.sampled_from([VERTICAL, HORIZONTAL]))
def test_wall_rule_for_vertical_horizontal_mixes(w, a):
    b = SWAP[a]
    t = torch.zeros(1, 3)
    t[0, a], t[0, b] = w, 1 - w
    out = wall_labels(t)[0]
    assert torch.isclose(out.sum(), torch.tensor(1.0))
    if min(w, 1 - w) >= WALL_SHARE:
        assert out.tolist() == [1.0, 0.0, 0.0]
    elif w > 0.5:
        assert out[a] == 1.0
    elif w < 0.5:
        assert out[b] == 1.0


@FAST
@given(w=st.floats(0.0, 1.0), c=st.sampled_from([VERTICAL, HORIZONTAL]))
def test_mixes_with_none_keep_their_soft_label(w, c):
    t = torch.zeros(1, 3)
    t[0, NONE], t[0, c] = w, 1 - w
    assert torch.equal(wall_labels(t), t)


def test_mixing_augmentation_applies_the_wall_rule():
    n = 200
    x = torch.ones(n, 1, 2, 2)
    t = torch.nn.functional.one_hot(torch.arange(n) % 2 + 1, 3).float()  # vertical, horizontal alternating
    _, ta = Augmenter(symmetry=False, mix=1.0, dose=(1.0, 1.0), resample=0.0, shift=0.0, mix_shape=1.0)(
        x, t, np.random.default_rng(3))
    assert ((ta == 0) | (ta == 1)).all()  # every v+h mix is a wall or its majority class
    # half the partners are of the other class, and a third of uniform weights make walls of those
    assert 0.1 < float(ta[:, NONE].mean()) < 0.25
    _, tb = Augmenter(symmetry=False, mix=1.0, dose=(1.0, 1.0), resample=0.0, shift=0.0)(
        x, t, np.random.default_rng(3))
    assert ((tb == 0) | (tb == 1)).all() and float(tb[:, NONE].mean()) < float(ta[:, NONE].mean())


# ---------------------------------------------------------------- collapse


def test_collapse_message_names_the_class_and_the_advice():
    assert collapse_message(np.array([1, 2, 1]), np.array([1, 2, 2])) is None
    assert collapse_message(np.array([1, 1]), np.array([1, 1])) is None  # one class taught, one used
    message = collapse_message(np.array([1, 1, 1, 1]), np.array([0, 1, 2, 1]))
    assert "vertical for every labelled pattern" in message and "--network auto" in message
    partial = collapse_message(np.array([1, 2, 1, 2, 1]), np.array([0, 1, 2, 2, 0]))  # none taught, never given
    assert "never predicts none" in partial and "2 none" in partial and "--network auto" in partial
    assert collapse_message(np.array([0, 2, 1]), np.array([0, 1, 2])) is None  # wrong, but every class used


class _Constant(nn.Module):
    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.tensor([0.0, 5.0, 0.0]))

    def forward(self, x):
        return self.bias.expand(len(x), 3) + 0 * x.mean()


def test_training_that_ends_on_one_class_warns():
    y = np.array([0, 1, 2] * 4)
    x = np.random.default_rng(0).poisson(3.0, (12, 8, 8)).astype(np.float32)
    with pytest.warns(CollapseWarning, match="vertical for every labelled pattern"):
        result = train_network(_Constant(), x, y, TrainConfig(epochs=1, lr=1e-6), Finish())
    assert result.warnings and "vertical" in result.warnings[0]


# ---------------------------------------------------------------- baselines behind the Model contract


@pytest.fixture(scope="module")
def faint():
    patterns, truth, _ = scan(31.0, counting=True, ghost_strength=0.03, dose=3e4, seed=2)
    rng = np.random.default_rng(0)
    train = np.sort(np.concatenate([rng.choice(np.flatnonzero(truth == c), 8, replace=False) for c in range(3)]))
    test = np.setdiff1d(np.arange(len(truth)), train)
    return patterns, truth, train, test


@pytest.mark.parametrize("network,least", [("ghost", 0.9), ("softmax", 0.6), ("pca-knn", 0.5)])
def test_baselines_fit_predict_save_and_load(faint, tmp_path, network, least):
    patterns, truth, train, test = faint
    clf = CNNClassifier(network=network, random_state=0).fit(patterns[train], truth[train])
    assert clf.network_name_ == network and clf.classes_.tolist() == [0, 1, 2]
    p = clf.predict_proba(patterns[test])
    assert p.shape == (len(test), 3) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert (p.argmax(1) == truth[test]).mean() >= least
    assert "calibration" in clf.summary_ and clf.summary_["lattice"]["n_disks"] >= 3
    path = tmp_path / "m.pt"
    clf.save(path)
    light = TrainedNetwork.load(path)  # what `al4dstem predict` loads
    x = clf.preprocessing_(patterns[test])
    assert np.allclose(light.forward_preprocessed(x), p, atol=1e-5)
    again = CNNClassifier.load(path)
    assert again.network_name_ == network and np.allclose(again.predict_proba(patterns[test]), p, atol=1e-5)
    assert again.network_.temperature == pytest.approx(clf.network_.temperature)


def test_ghost_model_needs_a_lattice():
    noise = np.random.default_rng(0).poisson(0.2, (12, 32, 32)).astype(np.uint16)
    with pytest.raises(Exception, match="lattice"):
        CNNClassifier(network="ghost").fit(noise, np.array([0, 1, 2] * 4))


def test_ghost_masks_follow_the_binning():
    patterns, _, _ = scan(31.0)
    mean = patterns.mean(axis=0).astype(np.float64)
    lattice = find_scan_lattice(mean)
    half = Preprocessing(32, scaling="linear", normalise="none")
    grid = lattice_on_grid(lattice, (64, 64), half)
    assert grid.centre == pytest.approx(((lattice.centre[0] + 0.5) / 2 - 0.5, (lattice.centre[1] + 0.5) / 2 - 0.5))
    assert np.hypot(*grid.g1) == pytest.approx(np.hypot(*lattice.g1) / 2)
    masks = ghost_masks(lattice, mean, (64, 64), half)
    assert masks.shape == (4, 32, 32)
    assert np.allclose(masks.sum(axis=(1, 2)), 0, atol=1e-6)  # disks minus ring: no response to a flat background


def test_auto_scores_every_candidate_and_keeps_the_best(faint):
    patterns, truth, train, test = faint
    clf = CNNClassifier(network="auto", epochs=2, random_state=0)
    steps = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CollapseWarning)
        fit_auto(clf, patterns[train], truth[train], (64, 64), progress=lambda s, n, r: steps.append(r["stage"]),
                 candidates=("softmax", "pca-knn", "default"))
    sel = clf.summary_["selection"]
    assert set(sel["scores"]) == {"softmax", "pca-knn", "default"} and sel["folds"] == 3
    s = sel["scores"]
    order = list(s)
    assert sel["kept"] == max(s, key=lambda k: (s[k]["cv_accuracy"], s[k]["cv_balanced_accuracy"], -order.index(k)))
    assert all(np.isfinite(v["cv_log_loss"]) for v in s.values())
    assert clf.network_name_ == sel["kept"]
    assert any("cross-validating default" in s for s in steps)
    assert "kept " + sel["kept"] in selection_table(clf.summary_)


def test_choose_breaks_ties_by_candidate_order():
    from al4dstem.models.selection import choose

    def row(acc, bal=None):
        return {"cv_accuracy": acc, "cv_balanced_accuracy": acc if bal is None else bal, "cv_log_loss": 0.1}

    names = ("ghost", "ghost 3x3", "softmax")
    table = {"ghost": row(0.9), "ghost 3x3": row(1.0), "softmax": row(1.0)}
    kept, reason = choose(table, {}, names)
    assert kept == "ghost 3x3" and "tied with 1" in reason
    table["softmax"] = row(1.0, bal=1.0)
    table["ghost 3x3"] = row(1.0, bal=0.99)
    assert choose(table, {}, names) == ("softmax", "highest cross-validated accuracy")
    table = {"ghost": {"cv_accuracy": float("nan")}, "softmax": {"cv_accuracy": float("nan")}}
    assert choose(table, {"softmax": 1}, names)[0] == "softmax"


def test_choose_prefers_the_ghost_model_over_3x3_neighbours_on_a_tie():
    from al4dstem.models.selection import POOLED_CANDIDATES, choose

    def row(acc):
        return {"cv_accuracy": acc, "cv_balanced_accuracy": acc, "cv_log_loss": 0.1}

    table = {name: row(0.98) for name in POOLED_CANDIDATES}
    assert choose(table, {}, POOLED_CANDIDATES)[0] == "ghost 3x3"  # tied everywhere: the preferred one
    table["ghost 3x3"] = row(0.96)
    assert choose(table, {}, POOLED_CANDIDATES)[0] == "ghost"  # then the unpooled ghost model
    table["ghost"] = row(0.96)
    assert choose(table, {}, POOLED_CANDIDATES)[0] == "ghost 5x5"
    table = {"softmax 3x3": row(0.9), "softmax": row(0.9), "default": row(0.9)}
    assert choose(table, {}, POOLED_CANDIDATES)[0] == "softmax 3x3"  # the CNN never wins a tie
    table["default"] = row(0.92)
    assert choose(table, {}, POOLED_CANDIDATES) == ("default", "highest cross-validated accuracy")


def test_auto_via_fit_skips_the_cnn_when_a_baseline_is_perfect(faint):
    patterns, truth, train, _ = faint
    clf = CNNClassifier(network="auto", epochs=2, random_state=0).fit(patterns[train], truth[train])
    sel = clf.summary_["selection"]
    assert set(sel["scores"]) == {"ghost", "softmax", "pca-knn", "default"}
    if any(v.get("cv_accuracy") == 1.0 for v in sel["scores"].values()):
        assert "skipped" in sel["scores"]["default"]
    assert clf.network_name_ == sel["kept"] != "auto"


# ---------------------------------------------------------------- calibration


def test_temperature_recovers_an_overconfident_model():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1.5, (4000, 3))
    y = np.array([rng.choice(3, p=p) for p in softmax(z)])
    t = fit_temperature(3.0 * z, y)
    assert t == pytest.approx(3.0, rel=0.15)
    before = expected_calibration_error(softmax(3.0 * z), y)
    after = expected_calibration_error(softmax(3.0 * z, t), y)
    assert after < before / 2 and after < 0.03
    assert nll(3.0 * z, y, t) < nll(3.0 * z, y)


def test_temperature_stays_finite_when_every_held_out_label_is_right():
    logits = np.tile([[4.0, 0.0, 0.0]], (20, 1))
    t = fit_temperature(logits, np.zeros(20, int))
    assert 0.2 < t < 1.0  # sharpened, but not to certainty: about 21/22 confidence
    assert softmax(logits, t).max() < 0.999


def test_ece_of_a_calibrated_model_is_small_and_nan_rows_are_left_out():
    rng = np.random.default_rng(1)
    p = softmax(rng.normal(0, 2, (5000, 3)))
    y = np.array([rng.choice(3, p=q) for q in p])
    assert expected_calibration_error(p, y) < 0.03
    p[:10] = np.nan
    assert np.isfinite(expected_calibration_error(p, y))
    assert np.isnan(expected_calibration_error(np.full((2, 3), np.nan), np.array([0, 1])))


# ---------------------------------------------------------------- neighbourhood pooling


def _brute_pool(a: np.ndarray, size: int) -> np.ndarray:
    h = size // 2
    rows, cols = a.shape[:2]
    out = np.zeros(a.shape, np.float64)
    for y in range(rows):
        for x in range(cols):
            block = a[max(0, y - h):y + h + 1, max(0, x - h):x + h + 1].astype(np.float64)
            out[y, x] = block.sum(axis=(0, 1)) if a.dtype.kind in "ui" else block.mean(axis=(0, 1))
    return out


@FAST
@given(rows=st.integers(1, 7), cols=st.integers(1, 7), size=st.sampled_from([3, 5]), floats=st.booleans(),
       seed=st.integers(0, 2**31 - 1))
def test_pooled_array_matches_a_brute_force_pool(rows, cols, size, floats, seed):
    from al4dstem.models.neighbourhood import PooledArray

    rng = np.random.default_rng(seed)
    a = rng.random((rows, cols, 3, 2)).astype(np.float32) if floats else rng.integers(0, 65535, (rows, cols, 3, 2),
                                                                                       dtype=np.uint16)
    want = _brute_pool(a, size)
    pooled = PooledArray(a, size)
    assert np.allclose(pooled[0:rows], want, rtol=1e-5)
    y, x = rng.integers(rows), rng.integers(cols)
    assert np.allclose(pooled[y, x], want[y, x], rtol=1e-5)
    assert np.allclose(pooled[int(y), 0:cols], want[y], rtol=1e-5)
    ys, xs = rng.integers(0, rows, 4), rng.integers(0, cols, 4)
    assert np.allclose(pooled[ys, xs], want[ys, xs], rtol=1e-5)


def test_pooled_dataset_streams_what_it_gets():
    from al4dstem.models.neighbourhood import pooled

    a = np.random.default_rng(0).integers(0, 50, (6, 5, 4, 4), dtype=np.uint16)
    ds = pooled(a, 3)
    assert ds.detector_shape == (4, 4) and ds.scan_shape == (6, 5) and "3 x 3" in ds.source
    streamed = np.concatenate([b.patterns for b in ds.iter_batches(7)])
    assert np.array_equal(streamed, ds.get(ds.all_positions()))
    assert np.array_equal(streamed.reshape(a.shape), _brute_pool(a, 3))
    assert pooled(a, 1).array is a
    with pytest.raises(Exception, match="neighbourhood must be one of"):
        pooled(a, 4)


def test_pooled_model_saves_its_neighbourhood_and_refuses_pattern_batches(tmp_path):
    from al4dstem.models.neighbourhood import model_dataset

    patterns, truth, _ = scan(31.0, counting=True, ghost_strength=0.03, dose=3e4, seed=2)
    data = patterns.reshape(14, 18, 64, 64)
    rng = np.random.default_rng(0)
    pick = np.sort(np.concatenate([rng.choice(np.flatnonzero(truth == c), 6, replace=False) for c in range(3)]))
    positions = np.stack([pick % 18, pick // 18], axis=1)
    clf = CNNClassifier(network="ghost", neighbourhood=3, dataset=data).fit(positions, truth[pick])
    assert clf.neighbourhood_ == 3
    with pytest.raises(Exception, match="pass scan positions"):
        clf.predict_proba(patterns[:2])
    path = tmp_path / "m.pt"
    clf.save(path)
    light = TrainedNetwork.load(path)
    mapped = model_dataset(light, data)
    assert "3 x 3" in mapped.source
    x = light.preprocessing_(mapped.get(positions))
    assert np.allclose(light.forward_preprocessed(x), clf.predict_proba(positions), atol=1e-5)
    assert CNNClassifier.load(path, dataset=data).neighbourhood_ == 3

"""Maps, PNGs, figures and evaluation (al4dstem.maps)."""

import numpy as np
import pytest
from PIL import Image

from al4dstem.errors import Al4dstemError
from al4dstem.labels import Label, write_labels
from al4dstem.maps import (
    auto_scale,
    confidence_map,
    entropy_map,
    evaluate,
    exclusion_mask,
    load_prediction,
    rgb_map,
    save_figure,
    save_map_png,
    truth_grid,
    write_prediction,
)


def one_hot(classes):
    return np.eye(3, dtype=np.float32)[np.asarray(classes)]


def test_rgb_channels_follow_class_order():
    probs = one_hot([[0, 1, 2]])
    rgb = rgb_map(probs)
    assert rgb.dtype == np.uint8
    assert rgb[0].tolist() == [[255, 0, 0], [0, 255, 0], [0, 0, 255]]  # none red, vertical green, horizontal blue


def test_unclassified_positions_are_black_and_classified_never_are():
    probs = np.full((2, 2, 3), 1 / 3, dtype=np.float32)
    probs[0, 1] = np.nan
    valid = np.array([[True, True], [False, True]])
    rgb = rgb_map(probs, valid)
    assert rgb[0, 1].tolist() == [0, 0, 0] and rgb[1, 0].tolist() == [0, 0, 0]
    assert rgb[0, 0].tolist() == [85, 85, 85] and rgb[1, 1].max() >= 85


def test_entropy_and_confidence():
    probs = np.stack([one_hot([1, 2])[0], np.full(3, 1 / 3), one_hot([0])[0]])[None].astype(np.float32)
    h = entropy_map(probs, np.array([[True, True, False]]))
    assert h[0, 0] == pytest.approx(0.0, abs=1e-6)
    assert h[0, 1] == pytest.approx(1.0, abs=1e-6)
    assert np.isnan(h[0, 2])
    assert confidence_map(probs)[0, 0] == pytest.approx(1.0, abs=1e-6)
    half = np.array([[[0.5, 0.5, 0.0]]], np.float32)
    assert entropy_map(half)[0, 0] == pytest.approx(np.log(2) / np.log(3), rel=1e-5)


def test_png_is_rgb_and_scaled_nearest_neighbour(tmp_path):
    rows, cols = 34, 206
    classes = np.arange(rows * cols).reshape(rows, cols) % 3
    probs = one_hot(classes)
    assert auto_scale((rows, cols)) >= 4
    path = save_map_png(probs, tmp_path / "m.png")
    img = Image.open(path)
    assert img.mode == "RGB"
    s = auto_scale((rows, cols))
    assert img.size == (cols * s, rows * s)
    a = np.asarray(img)
    assert (a[::s, ::s] == rgb_map(probs)).all()
    assert (a[s - 1::s, s - 1::s] == rgb_map(probs)).all()  # whole blocks, no smoothing
    small = Image.open(save_map_png(probs[:2, :3], tmp_path / "s.png", scale=7))
    assert small.size == (21, 14)


def test_png_unwritable_is_a_user_error(tmp_path):
    with pytest.raises(Al4dstemError, match="cannot write"):
        save_map_png(one_hot([[0]]), tmp_path / "missing" / "m.png")


def test_figure_is_written(tmp_path):
    probs = one_hot(np.tile([0, 1, 2], (8, 10)))
    path = save_figure(probs, tmp_path / "f.png", labels=(np.array([[0, 0], [5, 3]]), np.array([0, 2])), title="t")
    img = Image.open(path)
    assert img.format == "PNG" and img.size[0] > 400


@pytest.mark.parametrize("scheme", ["paper", "class"])
def test_label_dots_share_the_maps_colours(tmp_path, scheme):
    """On the paper's R/G/B map a `none` label is a red dot (red means none there), never the
    labeller's colour for it; on the class map it is the class scheme's colour."""
    from al4dstem.colors import class_rgb

    probs = one_hot(np.ones((12, 12), int))  # all vertical
    labels = (np.array([[2, 2], [9, 9], [2, 9], [9, 2]]), np.zeros(4, int))  # four none labels
    path = save_figure(probs, tmp_path / "f.png", labels=labels, scheme=scheme, key=False)
    img = np.asarray(Image.open(path).convert("RGB")).astype(int)

    def pixels_of(rgb):
        return int((np.abs(img - np.array(rgb)).max(-1) <= 8).sum())

    mine, other = class_rgb(scheme)[0], class_rgb("class" if scheme == "paper" else "paper")[0]
    assert pixels_of(mine) >= 4 * 10  # the dots' faces, on the map and the confidence panel
    assert pixels_of(other) == 0


def test_prediction_files_replace_old_ones_whole(tmp_path):
    probs = one_hot(np.tile([0, 1, 2], (4, 6)))
    first = write_prediction(tmp_path / "map", probs)
    assert first["figure"].exists()
    again = write_prediction(tmp_path / "map", probs[..., ::-1].copy(), figure=False)
    assert "figure" not in again and not first["figure"].exists()  # no stale figure beside the new map
    np.testing.assert_array_equal(np.load(again["probs"]), probs[..., ::-1])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.npy", "map.png", "map_valid.npy"]


def test_evaluate_matches_hand_computation():
    truth = np.array([[0, 1, 2], [1, 1, 2]])
    pred = np.array([[0, 1, 1], [1, 2, 2]])  # 4 of 6 right
    m = evaluate(one_hot(pred), truth)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["n_evaluated"] == 6
    assert m["confusion_matrix"] == [[1, 0, 0], [0, 2, 1], [0, 1, 1]]
    v = m["per_class"]["vertical"]  # predicted vertical 3 times, 2 right; truly vertical 3, 2 found
    assert v["precision"] == pytest.approx(2 / 3) and v["recall"] == pytest.approx(2 / 3)
    h = m["per_class"]["horizontal"]  # predicted 2 (1 right), truth 2 (1 found)
    assert h["f1"] == pytest.approx(0.5) and h["support"] == 2
    assert m["per_class"]["none"]["f1"] == pytest.approx(1.0)


def test_evaluate_excludes_unknown_excluded_and_unclassified():
    truth = np.array([[0, 1, -1], [2, 2, 1]])
    pred = np.array([[1, 1, 0], [2, 0, 1]])
    valid = np.array([[True, True, True], [True, False, True]])
    m = evaluate(one_hot(pred), truth, exclude=np.array([[0, 0]]), valid=valid)  # (x=0, y=0) wrong but excluded
    assert m["n_excluded"] == 1 and m["n_unclassified"] == 1
    assert m["n_evaluated"] == 3 and m["accuracy"] == pytest.approx(1.0)
    with pytest.raises(Al4dstemError, match="3 x 2"):
        evaluate(one_hot(pred), np.zeros((3, 3), int))


def test_truth_grid_from_file_and_other_scan_refused(tmp_path):
    path = tmp_path / "truth.csv"
    write_labels(path, [Label(x, y, (x + y) % 3) for y in range(2) for x in range(3)])
    grid = truth_grid(path, (2, 3))
    assert grid.tolist() == [[0, 1, 2], [1, 2, 0]]
    with pytest.raises(Al4dstemError, match=r"3 x 2 scan.*5 x 4"):  # a complete grid of another scan
        truth_grid(path, (4, 5))
    with pytest.raises(Al4dstemError, match="outside"):
        truth_grid(path, (1, 3))
    hand = tmp_path / "hand.csv"  # sparse hand labels are a valid, partial truth
    write_labels(hand, [Label(4, 3, 1), Label(1, 0, 2), Label(2, 2, 0), Label(0, 1, 0)])
    grid = truth_grid(hand, (4, 5))
    assert (grid >= 0).sum() == 4 and grid[3, 4] == 1 and grid[0, 1] == 2
    assert exclusion_mask(hand, (4, 5)).tolist() == (grid >= 0).tolist()


def test_prediction_files_round_trip(tmp_path):
    probs = one_hot([[0, 1], [2, 1]])
    probs[1, 1] = 1 / 3
    valid = np.array([[True, True], [True, False]])
    paths = write_prediction(tmp_path / "pred", probs, valid, labels=(np.array([[0, 0]]), np.array([0])))
    assert sorted(p.name for p in paths.values()) == ["pred.npy", "pred.png", "pred_figure.png", "pred_valid.npy"]
    stored = np.load(paths["probs"])
    assert stored.dtype == np.float32 and np.isfinite(stored).all() and np.allclose(stored[1, 1], 1 / 3)
    got, got_valid = load_prediction(tmp_path / "pred.npy")
    assert np.array_equal(got_valid, valid) and np.isnan(got[1, 1]).all()
    assert np.array_equal(got[valid], probs[valid])
    probs[1, 1] = np.nan  # in memory, not classifiable is NaN: stored the same way
    write_prediction(tmp_path / "nan", probs, figure=False)
    assert np.array_equal(np.load(tmp_path / "nan.npy"), stored)
    assert np.array_equal(np.load(tmp_path / "nan_valid.npy"), valid)
    with pytest.raises(Al4dstemError, match="does not exist"):
        write_prediction(tmp_path / "nope" / "pred", probs, valid)

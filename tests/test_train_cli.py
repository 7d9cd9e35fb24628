"""`al4dstem train`, driven as a user would (subprocess): a model that predicts, and bad inputs."""

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run

from al4dstem.labels import Label, write_labels
from al4dstem.models import CNNClassifier

ROWS, COLS, DET = 6, 8, 32


def class_pattern(k: int, rng) -> np.ndarray:
    """Counts with a central disk, plus a row of spots (horizontal) or a column (vertical)."""
    img = rng.poisson(1.0, (DET, DET)).astype(np.float64)
    img[14:18, 14:18] += 200
    if k == 1:
        img[4::8, 15:17] += 40
    elif k == 2:
        img[15:17, 4::8] += 40
    return img


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("train")
    rng = np.random.default_rng(0)
    truth = (np.arange(ROWS * COLS).reshape(ROWS, COLS) // 3) % 3
    data = np.stack([np.stack([class_pattern(truth[r, c], rng) for c in range(COLS)]) for r in range(ROWS)])
    np.save(d / "data.npy", data.astype(np.uint16))
    write_labels(d / "labels.csv", [Label(x, y, int(truth[y, x])) for y in range(ROWS) for x in range(COLS)
                                    if (x + y) % 2 == 0])
    return d, truth


def test_train_writes_a_model_that_predicts(files):
    d, truth = files
    p = run("train", d / "data.npy", "--labels", d / "labels.csv", "--out", d / "model.pt", "--epochs", "40",
            "--seed", "3", "--network", "default")
    assert p.returncode == 0, p.stderr
    assert "24 labels" in p.stdout and str(d / "model.pt") in p.stdout
    model = CNNClassifier.load(d / "model.pt", dataset=d / "data.npy")
    assert model.detector_shape_ == (DET, DET) and model.random_state == 3
    labelled = [truth[y, x] for y in range(ROWS) for x in range(COLS) if (x + y) % 2 == 0]
    counts = np.bincount(labelled, minlength=3).tolist()
    assert model.label_counts_ == dict(zip(("none", "vertical", "horizontal"), counts, strict=True))
    assert 1 <= model.summary_["epochs_run"] <= 40
    # the default class weighting: unweighted, then balanced over the scan's own class shares
    assert model.class_weight == "scan" and len(model.network_.config["class_bias"]) == 3
    assert "class shares in the scan, estimated on 48 positions" in p.stdout
    positions = np.array([(x, y) for y in range(ROWS) for x in range(COLS)])
    accuracy = (model.predict(positions) == truth[positions[:, 1], positions[:, 0]]).mean()
    assert accuracy >= 0.9


def test_class_weight_none_counts_each_label_once(files):
    """Labels from uncertainty sampling are mostly walls: --class-weight none does not reweigh them."""
    d, _ = files
    for mode, stored in (("none", None), ("balanced", "balanced"), ("scan", "scan")):
        p = run("train", d / "data.npy", "--labels", d / "labels.csv", "--out", d / f"cw-{mode}.pt", "--epochs", "2",
                "--network", "default", "--class-weight", mode)
        assert p.returncode == 0, p.stderr
        model = CNNClassifier.load(d / f"cw-{mode}.pt", dataset=d / "data.npy")
        assert model.class_weight == stored
        weights = model.summary_["class_weights"]
        # the labels' classes are not equal in number: only balanced weighs them
        assert (weights == [1.0, 1.0, 1.0]) == (mode != "balanced"), weights
        bias = model.network_.config.get("class_bias")
        assert (bias is not None) == (mode == "scan"), bias  # scan: unweighted, then offset by the scan's shares
        assert ("class shares in the scan, estimated on 48 positions" in p.stdout) == (mode == "scan"), p.stdout


def test_default_network_is_auto(files):
    """Without --network, train compares the models on the labels and says which it kept."""
    d, _ = files
    p = run("train", d / "data.npy", "--labels", d / "labels.csv", "--out", d / "auto.pt", "--epochs", "2")
    assert p.returncode == 0, p.stderr
    assert "model selection" in p.stdout and "<- kept" in p.stdout
    model = CNNClassifier.load(d / "auto.pt", dataset=d / "data.npy")
    assert model.summary_["selection"]["kept"] in model.summary_["selection"]["scores"]


def bad_inputs(d):
    data, good = d / "data.npy", d / "labels.csv"
    write_labels(d / "one_class.csv", [Label(x, 0, 1) for x in range(6)])
    write_labels(d / "too_few.csv", [Label(0, 0, 0), Label(1, 0, 1), Label(2, 0, 2)])
    write_labels(d / "other_scan.csv", [Label(30, 0, 0), Label(1, 0, 1)])
    (d / "bad_class.csv").write_text("x,y,label\n0,0,none\n1,0,diagonal\n")
    nan = np.load(data).astype(np.float32)
    nan[0, 0, 3, 3] = np.nan
    np.save(d / "nan.npy", nan)
    (d / "a_file").write_text("x")
    m = d / "out.pt"
    return {
        "missing data": (("train", d / "nope.npy", "--labels", good, "--out", m), ["nope.npy"]),
        "missing labels": (("train", data, "--labels", d / "gone.csv", "--out", m), ["gone.csv"]),
        "one class": (("train", data, "--labels", d / "one_class.csv", "--out", m), ["2 classes", "6 vertical"]),
        "too few labels": (("train", data, "--labels", d / "too_few.csv", "--out", m), ["3 given", "at least 5"]),
        "labels of another scan": (("train", data, "--labels", d / "other_scan.csv", "--out", m), ["x=30", "8 x 6"]),
        "unknown class": (("train", data, "--labels", d / "bad_class.csv", "--out", m), ["diagonal", ":3"]),
        "NaN pattern labelled": (("train", d / "nan.npy", "--labels", good, "--out", m), ["NaN", "x=0, y=0"]),
        "NaN pattern, pooled": (("train", d / "nan.npy", "--labels", good, "--out", m, "--network", "ghost",
                                 "--neighbourhood", "3"), ["NaN", "x=0, y=0"]),
        "output not writable": (("train", data, "--labels", good, "--out", d / "a_file" / "m.pt"), ["a_file"]),
        "epochs zero": (("train", data, "--labels", good, "--out", m, "--epochs", "0"), ["--epochs"]),
        "unknown network": (("train", data, "--labels", good, "--out", m, "--network", "resnet"), ["resnet"]),
        "unknown class weight": (("train", data, "--labels", good, "--out", m, "--class-weight", "heavy"),
                                 ["--class-weight", "heavy"]),
    }


@pytest.mark.parametrize("case", ["missing data", "missing labels", "one class", "too few labels",
                                  "labels of another scan", "unknown class", "NaN pattern labelled",
                                  "NaN pattern, pooled", "output not writable", "epochs zero", "unknown network",
                                  "unknown class weight"])
def test_bad_input_is_one_line_and_writes_no_model(files, case):
    d = files[0]
    args, words = bad_inputs(d)[case]
    assert_one_line_error(run(*args), *words)
    assert not (d / "out.pt").exists() and not list(d.glob(".out.pt.*"))

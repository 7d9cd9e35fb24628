"""`al4dstem predict`, `evaluate` and the demo pipeline, driven as a user would (subprocess)."""

import json

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run
from PIL import Image

from al4dstem.data import Preprocessing
from al4dstem.engines.local import predict_dataset
from al4dstem.labels import Label, read_labels, write_labels
from al4dstem.maps import auto_scale, evaluate
from al4dstem.models import CNNClassifier

ROWS, COLS, DET = 6, 8, 32


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    data = rng.poisson(2.0, size=(ROWS, COLS, DET, DET)).astype(np.uint16)
    np.save(d / "data.npy", data)
    model = CNNClassifier(network="default", preprocessing=Preprocessing(size=16), random_state=0)
    model.initialize((DET, DET)).save(d / "model.pt")
    truth = np.arange(ROWS * COLS).reshape(ROWS, COLS) % 3
    write_labels(d / "truth.csv", [Label(x, y, int(truth[y, x])) for y in range(ROWS) for x in range(COLS)])
    write_labels(d / "labels.csv", [Label(1, 1, int(truth[1, 1])), Label(5, 4, int(truth[4, 5]))])
    return d, data, truth


@pytest.fixture(scope="module")
def predicted(files):
    """One `al4dstem predict` run shared by the tests that read its output."""
    d = files[0]
    return run("predict", d / "data.npy", "--model", d / "model.pt", "--out", d / "pred", "--labels", d / "labels.csv",
               "--batch-size", 10)


def test_predict_writes_the_contract_files(files, predicted):
    d, data, _ = files
    p = predicted
    assert p.returncode == 0, p.stderr
    assert "patterns/s" in p.stdout and str(d / "pred.png") in p.stdout
    probs = np.load(d / "pred.npy")
    assert probs.dtype == np.float32 and probs.shape == (ROWS, COLS, 3)
    assert np.isfinite(probs).all() and np.allclose(probs.sum(-1), 1, atol=1e-5)
    assert np.load(d / "pred_valid.npy").all()
    library, _ = predict_dataset(CNNClassifier.load(d / "model.pt"), data)
    np.testing.assert_allclose(probs, library, rtol=1e-4, atol=1e-5)
    img = Image.open(d / "pred.png")
    s = auto_scale((ROWS, COLS))
    assert img.mode == "RGB" and img.size == (COLS * s, ROWS * s)
    assert Image.open(d / "pred_figure.png").format == "PNG"


def test_nan_patterns_are_reported_and_not_classified(files):
    d, data, _ = files
    bad = data.astype(np.float32)
    bad[2, 3, 0, 0] = np.nan
    np.save(d / "nan.npy", bad)
    p = run("predict", d / "nan.npy", "--model", d / "model.pt", "--out", d / "nanpred")
    assert p.returncode == 0, p.stderr
    warning = [s for s in p.stderr.splitlines() if s.strip()]
    assert len(warning) == 1 and "1 of 48 patterns" in warning[0] and "NaN" in warning[0]
    probs, valid = np.load(d / "nanpred.npy"), np.load(d / "nanpred_valid.npy")
    assert not valid[2, 3] and valid.sum() == ROWS * COLS - 1
    assert np.allclose(probs[2, 3], 1 / 3) and np.isfinite(probs).all()
    assert Image.open(d / "nanpred.png").getpixel((3 * auto_scale((ROWS, COLS)), 2 * auto_scale((ROWS, COLS)))) == (
        0, 0, 0)


def test_evaluate_json_and_table(files, predicted):
    d, _, truth = files
    assert predicted.returncode == 0, predicted.stderr
    probs = np.load(d / "pred.npy")
    p = run("evaluate", d / "pred.npy", "--truth", d / "truth.csv", "--exclude", d / "labels.csv", "--json")
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout)
    want = evaluate(probs, truth, exclude=np.array([[1, 1], [5, 4]]))
    assert got["n_evaluated"] == ROWS * COLS - 2 and got["n_excluded"] == 2
    assert got["accuracy"] == pytest.approx(want["accuracy"])
    assert got["confusion_matrix"] == want["confusion_matrix"]
    table = run("evaluate", d / "pred.npy", "--truth", d / "truth.csv")
    assert table.returncode == 0 and "accuracy" in table.stdout and "horizontal" in table.stdout


def bad_inputs(d):
    three_d = d / "three_d.npy"
    np.save(three_d, np.zeros((4, 8, 8), np.uint16))
    raw = (d / "data.npy").read_bytes()
    (d / "truncated.npy").write_bytes(raw[: len(raw) // 2])
    np.save(d / "det24.npy", np.zeros((3, 4, 24, 24), np.uint16))
    (d / "corrupt.pt").write_bytes(b"not a checkpoint" * 64)
    (d / "short.pt").write_bytes((d / "model.pt").read_bytes()[:200])
    (d / "a_file").write_text("x")
    write_labels(d / "other_truth.csv", [Label(x, y, 0) for y in range(3) for x in range(5)])
    m = d / "model.pt"
    return {
        "missing file": (("predict", d / "nope.npy", "--model", m, "--out", d / "q"), ["nope.npy"]),
        "3-D array": (("predict", three_d, "--model", m, "--out", d / "q"), ["4-D"]),
        "truncated .npy": (("predict", d / "truncated.npy", "--model", m, "--out", d / "q"), ["truncated.npy"]),
        "detector mismatch": (("predict", d / "det24.npy", "--model", m, "--out", d / "q"), ["24", "32"]),
        "corrupted checkpoint": (("predict", d / "data.npy", "--model", d / "corrupt.pt", "--out", d / "q"),
                                 ["corrupt.pt"]),
        "cut checkpoint": (("predict", d / "data.npy", "--model", d / "short.pt", "--out", d / "q"), ["short.pt"]),
        "missing checkpoint": (("predict", d / "data.npy", "--model", d / "none.pt", "--out", d / "q"), ["none.pt"]),
        "output not writable": (("predict", d / "data.npy", "--model", m, "--out", d / "a_file" / "q"), ["a_file"]),
        "truth of another scan": (("evaluate", d / "pred.npy", "--truth", d / "other_truth.csv"), ["5 x 3", "8 x 6"]),
        "missing prediction": (("evaluate", d / "gone.npy", "--truth", d / "truth.csv"), ["gone.npy"]),
        "truncated prediction": (("evaluate", d / "truncated.npy", "--truth", d / "truth.csv"), ["truncated.npy"]),
    }


@pytest.mark.parametrize("case", ["missing file", "3-D array", "truncated .npy", "detector mismatch",
                                  "corrupted checkpoint", "cut checkpoint", "missing checkpoint",
                                  "output not writable", "truth of another scan", "missing prediction",
                                  "truncated prediction"])
def test_bad_input_is_one_line_and_non_zero(files, predicted, case):
    d = files[0]
    args, words = bad_inputs(d)[case]
    assert_one_line_error(run(*args), *words)


def test_demo_pipeline_on_a_small_scan(tmp_path):
    from al4dstem.demo import run_demo

    lines = []
    r = run_demo(tmp_path / "demo", seed=1, budget=24, geometry="bands", nx=24, ny=12, detector=32, epochs=3,
                 n_threads=1, log=lines.append)
    assert len(lines) == 4 and "labelled 24 positions" in lines[1]
    assert r.n_labels == 24 and r.metrics["n_excluded"] == 24
    assert r.metrics["n_evaluated"] + r.metrics["n_excluded"] == 24 * 12
    for path in (r.data, r.truth, r.labels, r.model, *r.outputs.values()):
        assert path.exists(), path
    probs = np.load(r.outputs["probs"])
    assert probs.shape == (12, 24, 3)
    # the reported accuracy is the map's own, on the positions never labelled
    truth = np.full((12, 24), -1)
    for row in read_labels(r.truth):
        truth[row.y, row.x] = row.label
    unlabelled = np.ones((12, 24), bool)
    labelled = {(row.x, row.y) for row in read_labels(r.labels)}
    for x, y in labelled:
        unlabelled[y, x] = False
    assert len(labelled) == 24
    assert r.accuracy == pytest.approx((probs.argmax(-1) == truth)[unlabelled].mean())
    assert r.patterns_per_second > 0
    assert set(r.seconds) == {"simulate", "label", "train", "predict", "write", "evaluate"}

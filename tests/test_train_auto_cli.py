"""`al4dstem train --network auto` and `--neighbourhood` as a user runs them (issue 12)."""

import json

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run

from al4dstem.labels import Label, write_labels
from al4dstem.simulate import simulate_scan


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("auto")
    s = simulate_scan(nx=16, ny=12, detector=64, geometry="tilted", seed=2, rotation=31, ghost_strength=0.03,
                      dose=3e4, threads=1)
    np.save(d / "data.npy", s.data)
    rng = np.random.default_rng(0)
    flat = s.truth.ravel()
    pick = np.concatenate([rng.choice(np.flatnonzero(flat == c), 6, replace=False) for c in range(3)])
    write_labels(d / "labels.csv", [Label(int(i % 16), int(i // 16), int(flat[i])) for i in pick])
    return d, s.truth


def test_auto_prints_every_score_and_keeps_one(files):
    d, truth = files
    p = run("train", d / "data.npy", "--labels", d / "labels.csv", "--out", d / "auto.pt", "--network", "auto",
            "--epochs", "3")
    assert p.returncode == 0, p.stderr
    for name in ("ghost", "ghost 3x3", "ghost 5x5", "softmax", "pca-knn", "default"):
        assert f"  {name} " in p.stdout
    assert "<- kept" in p.stdout and "expected calibration error" in p.stdout and "18 labels" in p.stdout
    q = run("predict", d / "data.npy", "--model", d / "auto.pt", "--out", d / "auto", "--no-figure")
    assert q.returncode == 0, q.stderr
    e = run("evaluate", d / "auto.npy", "--truth", d / "labels.csv", "--json")
    assert json.loads(e.stdout)["accuracy"] >= 0.9  # on its own labels


def test_neighbourhood_is_stored_and_used_by_predict(files):
    d, truth = files
    p = run("train", d / "data.npy", "--labels", d / "labels.csv", "--out", d / "pooled.pt", "--network", "ghost",
            "--neighbourhood", "3")
    assert p.returncode == 0, p.stderr
    assert "3 x 3 neighbourhood" in p.stdout
    q = run("predict", d / "data.npy", "--model", d / "pooled.pt", "--out", d / "pooled", "--no-figure")
    assert q.returncode == 0, q.stderr
    from al4dstem.models import CNNClassifier

    model = CNNClassifier.load(d / "pooled.pt", dataset=d / "data.npy")
    positions = np.array([(x, y) for y in range(12) for x in range(16)])
    mapped = np.load(d / "pooled.npy").reshape(-1, 3)
    assert np.allclose(mapped, model.predict_proba(positions), atol=1e-5)  # predict pooled as the model did


def test_bad_neighbourhood_is_one_line(files):
    d, _ = files
    p = run("train", d / "data.npy", "--labels", d / "labels.csv", "--out", d / "x.pt", "--neighbourhood", "4")
    assert_one_line_error(p, "neighbourhood must be one of")
    assert not (d / "x.pt").exists()

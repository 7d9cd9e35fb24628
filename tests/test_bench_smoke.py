"""The benchmark scripts in --smoke mode (tiny scans, 2 seeds, 2 budgets), so that they cannot rot,
and the metrics they report, on maps where the answer is known."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from al4dstem import benchmarking as bm

ROOT = Path(__file__).resolve().parents[1]


def run_script(name, *args, timeout=300):
    p = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), "--smoke", *map(str, args)],
                       capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def test_table1_smoke_writes_every_output(tmp_path):
    out = tmp_path / "table1"
    run_script("bench_table1.py", "--out", out)
    data = json.loads(out.with_suffix(".json").read_text())
    assert len(data["seeds"]) == 2 and data["provenance"]["master_seed"] == 2026
    assert set(data["provenance"]["versions"]) >= {"numpy", "torch", "al4dstem"}
    acc = data["tables"]["accuracy"]
    assert set(acc) == set(bm.SAMPLERS)
    for sampler in bm.SAMPLERS:
        for budget in ("10", "20"):
            assert acc[sampler][budget]["n"] == 2 and 0 <= acc[sampler][budget]["mean"] <= 1
    assert set(data["baselines"]["random"]) == set(bm.BASELINES)
    text = out.with_suffix(".md").read_text()
    assert "paper's CNN, binary" in text and "The paper's network" in text
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    raw = sorted((tmp_path / "table1-raw").glob("*.json"))
    assert len(raw) == 2  # every job kept as it finished: a rerun of the command resumes from them


def test_curves_smoke_reports_aulc_speedup_and_baselines(tmp_path):
    out = tmp_path / "curves"
    run_script("bench_curves.py", "--out", out, "--scenarios", "tilted@faint-rotated", "--samplers", "grid-midpoint",
               "random", "uncertainty")
    data = json.loads(out.with_suffix(".json").read_text())
    entry = data["scenarios"]["tilted@faint-rotated"]
    assert set(entry["summary"]) == {"grid-midpoint", "random", "uncertainty"}
    assert set(entry["tables"]) == {"accuracy", "balanced_accuracy", "none_recall", "none_f1", "wall_error"}
    assert "AULC" in out.with_suffix(".md").read_text()


def test_metrics_on_known_maps():
    truth = np.zeros((10, 20), dtype=np.int64)
    truth[:4], truth[6:] = 1, 2
    test = np.ones_like(truth, dtype=bool)
    perfect = bm.scores(truth, truth, test)
    assert perfect["accuracy"] == perfect["balanced_accuracy"] == perfect["none_f1"] == 1 and perfect["wall_error"] == 0
    shifted = np.zeros_like(truth)
    shifted[:5], shifted[7:] = 1, 2  # both walls one row lower
    s = bm.scores(shifted, truth, test)
    assert s["wall_error"] == pytest.approx(1.0)
    assert s["accuracy"] == pytest.approx(1 - 40 / 200)
    no_walls = bm.scores(np.ones_like(truth), truth, test)
    assert no_walls["none_recall"] == 0 and no_walls["wall_error"] > 10
    assert bm.aulc([10, 100], [0.5, 1.0]) == pytest.approx(0.75)
    assert bm.labels_to_reach([10, 20, 40], [0.8, 0.9, 0.95], 0.85) == pytest.approx(15)
    assert bm.labels_to_reach([10, 20], [0.8, 0.9], 0.99) is None
    assert bm.labels_to_reach([5, 10, 20], [float("nan"), 0.8, 0.9], 0.85) == pytest.approx(15)
    assert bm.wilcoxon_p([1, 2, 3], [1, 2, 3]) == 1.0
    assert bm.wilcoxon_p(np.arange(10) + 1.0, np.zeros(10)) < 0.01
    m, ci = bm.mean_ci([0.9, 0.92, 0.94])
    assert m == pytest.approx(0.92) and 0.04 < ci < 0.06


def test_two_cut_rule_and_cluster_naming():
    y = np.array([0, 1, 2, 5, 6, 9, 10, 11])
    classes = np.array([1, 1, 1, 0, 0, 2, 2, 2])
    rule = bm.two_cut_rule(y, classes, 12)
    assert rule[:3].tolist() == [1, 1, 1] and rule[5:7].tolist() == [0, 0] and rule[-2:].tolist() == [2, 2]
    clusters = np.array([0, 0, 1, 1, 2, 2])
    pca = np.array([[0.0], [0.1], [5.0], [5.1], [0.2], [0.3]])
    named = bm.name_clusters(clusters, np.array([0, 2]), np.array([1, 2]), pca)
    assert named.tolist() == [1, 1, 2, 2, 1, 1]  # the unlabelled cluster 2 is nearest cluster 0


def test_paper_scan_follows_the_real_walls():
    scan = bm.paper_scan(seed=3, detector=32)
    assert scan.shape == bm.PAPER_SCAN and scan.data.shape[:2] == bm.PAPER_SCAN
    top, bottom = bm.paper_walls()
    for x in (0, 100, 205):
        column = scan.truth[:, x]
        first_none = int(np.flatnonzero(column == 0)[0])
        first_horizontal = int(np.flatnonzero(column == 2)[0])
        assert abs(first_none - top[x]) <= 1 and abs(first_horizontal - bottom[x]) <= 1
        assert (column[:first_none] == 1).all()

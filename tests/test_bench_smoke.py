"""The benchmark scripts in --smoke mode (tiny scans, 2 seeds, 2 budgets), so that they cannot rot,
and the metrics they report, on maps where the answer is known."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error
from cli_helpers import run as cli
from hypothesis import given, settings
from hypothesis import strategies as st

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
            cell = acc[sampler][budget]
            assert cell["n"] == 2 and cell["mean"] == pytest.approx(np.mean(cell["values"]))
    assert set(data["baselines"]["random"]) == set(bm.BASELINES)
    text = out.with_suffix(".md").read_text()
    assert "paper's CNN, binary" in text and "The paper's network" in text
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    raw = sorted((tmp_path / "table1-raw").glob("*.json"))
    assert len(raw) == 2  # every job kept as it finished: a rerun of the command resumes from them
    jobs = [json.loads(path.read_text()) for path in raw]
    for sampler in bm.SAMPLERS:  # the table's values are the jobs' own CNN accuracies, seed by seed
        kept = sorted(job["results"][sampler]["20"]["cnn"]["accuracy"] for job in jobs)
        assert sorted(acc[sampler]["20"]["values"]) == pytest.approx(kept)
    stamps = [path.stat().st_mtime_ns for path in raw]

    # the same seeds with a human-like oracle, beside the perfect oracle's jobs just kept
    human = tmp_path / "human"
    run_script("bench_table1.py", "--out", human, "--oracle", "human:0.2", "--reference", out)
    assert [path.stat().st_mtime_ns for path in raw] == stamps  # the reference jobs were read, not rerun
    data = json.loads(human.with_suffix(".json").read_text())
    comparison = data["oracle_comparison"]
    assert comparison["seeds"] == sorted(data["seeds"]) and comparison["oracle"] == "human:0.2"
    rows = [comparison["table"][s][b] for s in bm.SAMPLERS for b in ("10", "20")]
    for sampler in bm.SAMPLERS:  # the perfect side is the truth run's figures, seed for seed
        assert comparison["table"][sampler]["20"]["accuracy"]["perfect"][0] == pytest.approx(acc[sampler]["20"]["mean"])
    assert max(row["wrong_label_share"][0] for row in rows) > 0  # a 20 % oracle errs somewhere
    assert "Perfect oracle vs human:0.2" in human.with_suffix(".md").read_text()


def test_curves_smoke_reports_aulc_speedup_and_baselines(tmp_path):
    out = tmp_path / "curves"
    run_script("bench_curves.py", "--out", out, "--scenarios", "tilted@faint-rotated", "stripes", "--samplers",
               "grid-midpoint", "random", "uncertainty", "--model-driven-on", "tilted@faint-rotated")
    raw = sorted(path.name for path in (tmp_path / "curves-raw").glob("*.json"))
    assert len(raw) == 6 and sum("uncertainty" in name for name in raw) == 2  # model-driven jobs apart, one scan
    data = json.loads(out.with_suffix(".json").read_text())
    entry = data["scenarios"]["tilted@faint-rotated"]
    assert set(entry["summary"]) == {"grid-midpoint", "random", "uncertainty"}  # the jobs of one seed joined
    assert set(data["scenarios"]["stripes"]["summary"]) == {"grid-midpoint", "random"}
    assert set(entry["tables"]) == {"accuracy", "balanced_accuracy", "none_recall", "none_f1", "wall_error",
                                    "none_label_share"}
    share = entry["tables"]["none_label_share"]["random"]["20"]
    assert share["n"] == 2 and all(0 < v < 1 for v in share["values"])  # 20 random labels hold some walls
    assert entry["tables"]["accuracy"]["uncertainty"]["20"]["n"] == 2
    assert set(data["grid_minus_random"]) == {"tilted@faint-rotated", "stripes"}
    text = out.with_suffix(".md").read_text()
    assert "AULC" in text and "Grid-midpoint minus random" in text


def test_class_weight_smoke_scores_every_weighting(tmp_path):
    out = tmp_path / "cw.json"
    p = run_script("bench_class_weight.py", "--scenarios", "stripes", "--samplers", "random", "--seeds", "3",
                   "--budgets", "12", "24", "--out", out)
    job = json.loads(out.read_text())["jobs"][0]
    assert (job["scenario"], job["sampler"], job["seed"]) == ("stripes", "random", 3)
    assert sorted(job["budgets"], key=int) == ["12", "24"]
    for n, entry in job["budgets"].items():
        assert sum(entry["label_counts"]) == int(n)
        for key in ("balanced", "None", "scan"):  # every weighting fitted and scored (2 epochs: scores are noise)
            assert {"accuracy", "balanced_accuracy", "none_recall", "none_f1"} <= set(entry[key]), (key, entry[key])
        assert sum(entry["scan_estimate"]) == pytest.approx(1.0, abs=1e-3)
    report = out.with_suffix(".md").read_text()
    assert "| stripes | random | 3 | 24 |" in report and "balanced / none / scan" in report
    assert "stripes random seed 3 24 labels" in p.stdout


@settings(max_examples=30, deadline=None)
@given(master=st.integers(0, 2**32 - 1), n=st.integers(0, 25), more=st.integers(0, 10))
def test_a_longer_seed_list_starts_with_a_shorter_one(master, n, more):
    """So ``--seeds 5`` then ``--seeds 10`` resumes with the first run's jobs (paired, no repeats)."""
    short, long = bm.seeds_from(master, n), bm.seeds_from(master, n + more)
    assert long[:n] == short and len(long) == n + more == len(set(long))
    assert all(0 <= s < 2**31 - 1 for s in long)


def test_the_first_ten_seeds_are_those_of_the_committed_results():
    """The jobs in benchmarks/results/*-raw were run with these seeds: a new list must keep them."""
    for master in (2026, 2027):
        drawn = np.random.default_rng(master).choice(2**31 - 1, 10, replace=False)
        assert bm.seeds_from(master, 10) == [int(s) for s in drawn]
    assert bm.seeds_from(2027, 4) == [611780518, 1069235512, 17191594, 1971706719]


def test_collect_pairs_samplers_run_on_some_seeds_only():
    def job(seed, sampler, accuracy):
        return {"scenario": "s", "seed": seed, "results": {sampler: {"10": {"cnn": {"accuracy": accuracy}}}},
                "cnn_fits": 1, "cnn_fit_seconds": 1.0, "seconds": 2.0}

    results = [job(2, "random", 0.8), job(1, "random", 0.7), job(2, "uncertainty", 0.9)]
    acc = bm.collect(results)["s"]
    assert acc["random"][10] == [0.7, 0.8]  # in seed order
    assert np.isnan(acc["uncertainty"][10][0]) and acc["uncertainty"][10][1] == 0.9  # seed 1 never ran it
    merged = bm.merge_jobs(results)
    assert [r["seed"] for r in merged] == [1, 2] and set(merged[1]["results"]) == {"random", "uncertainty"}
    assert merged[1]["cnn_fits"] == 2
    assert bm.wilcoxon_p(acc["uncertainty"][10], acc["random"][10]) == 1.0  # one pair left: no test


def test_label_share_is_each_seed_s_share_of_one_class():
    def job(seed, sampler, counts):
        return {"scenario": "s", "seed": seed, "cnn_fits": 1, "cnn_fit_seconds": 1.0, "seconds": 2.0,
                "results": {sampler: {"10": {"label_counts": counts, "cnn": {"accuracy": 0.9}}}}}

    results = [job(1, "uncertainty", [8, 1, 1]), job(2, "uncertainty", [2, 4, 4]), job(1, "random", [0, 0, 0])]
    share = bm.collect(results, "labels", "none")["s"]
    assert share["uncertainty"][10] == [0.8, 0.2]  # none is the first of the label counts
    assert bm.collect(results, "labels", "horizontal")["s"]["uncertainty"][10] == [0.1, 0.4]
    assert np.isnan(share["random"][10]).all()  # no labels counted: no share, not 0


def test_speed_up_compares_a_sampler_with_random_on_the_seeds_it_ran():
    def job(seed, sampler, curve):
        scores = {str(b): {"cnn": {"accuracy": a}} for b, a in zip((10, 20, 40), curve, strict=True)}
        return {"scenario": "s", "seed": seed, "cnn_fits": 1, "cnn_fit_seconds": 1.0, "seconds": 2.0,
                "results": {sampler: scores}}

    # random reaches 0.90 at 40 labels on seed 1 and 0.70 on seed 2; uncertainty ran on seed 1 only
    results = [job(1, "random", (0.80, 0.85, 0.90)), job(2, "random", (0.60, 0.65, 0.70)),
               job(1, "uncertainty", (0.85, 0.90, 0.92))]
    summary = bm._curve_summary(results, "s", [10, 20, 40], ["random", "uncertainty"])
    # against random's 0.90 on seed 1 (not the 0.80 of both seeds, which it passes at once): 20 labels
    assert summary["uncertainty"]["labels_to_random_top"] == pytest.approx(20)
    assert summary["uncertainty"]["speedup"] == pytest.approx(2.0)
    assert summary["random"]["labels_to_random_top"] == pytest.approx(40)


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


def test_cli_runs_a_benchmark_through_the_library_and_refuses_bad_input(tmp_path):
    out = tmp_path / "curves"
    p = cli("benchmark", "curves", "--smoke", "--scenarios", "stripes", "--samplers", "grid-midpoint,random",
            "--out", out)
    assert p.returncode == 0, p.stderr
    data = json.loads(out.with_suffix(".json").read_text())
    assert set(data["scenarios"]) == {"stripes"} and set(data["scenarios"]["stripes"]["summary"]) == {"grid-midpoint",
                                                                                                       "random"}
    assert "written:" in p.stdout
    assert_one_line_error(cli("benchmark", "tabel1"), "tabel1", "table1, curves")
    assert_one_line_error(cli("benchmark", "table1", "--oracle", "human:2", "--out", tmp_path / "t"), "oracle")
    assert_one_line_error(cli("benchmark", "curves", "--samplers", "nope", "--out", tmp_path / "t"), "nope")
    assert_one_line_error(cli("benchmark", "curves", "--budgets", "5,ten", "--out", tmp_path / "t"), "budgets")
    assert_one_line_error(cli("benchmark", "table1", "--report-only", "--out", tmp_path / "none"), "no finished jobs")
    assert not (tmp_path / "t-raw").exists()  # refused before any job ran

"""The difficulty benchmark's re-selection and tie-break tables (``benchmarks/bench_difficulty.py``), on
made-up runs whose answer is known: they are the evidence for ``selection.choose``, so they must not rot."""

import importlib.util
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_difficulty", ROOT / "benchmarks" / "bench_difficulty.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(acc, bal=None):
    return {"cv_accuracy": acc, "cv_balanced_accuracy": acc if bal is None else bal, "cv_log_loss": 0.1,
            "seconds": 1.0}


def scores(acc, ece=0.05):
    return {"accuracy": acc, "recall": [acc, acc, acc], "boundary_accuracy": acc, "interior_accuracy": acc,
            "ece": ece, "ece_raw": 2 * ece, "seconds": 2.0}


def a_run(seed, cv, kept):
    models = {"ghost": scores(0.98), "ghost 3x3": scores(0.99), "ghost 5x5": scores(0.97), "softmax": scores(0.9),
              "softmax 3x3": scores(0.95), "pca-knn": scores(0.8)}
    models["auto"] = {**models[kept], "kept": kept, "reason": "x", "seconds": 5.0, "cv": cv}
    return {"rung": "faint-45", "budget": 50, "seed": seed, "models": models}


def test_unpooled_first_and_today_differ_only_on_ties(bench):
    from al4dstem.models.selection import POOLED_CANDIDATES, choose

    tied = {n: row(1.0) for n in ("ghost", "ghost 3x3", "ghost 5x5")}
    assert bench.unpooled_first(tied, POOLED_CANDIDATES) == "ghost"
    assert choose(tied, {}, POOLED_CANDIDATES)[0] == "ghost 3x3"
    clear = {"ghost": row(0.9), "ghost 3x3": row(0.92), "ghost 5x5": row(1.0)}
    assert bench.unpooled_first(clear, POOLED_CANDIDATES) == choose(clear, {}, POOLED_CANDIDATES)[0] == "ghost 5x5"
    assert bench.unpooled_first({"ghost": {"cv_accuracy": math.nan}}, POOLED_CANDIDATES) is None


def test_reselect_gives_auto_the_scores_of_the_model_kept_now(bench):
    tied = {n: row(1.0) for n in ("ghost", "ghost 3x3", "ghost 5x5")}
    run = a_run(0, tied, kept="ghost")
    assert bench.reselect(run)
    auto = run["models"]["auto"]
    assert auto["kept"] == "ghost 3x3" and auto["reselected"] and auto["accuracy"] == 0.99
    assert auto["ece_raw"] == run["models"]["ghost 3x3"]["ece_raw"] and math.isnan(auto["ece"])
    assert auto["seconds"] == pytest.approx(5.0 - 2.0 + 2.0)
    assert not bench.reselect(run)  # already what today's rule keeps
    same = a_run(1, {"ghost": row(1.0), "ghost 3x3": row(0.9)}, kept="ghost")
    assert not bench.reselect(same) and same["models"]["auto"]["ece"] == 0.05


def test_tiebreak_table_reports_both_rules_against_the_best_baseline(bench):
    tied = {n: row(1.0) for n in ("ghost", "ghost 3x3", "ghost 5x5")}
    runs = [a_run(s, tied, kept="ghost") for s in range(3)]
    lines = bench.tiebreaks(runs, ["faint-45"], [50])
    table = [line for line in lines if line.startswith("| faint-45")]
    assert table == ["| faint-45 | 50 | 0.980 ± 0.000 | 0.990 ± 0.000 | ghost 3x3 0.990 ± 0.000 | 3 |"]
    # beside runs of "auto baselines", a full auto's cross-validation counts as theirs (baselines only)
    runs[0]["models"]["auto baselines"] = {**runs[0]["models"]["auto"], "cv": {"ghost": row(1.0)}}
    lines = bench.tiebreaks(runs, ["faint-45"], [50])
    assert sum(line.startswith("## Tie-breaks of `auto baselines`") for line in lines) == 1
    table = [line for line in lines if line.startswith("| faint-45")]
    assert table[1] == "| faint-45 | 50 | 0.980 ± 0.000 | 0.987 ± 0.006 | ghost 3x3 0.990 ± 0.000 | 3 |"

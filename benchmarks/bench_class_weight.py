"""Class weighting against the label mix: each sampler's labels refitted with and without weights.

    python benchmarks/bench_class_weight.py [--scenarios stripes needles]
        [--samplers uncertainty random grid-midpoint] [--seeds 1069235512 17191594]
        [--budgets 50 250] [--out benchmarks/results/class-weight.json]

For every scan (``al4dstem.benchmarking`` scenarios), sampler and seed it labels the scan with
the benchmarks' own loop (``benchmarking.active_learning_run``: the same test positions, oracle
and in-loop CNN as the learning curves), keeps the labels at each budget, and fits the default
CNN on them twice: ``class_weight="balanced"`` (the default) and ``None``. It prints one line
per fit (the label counts in the order none, vertical, horizontal, then accuracy, balanced
accuracy, `none` recall and F1 on the held-out test set) and writes every figure to ``--out``
(JSON, one entry per job) with the machine and versions.

Why: uncertainty sampling asks mostly for wall patterns, and balancing the classes then weighs
the walls down (README, Evidence). A grid-midpoint run is one run to the largest budget: its
smaller budgets are that grid's first labels, not the grid it would draw for that budget.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from al4dstem import benchmarking as bm  # noqa: E402

WEIGHTINGS = ("balanced", None)


def run(scenario: str, sampler: str, seed: int, budgets: tuple[int, ...], detector: int = 64) -> dict:
    """Label with ``sampler`` up to ``max(budgets)``; score both weightings at each budget."""
    import torch

    from al4dstem.data import open_dataset
    from al4dstem.models import CNNClassifier

    torch.set_num_threads(1)
    spec = bm.JobSpec(scenario, seed, (sampler,), budgets, "default", detector, "truth", baselines=False)
    scan = bm.make_scan(scenario, seed, detector)
    test = bm.split_test(scan.shape, seed, bm.TEST_SIZE)
    oracle = bm.make_oracle("truth", scan.truth, seed)
    ds = open_dataset(scan.data)
    rows, cols = scan.shape
    ys, xs = np.mgrid[0:rows, 0:cols]
    every = np.column_stack([xs.ravel(), ys.ravel()]).astype(np.int64)

    def fit(positions, classes, network="default", class_weight="balanced"):
        model = CNNClassifier(network=network, dataset=ds, random_state=seed, n_threads=1, class_weight=class_weight)
        return model.fit(positions, classes)

    kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def keep(positions, classes, model=None, network="default"):
        kept[len(classes)] = (positions.copy(), classes.copy())
        return {}

    started = time.perf_counter()
    bm.active_learning_run(sampler, spec, scan, test, oracle, budgets, fit, keep)
    out = {"scenario": scenario, "sampler": sampler, "seed": seed, "label_seconds": time.perf_counter() - started,
           "budgets": {}}
    for n, (positions, classes) in sorted(kept.items()):
        entry = out["budgets"][str(n)] = {"label_counts": np.bincount(classes, minlength=3).tolist()}
        for weighting in WEIGHTINGS:
            model = fit(positions, classes, class_weight=weighting)
            pred = np.asarray(model.predict(every)).reshape(scan.shape)
            entry[str(weighting)] = {k: float(v) for k, v in bm.scores(pred, scan.truth, test).items()}
    return out


def line(job: dict, n: str) -> str:
    entry = job["budgets"][n]
    cells = [f"{w}: acc {entry[str(w)]['accuracy']:.3f} bal {entry[str(w)]['balanced_accuracy']:.3f} "
             f"none recall {entry[str(w)]['none_recall']:.3f} F1 {entry[str(w)]['none_f1']:.3f}" for w in WEIGHTINGS]
    head = f"{job['scenario']} {job['sampler']} seed {job['seed']} {n} labels {entry['label_counts']}: "
    return head + " | ".join(cells)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", nargs="+", default=["stripes", "needles"])
    ap.add_argument("--samplers", nargs="+", default=["uncertainty", "random", "grid-midpoint"])
    ap.add_argument("--seeds", nargs="+", type=int, default=bm.seeds_from(2027, 3)[1:])
    ap.add_argument("--budgets", nargs="+", type=int, default=[50, 250])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "class-weight.json")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    jobs = []
    for scenario in args.scenarios:
        for sampler in args.samplers:
            for seed in args.seeds:
                job = run(scenario, sampler, seed, tuple(sorted(args.budgets)))
                jobs.append(job)
                for n in job["budgets"]:
                    print(line(job, n), flush=True)
    record = {"provenance": bm.provenance(vars(args) | {"out": str(args.out)}, 2027), "jobs": jobs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Class weighting against the label mix: each sampler's labels refitted with each class weighting.

    python benchmarks/bench_class_weight.py [--scenarios stripes needles]
        [--samplers uncertainty random grid-midpoint] [--seeds 1069235512 17191594]
        [--budgets 50 250] [--weightings balanced none scan] [--jobs 2]
        [--out benchmarks/results/class-weight.json]

For every scan (``al4dstem.benchmarking`` scenarios), sampler and seed it labels the scan with
the benchmarks' own loop (``benchmarking.active_learning_run``: the same test positions, oracle
and in-loop CNN as the learning curves), keeps the labels at each budget, and fits the default
CNN on them once per class weighting: ``balanced`` (the default: each class weighs the same, by
the label counts), ``none`` (each label once) and ``scan`` (each label once, then the logits
offset so the classes count equally over the scan's own shares, as the model estimates them).
It prints one line per fit (the label counts in the order none, vertical, horizontal, then
accuracy, balanced accuracy, `none` recall and F1 on the held-out test set) and writes every
figure to ``--out`` (JSON, one entry per job) with the machine and versions.

Why: uncertainty sampling asks mostly for wall patterns, and balancing the classes by the label
counts then weighs the walls down (README, Evidence). A grid-midpoint run is one run to the
largest budget: its smaller budgets are that grid's first labels, not the grid it would draw
for that budget.
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

WEIGHTINGS = ("balanced", "none", "scan")


def run(scenario: str, sampler: str, seed: int, budgets: tuple[int, ...], detector: int = 64,
        weightings: tuple[str, ...] = WEIGHTINGS, smoke: bool = False, loop_weighting: str = "balanced") -> dict:
    """Label with ``sampler`` up to ``max(budgets)``; score each weighting at each budget.

    ``smoke``: the benchmarks' tiny scan and 2 epochs per fit (the tests run it so the script cannot rot).
    ``loop_weighting``: the class weighting of the in-loop CNN, whose probabilities uncertainty sampling
    ranks by (the curves' loop: balanced)."""
    import torch

    from al4dstem.models import CNNClassifier

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    spec = bm.JobSpec(scenario, seed, (sampler,), budgets, "default", detector, "truth", baselines=False,
                      smoke=smoke)
    setting = bm.job_setting(spec)
    scan, test = setting.scan, setting.test

    def fit(positions, classes, network="default", class_weight=loop_weighting):
        model = CNNClassifier(network=network, dataset=setting.dataset, random_state=seed, n_threads=1,
                              epochs=2 if smoke else None,
                              class_weight=None if class_weight == "none" else class_weight)
        return model.fit(positions, classes)

    kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def keep(positions, classes, model=None, network="default"):
        kept[len(classes)] = (positions.copy(), classes.copy())
        return {}

    started = time.perf_counter()
    bm.active_learning_run(sampler, spec, scan, test, setting.oracle, budgets, fit, keep)
    out = {"scenario": scenario, "sampler": sampler, "seed": seed, "loop_weighting": loop_weighting,
           "label_seconds": time.perf_counter() - started,
           "class_shares": (np.bincount(scan.truth.ravel(), minlength=3) / scan.truth.size).tolist(), "budgets": {}}
    for n, (positions, classes) in sorted(kept.items()):
        entry = out["budgets"][str(n)] = {"label_counts": np.bincount(classes, minlength=3).tolist()}
        for weighting in weightings:
            model = fit(positions, classes, class_weight=weighting)
            pred = np.asarray(model.predict(setting.every)).reshape(scan.shape)
            entry[_key(weighting)] = {k: float(v) for k, v in bm.scores(pred, scan.truth, test).items()}
            if weighting == "scan":
                entry["scan_estimate"] = list(model.summary_["class_shares"]["shares"].values())
    return out


def _key(weighting: str) -> str:
    return "None" if weighting == "none" else weighting  # the key earlier runs wrote for no weighting


def _run(task: tuple) -> dict:
    return run(*task)


def line(job: dict, n: str) -> str:
    entry = job["budgets"][n]
    cells = [f"{w}: acc {entry[_key(w)]['accuracy']:.3f} bal {entry[_key(w)]['balanced_accuracy']:.3f} "
             f"none recall {entry[_key(w)]['none_recall']:.3f} F1 {entry[_key(w)]['none_f1']:.3f}"
             for w in WEIGHTINGS if _key(w) in entry]
    head = f"{job['scenario']} {job['sampler']} seed {job['seed']} {n} labels {entry['label_counts']}: "
    return head + " | ".join(cells)


METRICS = (("balanced_accuracy", "balanced accuracy"), ("none_recall", "`none` recall"), ("accuracy", "accuracy"))


def _span(values) -> str:
    return f"{100 * min(values):.1f}-{100 * max(values):.1f}" if values else "-"


def _at_least(entries, other: str) -> str:
    """"K of N": jobs whose ``scan`` fit has a balanced accuracy at least that of ``other``'s."""
    pairs = [(e["scan"]["balanced_accuracy"], e[_key(other)]["balanced_accuracy"]) for _, e in entries
             if "scan" in e and _key(other) in e]
    return f"{sum(a >= b for a, b in pairs)} of {len(pairs)}"


def report(record: dict) -> str:
    """Markdown: per sampler and budget, each weighting's range and mean over the jobs, how often
    ``scan`` did at least as well as each other weighting; then every job."""
    jobs = record["jobs"]
    weightings = [w for w in WEIGHTINGS if any(_key(w) in e for j in jobs for e in j["budgets"].values())]
    prov = record["provenance"]
    lines = ["# Class weighting against the label mix", "",
             "Each sampler's labels (the learning curves' own loop, default CNN in the loop, perfect oracle) refitted "
             "with each class weighting of `al4dstem train --class-weight`: `balanced` (`CNNClassifier`'s default; "
             "each class weighs the same, by the label counts), `none` (each label once), `scan` (`train`'s "
             "default: each label once, then the logits offset by the scan's own class shares as the model "
             "estimates them, so the classes count equally over the scan). Test set: 1,000 held-out positions. "
             "Grid-midpoint is one run towards the "
             "largest budget, which stops short when its grid is done (its row is then its last label count).", "",
             bm.provenance_markdown(prov), ""] + [f"Note: {note}" for note in record.get("notes", [])] + [""]
    loops = sorted({j.get("loop_weighting", "balanced") for j in jobs})
    lines += [f"In-loop CNN (whose probabilities uncertainty sampling ranks by): class weighting {', '.join(loops)}.",
              ""]
    samplers = list(dict.fromkeys(j["sampler"] for j in jobs))
    n_budgets = min(len(j["budgets"]) for j in jobs)  # the k-th budget of every job (grid-midpoint may stop short)
    for which in range(n_budgets):
        title = "the largest budget" if which == n_budgets - 1 else f"budget {which + 1} of {n_budgets}"
        lines += [f"## At {title}", "", "Range over the jobs (mean). Last column: jobs where `scan` is at least as "
                  "good as `balanced` / as `none`, by balanced accuracy.", "",
                  "| sampler | labels | jobs | " + " | ".join(f"{label}: " + " / ".join(weightings)
                                                          for _, label in METRICS) + " | scan >= balanced / none |",
                  "|" + "---|" * (4 + len(METRICS))]
        for sampler in samplers:
            entries = [sorted(j["budgets"].items(), key=lambda kv: int(kv[0]))[which - n_budgets] for j in jobs
                       if j["sampler"] == sampler]
            cells = []
            for metric, _ in METRICS:
                parts = []
                for w in weightings:
                    values = [e[_key(w)][metric] for _, e in entries if _key(w) in e]
                    parts.append(f"{_span(values)} ({100 * np.mean(values):.1f})" if values else "-")
                cells.append(" / ".join(parts))
            wins = " / ".join(_at_least(entries, w) for w in weightings if w != "scan") if "scan" in weightings else "-"
            labels = sorted({int(n) for n, _ in entries})
            lines.append(f"| {sampler} | {labels[0]}-{labels[-1]} | {len(entries)} | " + " | ".join(cells)
                         + f" | {wins} |")
        lines.append("")
    lines += ["## Every job", "",
              "Label counts and the scan's estimate of its own shares: none, vertical, horizontal. Cells: "
              + " / ".join(weightings) + ", in %.", "",
              "| scan | sampler | seed | labels | label counts | true shares | scan's estimate | balanced accuracy "
              "| `none` recall | accuracy |", "|---|---|---|---|---|---|---|---|---|---|"]
    for j in jobs:
        truth = "[" + ", ".join(f"{v:.2f}" for v in j.get("class_shares", [])) + "]"
        for n, e in sorted(j["budgets"].items(), key=lambda kv: int(kv[0])):
            estimate = "[" + ", ".join(f"{v:.2f}" for v in e.get("scan_estimate", [])) + "]"
            cells = [" / ".join(f"{100 * e[_key(w)][m]:.1f}" if _key(w) in e else "-" for w in weightings)
                     for m, _ in METRICS]
            lines.append(f"| {j['scenario']} | {j['sampler']} | {j['seed']} | {n} | {e['label_counts']} | {truth} | "
                         f"{estimate} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", nargs="+", default=["stripes", "needles"])
    ap.add_argument("--samplers", nargs="+", default=["uncertainty", "random", "grid-midpoint"])
    ap.add_argument("--seeds", nargs="+", type=int, default=bm.seeds_from(2027, 3)[1:])
    ap.add_argument("--budgets", nargs="+", type=int, default=[50, 250])
    ap.add_argument("--weightings", nargs="+", default=list(WEIGHTINGS), choices=WEIGHTINGS)
    ap.add_argument("--jobs", type=int, default=1, help="processes (each job runs on one thread)")
    ap.add_argument("--loop-weighting", default="balanced", choices=WEIGHTINGS,
                    help="class weighting of the in-loop CNN (uncertainty sampling ranks by its probabilities)")
    ap.add_argument("--smoke", action="store_true", help="tiny scan, 2 epochs per fit (a test of the script)")
    ap.add_argument("--report-only", action="store_true", help="only write --out's markdown report (.md beside it)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "class-weight.json")
    args = ap.parse_args(argv)
    if args.report_only:
        args.out.with_suffix(".md").write_text(report(json.loads(args.out.read_text())))
        print(f"written: {args.out.with_suffix('.md')}")
        return 0
    tasks = [(scenario, sampler, seed, tuple(sorted(args.budgets)), 64, tuple(args.weightings), args.smoke,
              args.loop_weighting)
             for scenario in args.scenarios for sampler in args.samplers for seed in args.seeds]
    record = {"provenance": bm.provenance(vars(args) | {"out": str(args.out)}, 2027), "jobs": []}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pool = None
    if args.jobs > 1:
        import multiprocessing as mp

        pool = mp.get_context("spawn").Pool(args.jobs, maxtasksperchild=1)
    try:
        for job in (pool.imap(_run, tasks) if pool else map(_run, tasks)):
            record["jobs"].append(job)
            for n in job["budgets"]:
                print(line(job, n), flush=True)
            tmp = args.out.with_suffix(".tmp")  # after every job: a stopped run keeps what it measured
            tmp.write_text(json.dumps(record, indent=1))
            tmp.replace(args.out)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    args.out.with_suffix(".md").write_text(report(record))
    print(f"written: {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Learning curves from 5 to 250 labels with the CNN in the loop, per sampler and scan, paired over seeds.

    python benchmarks/bench_curves.py [--scenarios paper tilted bullseye needles stripes bullseye@faint-rotated]
        [--seeds 3] [--master-seed 2027] [--jobs 2] [--budgets 5 10 15 20 30 50 100 250]
        [--samplers grid-midpoint random uncertainty hybrid] [--oracle truth | human:0.03]
        [--detector 64] [--smoke] [--out benchmarks/results/curves]

Scenarios: ``paper`` (the 206 x 34 scan with the real map's walls), a geometry of the simulator
on a 72 x 56 scan (``tilted``, ``bullseye``, ``needles``, ``stripes``), or ``GEOMETRY@RUNG`` on
a rung of ``al4dstem.simulate.DIFFICULTY_LADDER`` (``bullseye@faint-rotated``: faint ghosts, a
lattice at 31 degrees). Per scenario and sampler: accuracy, balanced accuracy, ``none`` recall
and F1, wall position error at every budget (mean +- 95 % CI over seeds), a paired Wilcoxon test
against random at each budget, the area under the accuracy curve (over log labels), the labels
needed to reach random's accuracy at the largest budget (and the speed-up that means), the
smallest budget at which the CNN reaches 99 % of its own accuracy at the largest budget, and
where the CNN beats each baseline fitted on the same labels.

Writes ``OUT.md``, ``OUT.json``, ``OUT.png`` and every job in ``OUT-raw/`` (a rerun resumes).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from al4dstem import benchmarking as bm  # noqa: E402

SCENARIOS = ("paper", "tilted", "bullseye", "needles", "stripes", "bullseye@faint-rotated")
METRICS = (("accuracy", "accuracy (%)", 100.0), ("balanced_accuracy", "balanced accuracy (%)", 100.0),
           ("none_recall", "recall of none (%)", 100.0), ("none_f1", "F1 of none (%)", 100.0),
           ("wall_error", "wall position error (scan pixels)", 1.0))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", nargs="+", default=list(SCENARIOS))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--master-seed", type=int, default=2027)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--budgets", nargs="+", type=int, default=list(bm.CURVE_BUDGETS))
    ap.add_argument("--samplers", nargs="+", default=list(bm.SAMPLERS))
    ap.add_argument("--oracle", default="truth")
    ap.add_argument("--detector", type=int, default=64)
    ap.add_argument("--network", default="default")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "curves")
    ap.add_argument("--note", default="", help="a line added to the report (e.g. how the jobs were run)")
    ap.add_argument("--report-only", action="store_true",
                    help="write the report from the jobs already finished in OUT-raw/, run none")
    ap.add_argument("--smoke", action="store_true", help="tiny scans, 2 seeds, 2 budgets: checks the code runs")
    args = ap.parse_args(argv)
    if args.smoke:
        args.seeds, args.budgets = 2, [10, 20]
        args.scenarios = args.scenarios[:2] if args.scenarios != list(SCENARIOS) else ["paper", "tilted@faint-rotated"]
    if args.seeds < 1 or args.jobs < 1 or min(args.budgets) < 5:
        ap.error("--seeds and --jobs must be >= 1, budgets >= 5")
    seeds = bm.seeds_from(args.master_seed, args.seeds)
    specs = [bm.JobSpec(s, seed, tuple(args.samplers), tuple(sorted(args.budgets)), args.network, args.detector,
                        args.oracle, smoke=args.smoke) for seed in seeds for s in args.scenarios]
    prov = bm.provenance({k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, args.master_seed)
    start = time.perf_counter()
    print(f"{len(args.scenarios)} scenarios x {len(seeds)} seeds, samplers {args.samplers}, budgets {args.budgets}, "
          f"jobs {args.jobs}", flush=True)
    raw_dir = args.out.parent / f"{args.out.name}-raw"
    if args.report_only:
        specs = [s for s in specs if bm._raw_path(raw_dir, s).exists()]
        if not specs:
            ap.error(f"no finished jobs in {raw_dir}")
    results = bm.run_jobs(specs, args.jobs, raw_dir=raw_dir, log=lambda m: print(m, flush=True))
    results = [r for r in results if r["seed"] in seeds and r["scenario"] in args.scenarios]
    report(results, args, prov, time.perf_counter() - start)
    return 0


def curve_summary(results, scenario, budgets, samplers) -> dict:
    """AULC per seed, labels to reach random's largest-budget accuracy, the 99 % budget."""
    acc = bm.collect(results, "cnn", "accuracy").get(scenario, {})
    top = max(budgets)
    out = {}
    target = np.nanmean(acc["random"][top]) if "random" in acc and top in acc["random"] else float("nan")
    for name in samplers:
        if name not in acc:
            continue
        per_seed = np.array([acc[name][b] for b in budgets], dtype=float)  # (budgets, seeds)
        aulcs = [bm.aulc(budgets, per_seed[:, i]) for i in range(per_seed.shape[1])]
        means = np.nanmean(per_seed, axis=1)
        reach = bm.labels_to_reach(budgets, means, target) if np.isfinite(target) else None
        own = bm.labels_to_reach(budgets, means, 0.99 * means[-1])
        out[name] = {"aulc": bm.mean_ci(aulcs), "aulc_values": aulcs, "labels_to_random_top": reach,
                     "speedup": (top / reach) if reach else None, "budget_99pc_own_top": own,
                     "mean_curve": means.tolist()}
    return out


def report(results, args, prov, seconds) -> None:
    budgets = sorted(args.budgets)
    samplers = list(args.samplers)
    top = max(budgets)
    md = [f"# Learning curves with the CNN in the loop{' (SMOKE: meaningless figures)' if args.smoke else ''}\n\n",
          bm.provenance_markdown(prov), f"\n{args.note}\n" if args.note else "",
          f"\nDetector {args.detector} x {args.detector} (reduced from the paper's 256 to fit a 2-core machine). "
          f"Oracle: {args.oracle}. Model: CNNClassifier(network={args.network!r}), default settings; uncertainty "
          f"retrains it in the loop at every budget and at {', '.join(str(r) for r in bm.REFITS if r < top)} labels, "
          f"the hybrid when its wall phase asks. Test set: up to 1,000 positions never labelled. Mean +- 95 % CI over "
          f"seeds; p: paired Wilcoxon against random. Wall time {bm.seconds_text(seconds)} for the jobs run now.\n"]
    data = {"provenance": prov, "scenarios": {}}
    for scenario in args.scenarios:
        rows = [r for r in results if r["scenario"] == scenario]
        if not rows:
            continue
        r0 = rows[0]
        md.append(f"\n## {scenario}: {r0['shape'][1]} x {r0['shape'][0]} scan, classes {r0['class_counts']}, "
                  f"**{len(rows)} seeds**\n")
        entry = {"seeds": [r["seed"] for r in rows], "tables": {}}
        for metric, title, scale in METRICS:
            table, numbers = bm.sampler_table(results, scenario, budgets, samplers, metric=metric, scale=scale)
            entry["tables"][metric] = numbers
            md.append(f"\n### {title}\n\n{table}")
        summary = curve_summary(results, scenario, budgets, samplers)
        entry["summary"] = summary
        md.append("\n### Area under the accuracy curve, speed-up, 99 % budget\n\n"
                  "| sampler | AULC (%, log labels, over the budgets it could train at) | "
                  f"labels to reach random's {top}-label accuracy | speed-up | smallest budget with 99 % of its own "
                  f"{top}-label accuracy |\n|---|---|---|---|---|\n")
        for name, s in summary.items():
            reach = f"{s['labels_to_random_top']:.0f}" if s["labels_to_random_top"] else f"not reached by {top}"
            speed = f"{s['speedup']:.1f} x" if s["speedup"] else "-"
            own = f"{s['budget_99pc_own_top']:.0f}" if s["budget_99pc_own_top"] else "-"
            md.append(f"| {name} | {bm.fmt(*s['aulc'])} | {reach} | {speed} | {own} |\n")
        md.append(baseline_matrix(results, scenario, budgets, samplers, entry))
        data["scenarios"][scenario] = entry
    fig = figure(data, budgets, samplers)
    paths = bm.write_outputs(args.out, "".join(md), data, fig)
    print("".join(md))
    print("written: " + ", ".join(str(p) for p in paths))


def baseline_matrix(results, scenario, budgets, samplers, entry) -> str:
    """Per baseline and budget: CNN - baseline accuracy on grid-midpoint and random labels."""
    out = ["\n### CNN vs baselines on the same labels (accuracy points, CNN minus baseline, mean over seeds; "
           "`>` CNN better beyond the 95 % CI, `<` worse, `=` within)\n\n| labels | baseline | "
           + " | ".join(str(b) for b in budgets) + " |\n" + "|---" * (len(budgets) + 2) + "|\n"]
    entry["baselines"] = {}
    for sampler in [s for s in ("grid-midpoint", "random") if s in samplers]:
        for base in bm.BASELINES:
            cells = []
            for b in budgets:
                d = bm.beats(results, scenario, sampler, b, base)
                entry["baselines"].setdefault(sampler, {}).setdefault(base, {})[b] = d
                if not np.isfinite(d["diff"]):
                    cells.append("n/a")
                    continue
                mark = ">" if d["diff"] - (d["ci95"] if np.isfinite(d["ci95"]) else np.inf) > 0 else \
                    "<" if d["diff"] + (d["ci95"] if np.isfinite(d["ci95"]) else np.inf) < 0 else "="
                cells.append(f"{mark} {d['diff'] * 100:+.1f}")
            out.append(f"| {sampler} | {base} | " + " | ".join(cells) + " |\n")
    return "".join(out)


def figure(data, budgets, samplers):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(data["scenarios"])
    fig, axes = plt.subplots(2, max(1, len(scenarios)), figsize=(3.3 * max(1, len(scenarios)), 6.2), squeeze=False)
    for j, scenario in enumerate(scenarios):
        for i, (metric, title) in enumerate((("accuracy", "accuracy (%)"), ("none_recall", "recall of none (%)"))):
            ax = axes[i, j]
            for name in samplers:
                row = data["scenarios"][scenario]["tables"][metric].get(name)
                if not row:
                    continue
                m = np.array([row[b]["mean"] for b in budgets]) * 100
                ci = np.nan_to_num(np.array([row[b]["ci95"] for b in budgets]) * 100)
                ax.plot(budgets, m, marker="o", ms=3, label=name)
                ax.fill_between(budgets, m - ci, m + ci, alpha=0.15)
            ax.set_xscale("log")
            ax.set_title(f"{scenario}\n{title}" if i == 0 else title, fontsize=9)
            ax.set_xlabel("labels")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    sys.exit(main())

"""Learning curves from 5 to 250 labels with the CNN in the loop, per sampler and scan, paired over seeds.

    python benchmarks/bench_curves.py [--scenarios paper tilted bullseye needles stripes bullseye@faint-rotated]
        [--seeds 3] [--master-seed 2027] [--jobs 2] [--budgets 5 10 15 20 30 50 100 250]
        [--samplers grid-midpoint random uncertainty hybrid] [--oracle truth | human:0.03]
        [--model-driven-on paper tilted] [--detector 64] [--smoke]
        [--out benchmarks/results/curves]

Scenarios: ``paper`` (the 206 x 34 scan with the real map's walls), a geometry of the simulator
on a 72 x 56 scan (``tilted``, ``bullseye``, ``needles``, ``stripes``), or ``GEOMETRY@RUNG`` on
a rung of ``al4dstem.simulate.DIFFICULTY_LADDER`` (``bullseye@faint-rotated``: faint ghosts, a
lattice at 31 degrees). Per scenario and sampler: accuracy, balanced accuracy, ``none`` recall
and F1, wall position error at every budget (mean +- 95 % CI over seeds), a paired Wilcoxon test
against random at each budget, the area under the accuracy curve (over log labels), the labels
needed to reach random's accuracy at the largest budget (and the speed-up that means), the
smallest budget at which the CNN reaches 99 % of its own accuracy at the largest budget, and
where the CNN beats each baseline fitted on the same labels.

Samplers that use the CNN while labelling (uncertainty, hybrid) cost several fits per budget;
they run as separate jobs, after each seed's other jobs, and only on the scenarios named by
``--model-driven-on`` (default: all).

Writes ``OUT.md``, ``OUT.json``, ``OUT.png`` and every job in ``OUT-raw/`` (a rerun resumes).
The report covers every job in ``OUT-raw/`` with the same oracle, whichever run
added it (seeds of other runs included), so jobs can be added incrementally.
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
    ap.add_argument("--model-driven-on", nargs="+", default=None, metavar="SCENARIO",
                    help="run the samplers that use the CNN while labelling only on these scenarios (default: all)")
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
    try:
        driven = [name for name in args.samplers if bm.uses_model(name)]
    except bm.Al4dstemError as exc:
        ap.error(str(exc))
    plain = [name for name in args.samplers if name not in driven]
    driven_on = args.scenarios if args.model_driven_on is None else args.model_driven_on
    specs = []
    for seed in seeds:  # seed by seed: a run stopped early has whole seeds, every scenario alike
        groups = [(s, plain) for s in args.scenarios] + [(s, driven) for s in args.scenarios if s in driven_on]
        specs += [bm.JobSpec(s, seed, tuple(names), tuple(sorted(args.budgets)), args.network, args.detector,
                             args.oracle, smoke=args.smoke)
                  for s, names in groups if names]
    prov = bm.provenance({k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, args.master_seed)
    start = time.perf_counter()
    print(f"{len(args.scenarios)} scenarios x {len(seeds)} seeds, samplers {args.samplers}, budgets {args.budgets}, "
          f"jobs {args.jobs}", flush=True)
    raw_dir = args.out.parent / f"{args.out.name}-raw"
    if not args.report_only:
        bm.run_jobs(specs, args.jobs, raw_dir=raw_dir, log=lambda m: print(m, flush=True))
    results = bm.finished_jobs(raw_dir, args.oracle, None, args.scenarios) if raw_dir.is_dir() else []
    if not results:
        ap.error(f"no finished jobs in {raw_dir} with oracle {args.oracle}")
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
    present = {name for r in results for name in r["results"]}
    samplers = [s for s in (*args.samplers, *bm.SAMPLERS) if s in present]
    samplers = list(dict.fromkeys(samplers + sorted(present - set(samplers))))
    top = max(budgets)
    md = [f"# Learning curves with the CNN in the loop{' (SMOKE: meaningless figures)' if args.smoke else ''}\n\n",
          bm.provenance_markdown(prov), f"\n{args.note}\n" if args.note else "",
          f"\nDetector {args.detector} x {args.detector} (reduced from the paper's 256 to fit a 2-core machine). "
          f"Oracle: {args.oracle}. Model: CNNClassifier(network={args.network!r}), default settings; uncertainty "
          f"retrains it in the loop at every budget and at {', '.join(str(r) for r in bm.REFITS if r < top)} labels, "
          f"the hybrid when its wall phase asks. Test set: up to 1,000 positions never labelled. Mean +- 95 % CI over "
          f"seeds; p: paired Wilcoxon against random (with 5 seeds or fewer no two-sided p can fall below 0.05; "
          f"the CI of the paired difference is the test used here). `(n=K)`: only K seeds scored (a sampler not "
          f"run on every seed, or labels it could not train on). "
          f"Wall time {bm.seconds_text(seconds)} for the jobs run now.\n"]
    data = {"provenance": prov, "scenarios": {}}
    md.append(overview(results, args.scenarios, budgets, samplers, data))
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


def overview(results, scenarios, budgets, samplers, data) -> str:
    """Grid-midpoint minus random per scenario and budget (paired over seeds), and the budget at
    which each sampler's mean curve reaches 99 % of its largest-budget accuracy."""
    top = max(budgets)
    acc = bm.collect(results, "cnn", "accuracy")
    out = ["\n## Overview\n\n### Grid-midpoint minus random, accuracy points (paired per seed, mean +- 95 % CI; "
           "**bold**: beyond the seed spread)\n\n| scenario | seeds | " + " | ".join(f"{b}" for b in budgets)
           + " |\n" + "|---" * (len(budgets) + 2) + "|\n"]
    data["grid_minus_random"] = {}
    for scenario in scenarios:
        rows = acc.get(scenario, {})
        if "grid-midpoint" not in rows or "random" not in rows:
            continue
        cells, numbers = [], {}
        for b in budgets:
            d = np.asarray(rows["grid-midpoint"].get(b, []), float) - np.asarray(rows["random"].get(b, []), float)
            m, ci = bm.mean_ci(d)
            k = int(np.isfinite(d).sum())
            numbers[b] = {"diff": m, "ci95": ci, "n": k, "values": d.tolist()}
            if not np.isfinite(m):
                cells.append("n/a")
                continue
            text = f"{m * 100:+.1f}" + (f" +- {ci * 100:.1f}" if np.isfinite(ci) else "") + f" (n={k})"
            cells.append(f"**{text}**" if np.isfinite(ci) and abs(m) > ci else text)
        data["grid_minus_random"][scenario] = numbers
        n_seeds = len(next(iter(rows["random"].values())))
        out.append(f"| {scenario} | {n_seeds} | " + " | ".join(cells) + " |\n")
    out.append(f"\n### Smallest budget at which the mean curve reaches 99 % of its {top}-label accuracy "
               f"(labels, linear between budgets)\n\n| scenario | " + " | ".join(samplers) + " |\n"
               + "|---" * (len(samplers) + 1) + "|\n")
    data["budget_99pc"] = {}
    for scenario in scenarios:
        if scenario not in acc:
            continue
        cells = []
        for name in samplers:
            curve = acc[scenario].get(name)
            if not curve:
                cells.append("-")
                continue
            means = np.array([np.nanmean(curve[b]) if np.isfinite(curve[b]).any() else np.nan for b in budgets])
            own = bm.labels_to_reach(budgets, means, 0.99 * means[-1]) if np.isfinite(means[-1]) else None
            data["budget_99pc"].setdefault(scenario, {})[name] = own
            n = min(int(np.isfinite(curve[b]).sum()) for b in (top,))
            cells.append(f"{own:.0f} (n={n})" if own else "-")
        out.append(f"| {scenario} | " + " | ".join(cells) + " |\n")
    return "".join(out)


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

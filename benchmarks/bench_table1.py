"""The paper's Table 1 with the CNN in the loop: samplers x budgets 50 / 100 / 250 over paired seeds.

    python benchmarks/bench_table1.py [--seeds 10] [--master-seed 2026] [--jobs 2]
        [--samplers grid-midpoint random uncertainty hybrid] [--budgets 50 100 250]
        [--oracle truth | human:0.03] [--reference benchmarks/results/table1] [--paper-seeds 3]
        [--detector 64] [--smoke] [--out benchmarks/results/table1]

Each seed simulates the paper-sized 206 x 34 scan whose walls follow the real map of the paper's
sample (``al4dstem.benchmarking.paper_scan``), draws 1,000 test positions that are never
labelled, and for every sampler labels up to each budget (answers from the truth, or from a
human-like oracle that errs near walls and on faint patterns), trains the default CNN on those
labels (uncertainty: retrained in the loop at 10, 25, 50, 100, 175 labels; hybrid: when its
wall phase asks) and scores it and the baselines, fitted on the same labels, on the test set.
The same seeds, scans and test sets serve every sampler (paired). The paper's network is a
reference row at 50 labels over the first ``--paper-seeds`` seeds.

Writes ``OUT.md``, ``OUT.json`` and ``OUT.png`` (versions, machine, parameters and the master
seed included), and every job's scores in ``OUT-raw/`` as it finishes: rerunning the same
command skips the jobs already there, so a stopped run continues. ``--reference STEM`` (with a
fallible oracle) sets the run beside the perfect oracle's on the same seeds: those jobs are read
from ``STEM-raw/`` (the ones missing there are run into it), and the report adds the paired
difference and the share of wrong labels each sampler received. ``--smoke``: a tiny scan,
2 seeds, 2 budgets, 2 epochs (checks that the code runs; its figures mean nothing).
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

HUMAN_NOTE = (" (HumanLikeOracle: that share of wrong answers over the whole scan, an error up to 8 times "
              "likelier at a wall than far from one, decaying over 2 scan pixels, and up to 4 times likelier on the "
              "faintest ghosts, faintness from the scan's ghost strength; a wrong answer names the class across the "
              "nearest wall; the test set is scored against the truth)")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10, help="paired seeds (jobs)")
    ap.add_argument("--master-seed", type=int, default=2026)
    ap.add_argument("--jobs", type=int, default=1, help="processes running seeds in parallel")
    ap.add_argument("--samplers", nargs="+", default=list(bm.SAMPLERS),
                    help="sampler names (any al4dstem sampler, package.module:Class too)")
    ap.add_argument("--budgets", nargs="+", type=int, default=list(bm.TABLE_BUDGETS))
    ap.add_argument("--oracle", default="truth", help="truth, or human:RATE (e.g. human:0.03)")
    ap.add_argument("--reference", type=Path, default=None, metavar="STEM",
                    help="a perfect-oracle run on the same seeds to compare with (its jobs in STEM-raw/)")
    ap.add_argument("--paper-seeds", type=int, default=3, help="seeds with the paper's network at 50 labels")
    ap.add_argument("--detector", type=int, default=64, help="detector side of the simulated scan (paper: 256)")
    ap.add_argument("--network", default="default")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "table1")
    ap.add_argument("--note", default="", help="a line added to the report (e.g. how the jobs were run)")
    ap.add_argument("--report-only", action="store_true",
                    help="write the report from the jobs already finished in OUT-raw/, run none")
    ap.add_argument("--smoke", action="store_true", help="tiny scan, 2 seeds, 2 budgets: checks the code runs")
    args = ap.parse_args(argv)
    if args.smoke:
        args.seeds, args.budgets, args.paper_seeds = 2, [10, 20], 1
    if args.seeds < 1 or args.jobs < 1 or min(args.budgets) < 5:
        ap.error("--seeds and --jobs must be >= 1, budgets >= 5")

    seeds = bm.seeds_from(args.master_seed, args.seeds)
    paper_budget = min(args.budgets) if args.smoke else 50
    specs = [bm.JobSpec("paper", seed, tuple(args.samplers), tuple(sorted(args.budgets)), args.network,
                        args.detector, args.oracle, smoke=args.smoke,
                        extra_networks={"paper": {"budgets": [paper_budget], "samplers": ["grid-midpoint", "random"]}}
                        if i < args.paper_seeds else {})
             for i, seed in enumerate(seeds)]
    prov = bm.provenance({k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, args.master_seed)
    start = time.perf_counter()
    print(f"{len(specs)} seeds x {len(args.samplers)} samplers x budgets {args.budgets}, jobs {args.jobs}; "
          f"results in {args.out}.md", flush=True)
    raw_dir = args.out.parent / f"{args.out.name}-raw"
    if args.report_only:
        specs = [s for s in specs if bm._raw_path(raw_dir, s).exists()]
        if not specs:
            ap.error(f"no finished jobs in {raw_dir}")
    results = bm.run_jobs(specs, args.jobs, raw_dir=raw_dir, log=lambda m: print(m, flush=True))
    results = [r for r in results if r["seed"] in seeds]
    reference = []
    if args.reference is not None:
        ref_raw = args.reference.parent / f"{args.reference.name}-raw"
        ref_specs = [bm.JobSpec("paper", s.seed, s.samplers, s.budgets, s.network, s.detector, "truth", smoke=s.smoke)
                     for s in specs]  # the seeds run (or, with --report-only, finished) here
        if args.report_only:
            ref_specs = [s for s in ref_specs if bm._raw_path(ref_raw, s).exists()]
        reference = bm.run_jobs(ref_specs, args.jobs, raw_dir=ref_raw, log=lambda m: print(m, flush=True))
    report(results, args, prov, time.perf_counter() - start, reference)
    return 0


def report(results, args, prov, seconds, reference=()) -> None:
    budgets = sorted(args.budgets)
    samplers = list(args.samplers)
    n = len(results)
    scan = results[0]
    kind = "SMOKE: meaningless figures" if args.smoke else "paper-like scan"
    if args.oracle != "truth":
        kind += f", oracle {args.oracle}"
    md = [f"# Table 1 with the CNN in the loop ({kind})\n\n",
          bm.provenance_markdown(prov), f"\n{args.note}\n" if args.note else "", "\n",
          f"Scan: {scan['shape'][1]} x {scan['shape'][0]} positions ({scan['scan']}), detector {scan['detector']} x "
          f"{scan['detector']} (the paper's: 256; reduced to fit a 2-core machine: the default CNN bins to 64 x 64 "
          f"anyway, the paper's network sees 64 x 64 instead of 256 x 256), classes none / vertical / horizontal "
          f"{scan['class_counts']}. Test set: {scan['test_size']} positions never labelled. Oracle: {args.oracle}"
          f"{HUMAN_NOTE if args.oracle.startswith('human:') else ''}. "
          f"Model: CNNClassifier(network={args.network!r}), default settings. "
          f"**{n} paired seeds**; mean +- 95 % CI (Student t); p: two-sided paired Wilcoxon signed-rank test "
          f"against random at each budget. Wall time {bm.seconds_text(seconds)} for the jobs run now "
          f"({sum(r['cnn_fits'] for r in results)} CNN fits in all, "
          f"{sum(r['cnn_fit_seconds'] for r in results) / max(1, sum(r['cnn_fits'] for r in results)):.0f} s each "
          f"on average).\n\n"]
    data = {"provenance": prov, "seeds": [r["seed"] for r in results], "tables": {}, "baselines": {}}
    md.append("## Accuracy (%) on the 1,000 test positions\n\n")
    table, numbers = bm.sampler_table(results, "paper", budgets, samplers)
    md.append(table)
    for name, row in bm.PAPER_TABLE_1.items():
        cells = [f"{row[b]:.1f}" if b in row else "-" for b in budgets]
        md.append(f"| paper's CNN, {'binary' if name == 'grid-midpoint' else name} (1 run, their 1,000 test labels) | "
                  + " | ".join(cells) + " | - |\n")
    data["tables"]["accuracy"] = numbers
    md.append("\n" + grid_vs_random(numbers, budgets) + "\n")
    for metric, title, scale in (("balanced_accuracy", "Balanced accuracy (%)", 100.0),
                                 ("none_recall", "Recall of `none` (the walls, %)", 100.0),
                                 ("none_f1", "F1 of `none` (%)", 100.0),
                                 ("wall_error", "Wall position error (scan pixels, lower is better)", 1.0)):
        table, numbers = bm.sampler_table(results, "paper", budgets, samplers, metric=metric, scale=scale)
        data["tables"][metric] = numbers
        md.append(f"\n## {title}\n\n{table}")
    md.append("\n## Baselines on the same labels (accuracy %, and CNN minus baseline)\n\n")
    md.append("CNN - baseline: mean difference in accuracy points +- 95 % CI, paired Wilcoxon p. Bold: the CNN is "
              "better beyond the seed spread (CI above 0).\n\n")
    for sampler in [s for s in ("grid-midpoint", "random") if s in samplers]:
        md.append(f"\n### Labels from {sampler}\n\n| baseline | " + " | ".join(f"{b} labels" for b in budgets)
                  + " |\n" + "|---" * (len(budgets) + 1) + "|\n")
        for base in bm.BASELINES:
            cells = []
            for b in budgets:
                v = bm.collect(results, base).get("paper", {}).get(sampler, {}).get(b, [])
                m, ci = bm.mean_ci(v)
                d = bm.beats(results, "paper", sampler, b, base)
                data["baselines"].setdefault(sampler, {}).setdefault(base, {})[b] = {"mean": m, "ci95": ci, **d}
                diff = f"{d['diff'] * 100:+.1f} +- {d['ci95'] * 100:.1f}, p {d['p']:.3f}" if len(v) > 1 else "n/a"
                if len(v) > 1 and d["diff"] - d["ci95"] > 0:
                    diff = f"**{diff}**"
                cells.append(f"{bm.fmt(m, ci)} ({diff})")
            md.append(f"| {base} | " + " | ".join(cells) + " |\n")
    md.append(paper_network(results, args))
    if reference:
        md.append(oracle_comparison(results, reference, budgets, samplers, args.oracle, data))
    md.append("\n## Reading\n\nSee README \"Evidence\"; raw scores of every seed are in the JSON file.\n")
    fig = figure(data, budgets, samplers)
    paths = bm.write_outputs(args.out, "".join(md), data, fig)
    print("".join(md))
    print("written: " + ", ".join(str(p) for p in paths))


def oracle_comparison(results, reference, budgets, samplers, oracle, data) -> str:
    """The fallible oracle's run beside the perfect oracle's on the seeds both finished, paired."""
    common = sorted({r["seed"] for r in results} & {r["seed"] for r in reference})
    if not common:
        return ""
    ours = [r for r in results if r["seed"] in common]
    ref = [r for r in reference if r["seed"] in common]
    out = [f"\n## Perfect oracle vs {oracle}, the same {len(common)} seeds\n\n"
           "Wrong labels: the share of the labels a sampler collected that the oracle got wrong (the oracle's rate "
           "is over the whole scan; a sampler that labels near walls or faint patterns hears more errors). "
           "Difference: fallible minus perfect, accuracy points, paired per seed, mean +- 95 % CI, Wilcoxon p; "
           "**bold**: beyond the seed spread.\n\n"
           "| sampler | labels | wrong labels (%) | accuracy, perfect | accuracy, fallible | difference | "
           "`none` recall, perfect -> fallible | wall error (px), perfect -> fallible |\n"
           "|---|---|---|---|---|---|---|---|\n"]
    table: dict = {}
    wrong = bm.collect(ours, "entry", "wrong_labels").get("paper", {})
    n_labels = bm.collect(ours, "entry", "n_labels").get("paper", {})
    for name in samplers:
        for b in budgets:
            row = {}
            for metric in ("accuracy", "none_recall", "wall_error"):
                a = bm.collect(ref, "cnn", metric).get("paper", {}).get(name, {}).get(b, [])
                f = bm.collect(ours, "cnn", metric).get("paper", {}).get(name, {}).get(b, [])
                if len(a) != len(f) or not len(a):
                    break
                d = np.asarray(f, float) - np.asarray(a, float)
                row[metric] = {"perfect": bm.mean_ci(a), "fallible": bm.mean_ci(f), "diff": bm.mean_ci(d),
                               "p": bm.wilcoxon_p(f, a), "perfect_values": a, "fallible_values": f}
            if len(row) < 3:
                continue
            w, n = wrong.get(name, {}).get(b, []), n_labels.get(name, {}).get(b, [])
            share = bm.mean_ci([x / y for x, y in zip(w, n, strict=True) if y]) if len(w) and len(n) == len(w) \
                else (float("nan"), float("nan"))
            row["wrong_label_share"] = share
            table.setdefault(name, {})[b] = row
            m, ci = row["accuracy"]["diff"]
            diff = f"{m * 100:+.1f}" + (f" +- {ci * 100:.1f}" if np.isfinite(ci) else "") + \
                f", p {row['accuracy']['p']:.3f}"
            diff = f"**{diff}**" if np.isfinite(ci) and abs(m) > ci else diff
            rec, wall = row["none_recall"], row["wall_error"]
            out.append(f"| {name} | {b} | {bm.fmt(*share)} | {bm.fmt(*row['accuracy']['perfect'])} | "
                       f"{bm.fmt(*row['accuracy']['fallible'])} | {diff} | {rec['perfect'][0] * 100:.1f} -> "
                       f"{rec['fallible'][0] * 100:.1f} (p {rec['p']:.3f}) | {wall['perfect'][0]:.2f} -> "
                       f"{wall['fallible'][0]:.2f} (p {wall['p']:.3f}) |\n")
    data["oracle_comparison"] = {"seeds": common, "oracle": oracle, "table": table}
    return "".join(out)


def grid_vs_random(numbers, budgets) -> str:
    if "grid-midpoint" not in numbers or "random" not in numbers:
        return ""
    parts = []
    for b in budgets:
        g, r = numbers["grid-midpoint"][b], numbers["random"][b]
        diff = [x - y for x, y in zip(g["values"], r["values"], strict=True)]
        m, ci = bm.mean_ci(diff)
        verdict = "beats random beyond the seed spread" if m - ci > 0 else \
            "loses to random beyond the seed spread" if m + ci < 0 else "is within the seed spread of random"
        parts.append(f"at {b} labels grid-midpoint {verdict} ({m * 100:+.1f} +- {ci * 100:.1f} points, "
                     f"p = {g['p_vs_random']:.3f})")
    return "Grid-midpoint vs random, paired differences: " + "; ".join(parts) + ".\n"


def paper_network(results, args) -> str:
    rows = [r for r in results if r.get("extra_networks", {}).get("paper")]
    if not rows:
        return ""
    out = ["\n## The paper's network (reference)\n\n| labels from | budget | paper's network "
           "| default CNN (same seeds) | seeds |\n|---|---|---|---|---|\n"]
    for sampler in ("grid-midpoint", "random"):
        budgets = sorted({int(b) for r in rows for b in r["extra_networks"]["paper"].get(sampler, {})})
        for b in budgets:
            paper = [r["extra_networks"]["paper"][sampler][str(b)]["cnn"]["accuracy"] for r in rows
                     if (r["extra_networks"]["paper"][sampler][str(b)].get("cnn"))]
            ours = [r["results"].get(sampler, {}).get(str(b), {}).get("cnn", {}).get("accuracy", float("nan"))
                    for r in rows]
            out.append(f"| {sampler} | {b} | {bm.fmt(*bm.mean_ci(paper))} | {bm.fmt(*bm.mean_ci(ours))} | "
                       f"{len(paper)} |\n")
    return "".join(out)


def figure(data, budgets, samplers):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, metric, title in zip(axes, ("accuracy", "none_recall", "wall_error"),
                                 ("accuracy (%)", "recall of none (%)", "wall position error (px)"), strict=True):
        scale = 1.0 if metric == "wall_error" else 100.0
        for i, name in enumerate(samplers):
            row = data["tables"][metric].get(name)
            if not row:
                continue
            x = [b * (1 + 0.03 * (i - 1.5)) for b in budgets]
            bars = ax.errorbar(x, [row[b]["mean"] * scale for b in budgets],
                               yerr=[row[b]["ci95"] * scale for b in budgets], marker="o", capsize=3, label=name)
            perfect = data.get("oracle_comparison", {}).get("table", {}).get(name)
            if perfect and all(b in perfect for b in budgets):  # the perfect oracle's run, same seeds: dashed
                ax.plot(x, [perfect[b][metric]["perfect"][0] * scale for b in budgets], ls="--", lw=1,
                        color=bars[0].get_color(), label=f"{name}, perfect oracle")
        if metric == "accuracy":
            for name, row in bm.PAPER_TABLE_1.items():
                label = "paper binary" if name == "grid-midpoint" else f"paper {name}"
                ax.plot([b for b in budgets if b in row], [row[b] for b in budgets if b in row],
                        "k--" if name == "grid-midpoint" else "k:", marker="x", label=label)
        ax.set_xscale("log")
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.set_xlabel("labels")
        ax.set_title(title)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    sys.exit(main())

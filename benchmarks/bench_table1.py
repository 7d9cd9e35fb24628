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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from al4dstem import benchmarking as bm  # noqa: E402


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
    try:
        paths = bm.run_table1(args.out, args.seeds, args.master_seed, args.jobs, args.samplers, args.budgets,
                              args.oracle, args.reference, args.paper_seeds, args.detector, args.network, args.note,
                              args.report_only, args.smoke, log=lambda m: print(m, flush=True))
    except bm.Al4dstemError as exc:
        ap.error(str(exc))
    print(paths[0].read_text())
    print("written: " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())

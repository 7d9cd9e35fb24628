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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from al4dstem import benchmarking as bm  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", nargs="+", default=list(bm.CURVE_SCENARIOS))
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
    try:
        paths = bm.run_curves(args.out, args.scenarios, args.seeds, args.master_seed, args.jobs, args.samplers,
                              args.budgets, args.model_driven_on, args.oracle, args.detector, args.network,
                              args.note, args.report_only, args.smoke, log=lambda m: print(m, flush=True))
    except bm.Al4dstemError as exc:
        ap.error(str(exc))
    print(paths[0].read_text())
    print("written: " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Patterns per second on the same patterns, in one run: our ``predict`` end to end (default CNN), the
paper's network through the same path, and py4DSTEM's Bragg-disk detection (``find_Bragg_disks``,
the conventional route the paper compares with).

    python benchmarks/bench_speed.py [--patterns 1024] [--detector 256] [--bragg-patterns 64]
        [--threads N] [--out benchmarks/results/speed] [--smoke]

The patterns are a simulated scan held in memory (so no disk is timed). ``predict`` is
``al4dstem.engines.local.predict_dataset``: read, preprocess (log, normalise, bin), network,
probabilities for every position; weights do not change the speed, so the networks are
initialised, not trained. py4DSTEM gets a synthetic probe template of the simulated disk radius
and finds the disks in each of the first ``--bragg-patterns`` patterns (it is slow; its rate is
per pattern, so fewer patterns suffice). Each figure is the best of ``--repeat`` passes; the
ratios come from this one run. Writes ``OUT.md`` and ``OUT.json`` with the machine and versions.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from al4dstem import benchmarking as bm  # noqa: E402


def predict_rate(network: str, ds, threads: int, repeat: int) -> float:
    from al4dstem.engines.local import predict_dataset
    from al4dstem.models import CNNClassifier

    model = CNNClassifier(network=network, n_threads=threads).initialize(ds.detector_shape)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        predict_dataset(model, ds, n_threads=threads)
        best = min(best, time.perf_counter() - t0)
    return ds.n_positions / best


def bragg_rate(patterns, disk_radius: float, repeat: int) -> tuple[float, float]:
    """py4DSTEM ``find_Bragg_disks`` patterns/s, and the mean number of disks it found."""
    import numpy as np
    from py4DSTEM.braggvectors import Probe
    from py4DSTEM.braggvectors.diskdetection import find_Bragg_disks

    shape = patterns.shape[1:]
    probe = Probe.generate_synthetic_probe(radius=disk_radius, width=1.0, Qshape=shape)
    kernel = probe.get_kernel(mode="sigmoid", origin=(shape[0] / 2, shape[1] / 2), radii=(disk_radius, 2 * disk_radius))
    spacing = max(4, int(disk_radius * 3))
    best, found = float("inf"), []
    for _ in range(repeat):
        found = []
        t0 = time.perf_counter()
        for p in patterns:
            peaks = find_Bragg_disks(np.asarray(p, dtype=np.float32), kernel, minPeakSpacing=spacing,
                                     edgeBoundary=2, maxNumPeaks=200, minRelativeIntensity=0.0005,
                                     subpixel="poly")
            found.append(len(peaks.data))
        best = min(best, time.perf_counter() - t0)
    return len(patterns) / best, float(np.mean(found))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patterns", type=int, default=1024)
    ap.add_argument("--detector", type=int, default=256)
    ap.add_argument("--bragg-patterns", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine's default on 2 cores: 1)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "speed")
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args(argv)
    if args.smoke:
        args.patterns, args.detector, args.bragg_patterns, args.repeat = 64, 64, 4, 1
    warnings.simplefilter("ignore")
    import numpy as np

    from al4dstem.data import open_dataset
    from al4dstem.simulate import Physics, simulate_scan

    cols = 64
    rows = max(1, args.patterns // cols)
    sim = simulate_scan(nx=cols, ny=max(8, rows), detector=args.detector, geometry="bands", seed=args.seed, threads=1)
    data = sim.data[:rows] if rows >= 8 else sim.data
    ds = open_dataset(np.ascontiguousarray(data))
    prov = bm.provenance(vars(args) | {"out": str(args.out)}, args.seed)
    rates = {"default": predict_rate("default", ds, args.threads, args.repeat),
             "paper": predict_rate("paper", ds, args.threads, args.repeat)}
    radius = Physics().disk_radius * args.detector
    flat = data.reshape(-1, args.detector, args.detector)[: args.bragg_patterns]
    rates["py4DSTEM find_Bragg_disks"], disks = bragg_rate(flat, radius, args.repeat)
    base = rates["default"]
    md = ["# Speed: patterns per second on the same patterns\n\n", bm.provenance_markdown(prov),
          f"\n{ds.n_positions} simulated patterns of {args.detector} x {args.detector} (uint16, in memory); torch "
          f"threads {args.threads}; best of {args.repeat}. py4DSTEM on the first {len(flat)} patterns "
          f"(synthetic probe, disk radius {radius:.1f} px; {disks:.0f} disks found per pattern on average).\n\n"
          "| route | patterns/s | default CNN is ... times faster |\n|---|---|---|\n"]
    for name, rate in rates.items():
        md.append(f"| {name} | {rate:.1f} | {base / rate:.1f} |\n")
    text = "".join(md)
    paths = bm.write_outputs(args.out, text, {"provenance": prov, "patterns_per_second": rates,
                                              "ratios_default_over": {k: base / v for k, v in rates.items()},
                                              "bragg_disks_per_pattern": disks})
    print(text)
    print("written: " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())

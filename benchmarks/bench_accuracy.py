"""Held-out accuracy from a few labels, and the time to train on them.

The acceptance figures (issue 4, docs/design.md §5): >= 97% on held-out positions (the labelled
ones excluded) from 50 grid-midpoint labels on the paper-like bands, a tilted wall and a closed
domain (bullseye), for each of 3 seeds; training on 50 labels in <= 60 s on 2 cores.

Each run is the demo pipeline (``al4dstem.demo.run_demo``): simulate a 206 x 34 scan with a
256 x 256 detector, label ``--budget`` positions with the sampler answered by the truth file,
train, map the whole scan, evaluate on every position that was not labelled.

    python benchmarks/bench_accuracy.py [--geometries bands tilted bullseye] [--seeds 0 1 2]
        [--budget 50] [--sampler grid-midpoint] [--network default] [--size 64] [--epochs N]

``--size`` overrides the network's input size (the preprocessing's binning), to measure what
still resolves the ghost disks. Prints one row per run, then the worst and mean accuracy and
the slowest training, with the machine's core count and load average (timings on a shared
machine are slow, accuracies are not affected).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

TARGET_ACCURACY = 0.97
TARGET_TRAIN_S = 60.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--geometries", nargs="+", default=["bands", "tilted", "bullseye"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--budget", type=int, default=50)
    ap.add_argument("--sampler", default="grid-midpoint")
    ap.add_argument("--network", default="default")
    ap.add_argument("--size", type=int, default=None, help="network input size (default: the network's own)")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2, help="torch threads for training")
    ap.add_argument("--workdir", type=Path, default=None, help="keep each run's files here (default: a temp dir)")
    args = ap.parse_args(argv)

    from al4dstem.data import Preprocessing
    from al4dstem.demo import run_demo

    prep = Preprocessing(size=args.size, scaling="log", normalise="max") if args.size else None
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; network {args.network}, "
          f"input {args.size or 'default'}, {args.budget} {args.sampler} labels, 206 x 34 scan, 256 x 256 detector")
    print(f"{'geometry':<10} {'seed':>4} {'labels':>6} {'epochs':>7} {'train s':>8} {'map p/s':>8} {'held-out':>9}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for geometry in args.geometries:
            for seed in args.seeds:
                where = (args.workdir or Path(tmp)) / f"{geometry}-{seed}"
                r = run_demo(where, seed=seed, budget=args.budget, geometry=geometry, network=args.network,
                             epochs=args.epochs, n_threads=args.threads, preprocessing=prep, sampler=args.sampler)
                import torch

                epochs = torch.load(r.model, weights_only=True)["training"]
                rows.append((geometry, seed, r.accuracy, r.seconds["train"]))
                print(f"{geometry:<10} {seed:>4} {r.n_labels:>6} {epochs['best_epoch']:>3}/{epochs['epochs_run']:<3} "
                      f"{r.seconds['train']:>8.1f} {r.patterns_per_second:>8.0f} {r.accuracy:>9.4f}", flush=True)
                if args.workdir is None:
                    (where / "data.npy").unlink(missing_ok=True)  # 0.9 GB per run
    worst = min(rows, key=lambda r: r[2])
    slowest = max(r[3] for r in rows)
    print(f"worst held-out accuracy {worst[2]:.4f} ({worst[0]}, seed {worst[1]}), mean "
          f"{statistics.mean(r[2] for r in rows):.4f}; target >= {TARGET_ACCURACY:.2f}: "
          f"{'met' if worst[2] >= TARGET_ACCURACY else 'NOT met'}")
    print(f"slowest training {slowest:.1f} s (target <= {TARGET_TRAIN_S:.0f} s: "
          f"{'met' if slowest <= TARGET_TRAIN_S else 'NOT met'}); load average now {os.getloadavg()[0]:.1f}")
    return 0 if worst[2] >= TARGET_ACCURACY else 1


if __name__ == "__main__":
    t0 = time.perf_counter()
    code = main()
    print(f"({time.perf_counter() - t0:.0f} s in all)", file=sys.stderr)
    sys.exit(code)

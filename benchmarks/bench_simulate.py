"""Time the simulator on the paper-sized scan: 206 x 34 positions, 256 x 256 detector, to .npy.

    python benchmarks/bench_simulate.py [--nx 206 --ny 34 --detector 256 --threads N --repeat 3]

Writes to a temporary folder (deleted afterwards) unless --out is given, and prints the
machine (cores, CPU, load), wall and CPU time of each run, and patterns/s. Goal: <= 30 s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from al4dstem.simulate import simulate_to_file


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_once(out: Path, args) -> tuple[float, float]:
    """Wall and CPU seconds (all threads) of one simulation to file."""
    start, cpu = time.perf_counter(), time.process_time()
    simulate_to_file(out, out.with_suffix(".csv"), nx=args.nx, ny=args.ny, detector=args.detector,
                     geometry=args.geometry, seed=args.seed, threads=args.threads)
    return time.perf_counter() - start, time.process_time() - cpu


def load_average() -> str:
    try:
        return ", ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nx", type=int, default=206)
    p.add_argument("--ny", type=int, default=34)
    p.add_argument("--detector", type=int, default=256)
    p.add_argument("--geometry", default="bands")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="worker threads (default: cores, at most 4)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--out", type=Path, default=None, help="output .npy (default: a temporary file)")
    args = p.parse_args()

    n = args.nx * args.ny
    gb = n * args.detector**2 * 2 / 1e9
    print(f"machine: {os.cpu_count()} cores, {cpu_name()}, {platform.system()} {platform.release()}")
    print(f"scan: {args.nx} x {args.ny} = {n} patterns of {args.detector} x {args.detector} uint16 "
          f"({gb:.2f} GB), geometry {args.geometry}, threads {args.threads or 'auto'}")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "bench.npy"
        times = []
        for i in range(args.repeat):
            t, cpu = run_once(out, args)
            times.append(t)
            # CPU time beside wall time: on a shared machine the difference is other people's load
            print(f"  run {i + 1}: {t:.2f} s wall, {cpu:.2f} s CPU  ({n / t:.0f} patterns/s; "
                  f"load average {load_average()})")
    best, median = min(times), statistics.median(times)
    print(f"best {best:.2f} s ({n / best:.0f} patterns/s), median {median:.2f} s ({n / median:.0f} patterns/s); "
          f"goal <= 30 s: {'met' if best <= 30 else 'NOT met'}")


if __name__ == "__main__":
    main()

"""Speed of `al4dstem predict`, end to end, for the default network and the paper's, side by side.

The acceptance figure (issue 4, docs/design.md §5): the paper's 206 x 34 scan of raw 512 x 512
uint16 frames (7,004 patterns, 3.7 GB) mapped in <= 11 s on a 2-core CPU, >= 640 patterns/s,
from the raw frames on disk to PREFIX.npy and the PNG map.

What it does: simulate the scan to a .npy once (or reuse ``--scan-cache``), write an untrained
checkpoint per network (weights do not change the speed), read the file once so it sits in the
page cache (the paper's figure is not a disk benchmark either), then run the real command
``al4dstem predict DATA --model M.pt --out PREFIX`` in a fresh process, ``--repeat`` times,
timing the whole process (Python and torch start-up, model load, read, preprocessing, network,
PREFIX.npy, PREFIX.png and PREFIX_figure.png). The command's own figure for the streaming
pass alone is quoted beside it.

    python benchmarks/bench_predict.py [--scan-cache PATH] [--repeat 3] [--networks default paper]

Measure on a quiet machine: the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_RATE = 640.0  # patterns/s, the paper's GPU figure
TARGET_SECONDS = 11.0
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "al4dstem-bench" / "scan-206x34-512.npy"


def cpu_busy(seconds: float = 3.0) -> float:
    """Fraction of all CPU time that was busy over the next ``seconds`` (Linux /proc/stat), else NaN."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait

    try:
        t0, i0 = sample()
        time.sleep(seconds)
        t1, i1 = sample()
    except OSError:
        return float("nan")
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def wait_for_quiet(limit_s: float, busy_max: float = 0.1) -> float:
    """Wait (up to ``limit_s``) until the CPUs are less than ``busy_max`` busy; returns the last reading."""
    deadline = time.monotonic() + limit_s
    while True:
        busy = cpu_busy()
        if not busy > busy_max or time.monotonic() > deadline:
            return busy
        print(f"  waiting for a quiet machine: CPUs {busy:.0%} busy", flush=True)


def al4dstem_command() -> list[str]:
    """The installed console script beside this interpreter, else ``python -m al4dstem``."""
    script = Path(sys.executable).with_name("al4dstem")
    return [str(script)] if script.exists() else [sys.executable, "-m", "al4dstem"]


def ensure_scan(path: Path, nx: int, ny: int, detector: int, seed: int) -> Path:
    """Simulate the scan to ``path`` unless a file of the right shape is already there."""
    shape = (ny, nx, detector, detector)
    if path.exists():
        try:
            arr = np.load(path, mmap_mode="r")
            if arr.shape == shape and arr.dtype == np.uint16:
                print(f"reusing {path} {arr.shape} {arr.dtype}")
                return path
        except (ValueError, OSError):
            pass
        print(f"{path} is not a {shape} uint16 scan: simulating it again")
    from al4dstem.simulate import simulate_to_file

    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"simulating {nx} x {ny} patterns of {detector} x {detector} into {path} "
          f"({np.prod(shape) * 2 / 1e9:.1f} GB, takes a few minutes) ...", flush=True)
    t = time.perf_counter()
    simulate_to_file(path, None, nx=nx, ny=ny, detector=detector, geometry="bands", seed=seed)
    print(f"  simulated in {time.perf_counter() - t:.0f} s")
    return path


def warm_page_cache(path: Path, block: int = 64 << 20) -> float:
    """Read the whole file once (so the timed runs read from memory); returns GB/s."""
    t = time.perf_counter()
    n = 0
    buf = bytearray(block)
    with open(path, "rb", buffering=0) as f:
        while True:
            got = f.readinto(buf)
            if not got:
                break
            n += got
    return n / 1e9 / (time.perf_counter() - t)


def write_model(network: str, detector: int, path: Path) -> Path:
    from al4dstem.models import CNNClassifier

    CNNClassifier(network=network, random_state=0).initialize((detector, detector)).save(path)
    return path


RATE_LINE = re.compile(r"mapped (\d+) patterns in ([\d.]+) s")


def time_predict(data: Path, model: Path, prefix: Path, extra: list[str]) -> tuple[float, float]:
    """Wall seconds of one ``al4dstem predict`` process, and its own streaming-pass seconds."""
    cmd = [*al4dstem_command(), "predict", str(data), "--model", str(model), "--out", str(prefix), *extra]
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"predict failed ({p.returncode}): {p.stderr.strip()}")
    m = RATE_LINE.search(p.stdout)
    return wall, float(m.group(2)) if m else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scan-cache", type=Path, default=DEFAULT_CACHE, help=f"the scan .npy (default {DEFAULT_CACHE})")
    ap.add_argument("--nx", type=int, default=206)
    ap.add_argument("--ny", type=int, default=34)
    ap.add_argument("--detector", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--networks", nargs="+", default=["default", "paper"])
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of the first network (others: --repeat-others)")
    ap.add_argument("--repeat-others", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=None, help="where models and maps go (default: a temp folder)")
    ap.add_argument("--predict-args", default="", help="extra arguments for predict, e.g. '--batch-size 512'")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                    help="before each timed run, wait up to this long for the CPUs to be < 10%% busy")
    a = ap.parse_args()

    work = a.workdir or Path(tempfile.mkdtemp(prefix="al4dstem-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    data = ensure_scan(a.scan_cache, a.nx, a.ny, a.detector, a.seed)
    n = a.nx * a.ny
    print(f"cpu cores: {os.cpu_count()}; load average before: {os.getloadavg()[0]:.2f}; "
          f"CPUs busy now: {cpu_busy():.0%}")
    print(f"page cache warm-up: read {data.stat().st_size / 1e9:.2f} GB at {warm_page_cache(data):.1f} GB/s")
    rows = []
    for i, net in enumerate(a.networks):
        model = write_model(net, a.detector, work / f"{net}.pt")
        runs = []
        for _ in range(a.repeat if i == 0 else a.repeat_others):
            if a.wait_quiet:
                wait_for_quiet(a.wait_quiet)
            runs.append(time_predict(data, model, work / f"map-{net}", a.predict_args.split()))
        wall = statistics.median(r[0] for r in runs)
        stream = statistics.median(r[1] for r in runs)
        rows.append((net, wall, stream, len(runs)))
        print(f"  {net:8s} runs: " + ", ".join(f"{w:.2f} s" for w, _ in runs), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}; CPUs busy now: {cpu_busy():.0%}")
    print()
    print(f"predict, {n} patterns of {a.detector} x {a.detector} uint16, end to end (median of runs):")
    print(f"  {'network':8s} {'seconds':>8s} {'patterns/s':>11s}   {'streaming pass alone':>22s}")
    for net, wall, stream, _ in rows:
        print(f"  {net:8s} {wall:8.2f} {n / wall:11.0f}   {stream:8.2f} s = {n / stream:6.0f} patterns/s")
    if len(rows) > 1:
        print(f"  speed-up of {rows[0][0]} over {rows[1][0]}: {rows[1][1] / rows[0][1]:.1f}x end to end, "
              f"{rows[1][2] / rows[0][2]:.1f}x streaming")
    net, wall, _, _ = rows[0]
    ok = n / wall >= TARGET_RATE and (n != 7004 or wall <= TARGET_SECONDS)
    print(f"target ({net}): >= {TARGET_RATE:.0f} patterns/s end to end: {'PASS' if ok else 'FAIL'} "
          f"({n / wall:.0f} patterns/s)")


if __name__ == "__main__":
    main()

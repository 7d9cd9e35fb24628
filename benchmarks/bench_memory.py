"""Peak memory of `al4dstem predict` on a scan and on one 4x larger (same detector).

Acceptance (issue 4): inference streams, so the peak resident set size (RSS) of the predict
process on the 4x larger scan stays within 10% of the smaller one's. Each run is a fresh
process; its peak RSS comes from the kernel's own accounting (``os.wait4`` rusage, ru_maxrss),
which counts the pages of a memory-mapped scan that the process keeps mapped.

    python benchmarks/bench_memory.py [--nx 206 --ny 34 --detector 256] [--factor 4] [--cache-dir DIR]

The scans are simulated once into ``--cache-dir`` (0.9 GB and 3.7 GB at the defaults) and reused.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_predict import al4dstem_command, ensure_scan, warm_page_cache, write_model

LIMIT = 1.10


# A child's ru_maxrss starts from its parent's resident size at fork (the copy exists until exec),
# and this script's own RSS is large after simulating a scan. So the command is started by a tiny
# launcher process, whose RSS at fork is a few MB, and the launcher reports the child's peak.
LAUNCHER = """
import os, subprocess, sys
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
_, status, usage = os.wait4(p.pid, 0)
code = os.waitstatus_to_exitcode(status)
if code:
    sys.exit(f"failed ({code}): {p.stderr.read().decode().strip()}")
print(usage.ru_maxrss)
"""


def peak_rss_mb(cmd: list[str]) -> tuple[float, float]:
    """Peak RSS (MB) and wall seconds of one fresh process running ``cmd``."""
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", LAUNCHER, *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{p.stderr.strip()}")
    return int(p.stdout.split()[-1]) / 1024, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nx", type=int, default=206)
    ap.add_argument("--ny", type=int, default=34)
    ap.add_argument("--detector", type=int, default=256)
    ap.add_argument("--factor", type=int, default=4, help="the larger scan has this many times the positions")
    ap.add_argument("--network", default="default")
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "al4dstem-bench")
    ap.add_argument("--batch-size", type=int, default=None)
    a = ap.parse_args()

    side = math.isqrt(a.factor)
    if side * side != a.factor:
        sys.exit("--factor must be a square (each scan side grows by its square root)")
    work = Path(tempfile.mkdtemp(prefix="al4dstem-mem-"))
    model = write_model(a.network, a.detector, work / "model.pt")
    extra = ["--batch-size", str(a.batch_size)] if a.batch_size else []
    results = []
    for nx, ny in ((a.nx, a.ny), (a.nx * side, a.ny * side)):
        data = ensure_scan(a.cache_dir / f"scan-{nx}x{ny}-{a.detector}.npy", nx, ny, a.detector, seed=0)
        warm_page_cache(data)
        cmd = [*al4dstem_command(), "predict", str(data), "--model", str(model), "--out", str(work / f"m{nx}"), *extra]
        rss, wall = peak_rss_mb(cmd)
        size = data.stat().st_size / 1e9
        results.append((nx, ny, size, rss))
        print(f"  {nx} x {ny} scan ({nx * ny} patterns, {size:.2f} GB): peak RSS {rss:.0f} MB ({wall:.1f} s)",
              flush=True)
    (_, _, _, small), (_, _, _, large) = results
    ratio = large / small
    print(f"peak RSS ratio, {a.factor}x the positions: {ratio:.3f} (target <= {LIMIT:.2f}): "
          f"{'PASS' if ratio <= LIMIT else 'FAIL'}")


if __name__ == "__main__":
    main()

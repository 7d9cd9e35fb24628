"""Preprocessing throughput: 512 x 512 uint16 detector frames -> 256 x 256 (and 128 x 128) float32.

    python benchmarks/bench_preprocess.py [--frames 1024] [--repeats 5] [--threads N]

Writes a .npy of synthetic counting-mode frames (sparse Poisson counts, a bright central disk,
a few ghost-like spots) to a temporary folder, reads it once so it sits in the page cache, then
reports patterns per second (best and median of ``--repeats``, and per CPU-second) for:

- ``page-cache read``: copying the frames out of the .npy memory map (what reading costs);
- ``preprocess (RAM)``: ``Preprocessing`` on frames already in memory (compute only), writing
  into a reused output buffer (``out=``), as a streaming engine would; and with a fresh output
  array per batch (adds the kernel's page faults for 64 MiB of new memory per batch);
- ``read + preprocess``: ``Preprocessing`` straight from the memory map (the real pipeline);
- the same with hot pixels (values near 65535, which take the exact overflow path).

Also prints the machine's core count and load average: timings on a shared machine vary.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from al4dstem.data import Preprocessing

DETECTOR = 512
BATCH = 256  # frames per call, as the streaming inference engine reads them


def synthetic_frames(n: int, seed: int = 0, hot_pixels: bool = False) -> np.ndarray:
    """Counting-mode-like frames: ~0.05 e/pixel background, a bright disk, weak spots."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:DETECTOR, :DETECTOR]
    centre = DETECTOR / 2
    rate = 0.05 + 8.0 * (((yy - centre) ** 2 + (xx - centre) ** 2) < 30**2)
    for gy in range(-3, 4):
        for gx in range(-3, 4):
            if gy or gx:
                rate = rate + 0.5 * (((yy - centre - 60 * gy) ** 2 + (xx - centre - 60 * gx) ** 2) < 12**2)
    frames = np.empty((n, DETECTOR, DETECTOR), dtype=np.uint16)
    for i in range(0, n, 64):  # in slices, to keep the float64 temporaries small
        frames[i:i + 64] = rng.poisson(rate, size=(min(64, n - i), DETECTOR, DETECTOR))
    if hot_pixels:
        frames[:, 100, 200] = 65000
        frames[:, 300, 31] = 60000
    return frames


def rate(fn, n: int, repeats: int) -> tuple[float, float, float]:
    """(best, median) patterns per wall-clock second of ``fn()`` processing ``n`` patterns, and
    the best patterns per CPU-second of this process (all threads): less sensitive to other
    programs on a shared machine, and x cores bounds what the machine could do idle."""
    fn()  # warm-up: thread pool, lookup tables, page faults of output buffers
    rates, cpu_rates = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        rates.append(n / (time.perf_counter() - t))
        cpu_rates.append(n / max(time.process_time() - c, 1e-9))
    return max(rates), statistics.median(rates), max(cpu_rates)


def in_batches(source, fn):
    def run():
        for i in range(0, len(source), BATCH):
            fn(source[i:i + BATCH])
    return run


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1024, help="frames in the test file (512 KiB each)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="preprocessing threads (default: all, max 4)")
    args = ap.parse_args(argv)

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {cores} usable cores ({os.cpu_count()} online), {platform.processor() or platform.machine()}, "
          f"python {sys.version.split()[0]}, numpy {np.__version__}")
    print(f"frames: {args.frames} x {DETECTOR} x {DETECTOR} uint16 ({args.frames * DETECTOR**2 * 2 / 2**20:.0f} MiB), "
          f"batches of {BATCH}, {args.repeats} repeats; figures are patterns per second")

    frames = synthetic_frames(args.frames)
    hot = synthetic_frames(min(args.frames, 512), seed=1, hot_pixels=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "frames.npy"
        np.save(path, frames)
        mm = np.load(path, mmap_mode="r")
        buf = np.empty((BATCH, DETECTOR, DETECTOR), dtype=np.uint16)
        rows = [("page-cache read (.npy memmap -> RAM)",
                 rate(in_batches(mm, lambda b: np.copyto(buf[:len(b)], b)), len(mm), args.repeats))]
        for size in (256, 128):
            p = Preprocessing(size=size, scaling="log", normalise="max", n_threads=args.threads)
            out = np.empty((BATCH, size, size), dtype=np.float32)

            def reused(batch, p=p, out=out):
                return p(batch, out=out[:len(batch)])

            rows.append((f"preprocess -> {size}x{size} (RAM)",
                         rate(in_batches(frames, reused), len(frames), args.repeats)))
            rows.append((f"preprocess -> {size}x{size} (RAM, new output array per batch)",
                         rate(in_batches(frames, p), len(frames), args.repeats)))
            rows.append((f"read + preprocess -> {size}x{size} (memmap)",
                         rate(in_batches(mm, reused), len(mm), args.repeats)))
            rows.append((f"preprocess -> {size}x{size}, hot pixels (RAM)",
                         rate(in_batches(hot, reused), len(hot), args.repeats)))
        del mm
    width = max(len(name) for name, _ in rows)
    print(f"{'':<{width}}  {'best/s':>8}  {'median':>8}  {'per CPU-s':>9}")
    for name, (best, median, per_cpu) in rows:
        print(f"{name:<{width}}  {best:8,.0f}  {median:8,.0f}  {per_cpu:9,.0f}")
    if hasattr(os, "getloadavg"):
        print(f"load average during the run: {os.getloadavg()[0]:.1f} (on {cores} cores; > 0.5 means "
              f"other programs shared the machine and the wall-clock figures are low)")


if __name__ == "__main__":
    main()

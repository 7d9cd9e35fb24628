"""Live mapping (issue 10): patterns/s of `al4dstem live` against the rate the detector stream delivers.

A recorded Merlin ``.mib`` (built here frame by frame from a real detector file's frames and
headers, ``--header-from``, or from a synthetic 6-bit header) is replayed over loopback by
LiberTEM-live's Merlin simulator, from memory. Three figures, all on that stream:

- replay floor: frames/s the stream delivers into LiberTEM-live with a trivial UDF (the sum of each
  frame), i.e. the rate of the simulated detector and the network stack;
- live map: patterns/s of the classifier on the same stream (LiberTEM-live's pipelined executor,
  one worker per core), warm: a first acquisition loads the model on every worker, the second is timed;
- offline: patterns/s of the local engine (`predict`'s) on the same ``.mib`` read from disk.

The model is an untrained checkpoint of the detector's size (weights do not change speed). Each
live figure is the best of ``--repeat`` acquisitions. Needs the ``live`` extra.

    python benchmarks/bench_live.py [--header-from REAL.mib] [--rows 64] [--cols 64] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_formats_memory import source_frames, write_mib
from bench_predict import write_model

HDR_KEYS = """HDR,\t
Chip Type (Medipix 3.0, Medipix 3.1, Medipix 3RX):\tMedipix 3RX
Assembly Size (NX1, 2X2):\t   1x1
Counter Depth (number):\t6
Acquisition Type (Normal, Th_scan, Config):\tNormal
Frames in Acquisition (Number):\t{frames}
Frames per Trigger (Number):\t{per_trigger}
End\t
"""


def write_recording(folder: Path, header_from: Path | None, rows: int, cols: int) -> Path:
    head, frames = source_frames(header_from, 256)
    mib = write_mib(folder / f"live-{rows}x{cols}.mib", head, frames, rows, cols)
    # the simulator reads the acquisition header (counter depth, frame counts) from the .hdr
    mib.with_suffix(".hdr").write_text(HDR_KEYS.format(frames=rows * cols, per_trigger=cols))
    return mib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--header-from", type=Path, default=None, help="a real .mib to take frames and headers from")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--cols", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "al4dstem-bench")
    args = parser.parse_args()

    from libertem.udf.sumsigudf import SumSigUDF
    from libertem_live.api import LiveContext

    from al4dstem.data import open_dataset
    from al4dstem.engines.local import predict_dataset
    from al4dstem.integrations.live import map_live, replay
    from al4dstem.models.trained import TrainedNetwork

    args.cache_dir.mkdir(parents=True, exist_ok=True)
    mib = write_recording(args.cache_dir, args.header_from, args.rows, args.cols)
    model = TrainedNetwork.load(write_model("default", 256, args.cache_dir / "live-model-256.pt"))
    shape = (args.rows, args.cols)
    n = args.rows * args.cols
    print(f"{mib}: {args.rows} x {args.cols} frames of 256 x 256, {mib.stat().st_size / 2**20:.0f} MiB; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")

    ctx = LiveContext()
    try:
        with replay(mib, shape) as where:
            floor = max(map_live(None, shape, udf=SumSigUDF(), context=ctx, **where).patterns_per_second
                        for _ in range(args.repeat))
            map_live(model, shape, context=ctx, **where)  # warm: every worker loads the model once
            runs = [map_live(model, shape, context=ctx, **where) for _ in range(args.repeat)]
    finally:
        ctx.close()
    live = max(r.patterns_per_second for r in runs)

    ds = open_dataset(mib)
    predict_dataset(model, ds)  # warm (threads, page cache)
    t0 = time.perf_counter()
    offline_probs, _ = predict_dataset(model, ds)
    offline = n / (time.perf_counter() - t0)
    agree = float(np.abs(runs[-1].probs - offline_probs).max())

    print()
    print("| what | patterns/s | ratio |")
    print("|---|---|---|")
    print(f"| replay floor (stream into LiberTEM-live, sum of each frame) | {floor:,.0f} | 1.00 |")
    print(f"| live map (al4dstem live, warm) | {live:,.0f} | {live / floor:.2f} of the floor |")
    print(f"| offline map of the same .mib (local engine) | {offline:,.0f} | {offline / floor:.2f} of the floor |")
    print(f"\nlive vs offline map: max abs difference {agree:.2e}")


if __name__ == "__main__":
    main()

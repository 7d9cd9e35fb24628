"""Peak memory of `al4dstem info` and `al4dstem predict` on a 2 GB scan in a lazily read detector format.

Issue 8's figure: a Merlin ``.mib`` of about 2 GB (and, with ``--zspy``, the same scan as a HyperSpy
``.zspy``) is read through rosettasciio in scan-sized chunks, so the peak resident set size (RSS) of
either command stays far below the file's size, and close to that of a scan four times smaller.

The ``.mib`` is built frame by frame: each frame is a copy of a Merlin frame header (from
``--header-from``, a real ``.mib`` whose frames are also reused as the patterns, so the data look
like a detector's; else a header like the test suite's and Poisson patterns) with its frame number
set, plus a ``.hdr`` giving the frame count and one trigger per scan line. Each command runs in a
fresh process started by a tiny launcher; peak RSS is the kernel's ``ru_maxrss`` of that process.
The model is an untrained checkpoint of the detector's size (weights do not change memory).

    python benchmarks/bench_formats_memory.py [--header-from REAL.mib] [--gb 2] [--zspy] [--cache-dir DIR]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_memory import peak_rss_mb
from bench_predict import al4dstem_command, warm_page_cache

HEAD = 384


def synthetic_header(det: int) -> bytes:
    head = (f"MQ1,000001,{HEAD:05d},01,{det:04d},{det:04d},U08,   1x1,01,2021-05-07 16:51:10.905800,0.100000,0,0,0,"
            "4.0E+1,5.1E+2,0.0E+0,0.0E+0,0.0E+0,0.0E+0,0.0E+0,0.0E+0,3RX,068,511,000,000,000,000,000,000,100,255,"
            "100,125,100,100,080,100,090,030,128,004,255,126,128,174,172,511,511,MQ1A,"
            "2021-05-07T16:51:10.905800928Z,100000000ns,6,")
    return head.encode().ljust(HEAD, b"\0")


def source_frames(header_from: Path | None, det: int) -> tuple[bytes, list[bytes]]:
    """A frame header and a few frames' data to cycle through."""
    if header_from is None:
        rng = np.random.default_rng(0)
        return synthetic_header(det), [rng.poisson(3.0, (det, det)).astype(np.uint8).tobytes() for _ in range(8)]
    raw = header_from.read_bytes()
    head = raw[:HEAD]
    fields = head.decode("latin1").split(",")
    head_size, rows, cols, kind = int(fields[2]), int(fields[5]), int(fields[4]), fields[6]
    itemsize = {"U08": 1, "U16": 2, "U32": 4}[kind]
    frame = head_size + rows * cols * itemsize
    return raw[:head_size], [raw[i + head_size:i + frame] for i in range(0, len(raw) - frame + 1, frame)]


def with_number(head: bytes, number: int) -> bytes:
    fields = head.split(b",")
    fields[1] = f"{number:06d}".encode()
    return b",".join(fields)


def write_mib(path: Path, head: bytes, frames: list[bytes], rows: int, cols: int) -> Path:
    if path.exists() and path.stat().st_size == rows * cols * (len(head) + len(frames[0])):
        return path
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb", buffering=16 << 20) as f:
        for i in range(rows * cols):
            f.write(with_number(head, i + 1))
            f.write(frames[i % len(frames)])
    tmp.rename(path)
    path.with_suffix(".hdr").write_text(f"HDR,\t\nFrames in Acquisition (Number):\t{rows * cols}\n"
                                        f"Frames per Trigger (Number):\t{cols}\nEnd\t\n")
    return path


def write_zspy(path: Path, mib: Path) -> Path:
    """The same scan as a HyperSpy .zspy (chunks of one scan row), written row by row from the .mib."""
    if path.exists():
        return path
    import zarr  # noqa: F401  (rosettasciio's zspy writer needs it)
    from rsciio.zspy import file_writer

    from al4dstem.data import open_dataset

    ds = open_dataset(mib)
    data = ds.array.darray.rechunk((1, ds.scan_shape[1], *ds.detector_shape))
    axes = [{"size": n, "index_in_array": i, "name": name, "scale": 1.0, "offset": 0.0, "units": "",
             "navigate": i < 2} for i, (n, name) in enumerate(zip(ds.shape, ("y", "x", "ky", "kx"), strict=True))]
    file_writer(str(path), {"data": data, "axes": axes, "metadata": {"General": {"title": "bench"}, "Signal": {}},
                            "original_metadata": {}, "tmp_parameters": {}, "attributes": {"_lazy": True,
                                                                                          "ragged": False},
                            "learning_results": {}, "models": {}, "package_info": {"name": "bench", "version": "0"}},
                write_dataset=True)
    return path


def measure(data: Path, model: Path, out: Path) -> dict:
    cmd = al4dstem_command()
    info_mb, info_s = peak_rss_mb([*cmd, "info", str(data)])
    predict_mb, predict_s = peak_rss_mb([*cmd, "predict", str(data), "--model", str(model), "--out", str(out),
                                         "--no-figure"])
    return {"info_mb": info_mb, "info_s": info_s, "predict_mb": predict_mb, "predict_s": predict_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--header-from", type=Path, default=None, help="a real Merlin .mib to copy headers and frames from")
    ap.add_argument("--gb", type=float, default=2.0, help="size of the large scan")
    ap.add_argument("--detector", type=int, default=256, help="detector side without --header-from")
    ap.add_argument("--zspy", action="store_true", help="also measure the scan written as .zspy")
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "al4dstem-bench")
    args = ap.parse_args()
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    head, frames = source_frames(args.header_from, args.detector)
    frame_bytes = len(head) + len(frames[0])
    n = int(args.gb * 2**30 // frame_bytes)
    side = int(math.sqrt(n))
    shapes = {"large": (side, n // side), "quarter": (side // 2, n // side // 2)}
    model_shape = None
    results = {}
    for name, (rows, cols) in shapes.items():
        t = time.perf_counter()
        mib = write_mib(args.cache_dir / f"merlin-{rows}x{cols}.mib", head, frames, rows, cols)
        print(f"{mib}: {rows} x {cols} scan, {mib.stat().st_size / 2**30:.2f} GiB ({time.perf_counter() - t:.0f} s)")
        if model_shape is None:  # an untrained model of the detector's size
            from al4dstem.data import open_dataset
            from al4dstem.models import CNNClassifier

            model_shape = open_dataset(mib).detector_shape
            model = args.cache_dir / f"model-{model_shape[0]}x{model_shape[1]}.pt"
            CNNClassifier(network="default", random_state=0).initialize(model_shape).save(model)
        files = [mib]
        if args.zspy:
            files.append(write_zspy(mib.with_suffix(".zspy"), mib))
        for data in files:
            warm_page_cache(data) if data.is_file() else None
            results[(name, data.suffix)] = measure(data, model, args.cache_dir / f"map-{name}")
            r = results[(name, data.suffix)]
            print(f"  {data.suffix}: info peak {r['info_mb']:.0f} MB ({r['info_s']:.0f} s), "
                  f"predict peak {r['predict_mb']:.0f} MB ({r['predict_s']:.0f} s)")
    print("\n| scan | format | file | info peak RSS | predict peak RSS |")
    print("|---|---|---|---|---|")
    for (name, suffix), r in results.items():
        rows, cols = shapes[name]
        size = args.cache_dir / f"merlin-{rows}x{cols}{suffix}"
        gib = size.stat().st_size / 2**30 if size.is_file() else sum(
            p.stat().st_size for p in size.rglob("*") if p.is_file()) / 2**30
        print(f"| {rows} x {cols} | {suffix} | {gib:.2f} GiB | {r['info_mb']:.0f} MB | {r['predict_mb']:.0f} MB |")


if __name__ == "__main__":
    main()

"""``al4dstem info`` through the real command line: good data, and every bad input as one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

AL4DSTEM = str(Path(sys.executable).with_name("al4dstem"))


def start(*args, cwd=None) -> subprocess.Popen:
    env = {**os.environ, "COLUMNS": "80", "TERM": "dumb"}
    env.pop("FORCE_COLOR", None)
    exe = AL4DSTEM if Path(AL4DSTEM).exists() else "al4dstem"
    return subprocess.Popen([exe, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=cwd)


def finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run(*args, cwd=None) -> subprocess.CompletedProcess:
    return finish(start(*args, cwd=cwd))


def beam_scan(rows=6, cols=40, k=32, dtype=np.uint16):
    """A scan whose bright field rises from left to right."""
    yy, xx = np.mgrid[:k, :k]
    disk = ((yy - k // 2) ** 2 + (xx - k // 2) ** 2) <= (k // 6) ** 2
    arr = np.zeros((rows, cols, k, k), dtype)
    arr[:, :, disk] = (np.arange(cols) * 5 + 1).astype(dtype)[None, :, None]
    return arr


def test_info_on_npy(tmp_path):
    np.save(tmp_path / "scan.npy", beam_scan())
    r = run("info", tmp_path / "scan.npy")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    out = r.stdout
    assert "format      npy" in out
    assert "scan        40 x 6 (cols x rows), 240 positions" in out
    assert "detector    32 x 32" in out and "dtype       uint16" in out
    assert "non-finite  0 patterns" in out
    assert "KiB on disk" in out
    image = out.split("non-finite patterns):\n", 1)[1].splitlines()
    assert len(image) == 6  # 40 x 6 scan, doubled to 80 x 12 pixels: 6 lines of text
    assert all(len(line) <= 80 for line in image)
    assert image[0][0] == " " and image[0][-1] == "@"  # dark on the left, bright on the right
    assert "\x1b[" not in out  # no colour codes in a pipe


def test_info_reports_nonfinite_patterns_and_hdf5_dataset(tmp_path):
    arr = beam_scan(dtype=np.float32)
    arr[2, 5, 0, 0] = np.nan
    arr[4, 1, 3, 3] = np.inf
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["a"] = arr
        f["b"] = arr[:2]
    r = run("info", tmp_path / "two.h5", "--dataset", "a")
    assert r.returncode == 2, r.stderr  # the report is printed, the bad patterns fail the command
    assert "non-finite  2 patterns hold NaN or inf, e.g. x=5, y=2" in r.stdout
    assert "two.h5:a" in r.stdout and "format      HDF5" in r.stdout
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and "2 patterns hold NaN or inf" in r.stderr
    assert "!" in r.stdout.split("non-finite patterns):\n", 1)[1]


def bad_inputs(tmp: Path):
    """(name, path, extra args, words the message must hold) for each bad input."""
    np.save(tmp / "cube.npy", np.zeros((3, 4, 5), np.uint16))
    np.save(tmp / "cut.npy", beam_scan())
    data = (tmp / "cut.npy").read_bytes()
    (tmp / "cut.npy").write_bytes(data[: len(data) // 3])
    (tmp / "scan.tif").write_bytes(b"II*\0")
    with h5py.File(tmp / "none.h5", "w") as f:
        f["image"] = np.zeros((4, 4))
    with h5py.File(tmp / "two.h5", "w") as f:
        f["a"] = np.zeros((1, 2, 4, 4))
        f["b"] = np.zeros((2, 1, 4, 4))
    (tmp / "gaps").mkdir()
    (tmp / "sizes").mkdir()
    for x, y in [(0, 0), (1, 0), (0, 1)]:
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp / "gaps" / f"{x}_{y}.png")
    for x, y in [(0, 0), (1, 0), (0, 1), (1, 1)]:
        Image.fromarray(np.zeros((4, 4 + (x == y == 1)), np.uint8)).save(tmp / "sizes" / f"{x}_{y}.png")
    (tmp / "short.raw").write_bytes(b"\0" * 1000)
    return [
        ("missing", tmp / "missing.npy", [], "no such file"),
        ("extension", tmp / "scan.tif", [], "unknown data format"),
        ("3-D array", tmp / "cube.npy", [], "expected a 4-D dataset"),
        ("truncated npy", tmp / "cut.npy", [], "truncated"),
        ("no 4-D dataset", tmp / "none.h5", [], "no 4-D dataset"),
        ("several", tmp / "two.h5", [], "pick one with --dataset"),
        ("wrong --dataset", tmp / "two.h5", ["--dataset", "c"], "no such dataset"),
        ("png gaps", tmp / "gaps", [], "x=1, y=1"),
        ("png sizes", tmp / "sizes", [], "1_1.png: image is 5 x 4 pixels"),
        ("raw size", tmp / "short.raw", [], "not a whole number of EMPAD frames"),
    ]


def test_bad_inputs_fail_with_one_line(tmp_path):
    cases = bad_inputs(tmp_path)
    procs = [start("info", path, *extra) for _, path, extra, _ in cases]  # all at once: faster
    failures = []
    for (name, path, _, words), proc in zip(cases, procs, strict=True):
        r = finish(proc)
        lines = r.stderr.splitlines()
        ok = (r.returncode != 0 and len(lines) == 1 and lines[0].strip() and "Traceback" not in r.stderr
              and path.name in lines[0] and words in lines[0] and r.stdout == "")
        if not ok:
            failures.append(f"{name}: rc={r.returncode} stderr={r.stderr!r} stdout={r.stdout[:200]!r}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("args", [["info"], ["info", "a.npy", "--bogus"]])
def test_usage_errors_exit_non_zero(args, tmp_path):
    r = run(*args, cwd=tmp_path)
    lines = [s for s in r.stderr.splitlines() if s.strip()]
    assert r.returncode != 0 and "Traceback" not in r.stderr and len(lines) == 1, r.stderr


def test_scan_image_fits_the_width_and_marks_bad_pixels():
    import io

    from rich.console import Console

    from al4dstem.data.preview import ScanImage, fitted_scale, resize

    assert fitted_scale((34, 206), 80, 80) == (3, 1)
    assert fitted_scale((4, 10), 80, 80) == (1, 4)
    img = np.arange(34 * 206, dtype=float).reshape(34, 206)
    img[10, 100] = np.nan
    small = resize(img, 3)
    assert small.shape == (12, 69)
    assert np.isnan(small[3, 33]) and np.isnan(small).sum() == 1
    assert small[0, 0] == pytest.approx(img[:3, :3].mean())
    assert small[-1, -1] == pytest.approx(img[33:, 204:].mean())  # padding does not count

    plain = io.StringIO()
    Console(file=plain, width=80, color_system=None).print(ScanImage(img))
    lines = plain.getvalue().splitlines()
    assert len(lines) == 6 and max(map(len, lines)) <= 69 and "!" in lines[1]
    colour = io.StringIO()
    Console(file=colour, width=80, color_system="truecolor").print(ScanImage(img))
    text = colour.getvalue()
    assert text.count("\u2580") == 69 * 6 and "48;2;230;40;40" in text  # half blocks; bad pixel red (below)

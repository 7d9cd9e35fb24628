"""Provenance, several scans and calibrations, through the real command: train records where a model came
from and `info MODEL.pt` shows it; predict refuses a scan of another calibration unless told, and records
the map's provenance; real detector files (the folder named by $AL4DSTEM_REAL_FILES) go through info,
train and predict."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run

from al4dstem.provenance import describe_sampler, fingerprint

rsciio = pytest.importorskip("rsciio")

REAL = Path(os.environ.get("AL4DSTEM_REAL_FILES", "/nonexistent"))  # small real files, kept outside the repository


def write_scan(path: Path, pixel: float = 0.05, det: int = 32, seed: int = 0, rows: int = 4, cols: int = 5):
    """A small calibrated scan whose classes differ visibly (a bright column, row or neither)."""
    from rsciio.hspy import file_writer

    rng = np.random.default_rng(seed)
    data = rng.poisson(2.0, (rows, cols, det, det)).astype(np.uint16)
    for y in range(rows):
        for x in range(cols):
            c = (x + y) % 3
            if c == 1:
                data[y, x, :, det // 2] += 50
            elif c == 2:
                data[y, x, det // 2, :] += 50
    axes = [{"size": n, "index_in_array": i, "name": name, "scale": scale, "offset": 0.0, "units": units,
             "navigate": i < 2} for i, (n, name, scale, units) in
            enumerate(zip(data.shape, ("y", "x", "ky", "kx"), (2.0, 2.0, pixel, pixel), ("nm", "nm", "1/nm", "1/nm"),
                          strict=True))]
    file_writer(str(path), {"data": data, "axes": axes, "original_metadata": {}, "tmp_parameters": {},
                            "metadata": {"General": {"title": path.stem}, "Signal": {},
                                         "Acquisition_instrument": {"TEM": {"beam_energy": 200.0}}},
                            "attributes": {"_lazy": False, "ragged": False}, "learning_results": {}, "models": {},
                            "package_info": {"name": "test", "version": "0"}})
    return data


def test_fingerprint_tells_files_apart_fast(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"\0" * 3_000_000)
    b.write_bytes(b"\0" * 2_999_999 + b"\1")  # the last byte differs: the last sample sees it
    assert fingerprint(a) != fingerprint(b)
    b.write_bytes(b"\0" * 3_000_000)
    assert fingerprint(a) == fingerprint(b)


class _Odd:
    """A duck-typed sampler whose settings are not plain values, one of them with a line break."""

    def __init__(self, weights=None, note="a\nb", hidden=1):
        self.weights = np.ones(3) if weights is None else weights
        self.note = note  # ``hidden`` is not kept as an attribute: not described

    def query(self, context, n):
        return np.arange(0)


def test_describe_sampler_names_the_sampler_and_its_settings():
    from al4dstem.strategies import get_sampler

    assert describe_sampler(get_sampler("grid-midpoint", step=8, random_state=3)) == \
        "grid-midpoint random_state=3 step=8"
    assert describe_sampler(get_sampler("random", random_state=0)) == "random random_state=0"
    assert describe_sampler(_Odd()) == "test_provenance:_Odd note=a b weights=ndarray"


def test_several_scans_provenance_and_calibration(tmp_path):
    write_scan(tmp_path / "a.hspy", seed=1)
    write_scan(tmp_path / "b.hspy", seed=2)
    write_scan(tmp_path / "c.hspy", pixel=0.10, seed=3)  # twice the pixel size: other patterns to a network
    write_scan(tmp_path / "d.hspy", det=16, seed=4)
    rows = ["x,y,label,scan"]
    classes = ("none", "vertical", "horizontal")
    for scan in ("a", "b.hspy"):  # a name without extension, and a file name
        rows += [f"{x},{y},{classes[(x + y) % 3]},{scan}" for y in range(4) for x in range(5)]
    rows.append("0,0,none,elsewhere.mib")  # a scan not given: left out
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    model = tmp_path / "m.pt"
    r = run("train", tmp_path / "a.hspy", tmp_path / "b.hspy", "--labels", tmp_path / "labels.csv", "--out", model,
            "--epochs", "2")
    assert r.returncode == 0, r.stderr
    assert "on 40 labels" in r.stdout and "1 rows of" in r.stderr
    assert "class shares in the scan, estimated on 40 positions" in r.stdout  # both scans, not the first alone

    r = run("info", model)
    assert r.returncode == 0, r.stderr
    for words in ("data 1", str(tmp_path / "a.hspy"), "data 2", str(tmp_path / "b.hspy"), "blake2b-sampled:",
                  "0.05 1/nm", "200 keV", "40 labels used", "al4dstem train", "rosettasciio"):
        assert words in r.stdout, (words, r.stdout)

    r = run("predict", tmp_path / "c.hspy", "--model", model, "--out", tmp_path / "p")
    assert_one_line_error(r, "c.hspy", "detector pixel 0.1 1/nm, not 0.05 1/nm", "--allow-other-calibration")
    assert not list(tmp_path.glob("p*"))

    r = run("predict", tmp_path / "c.hspy", "--model", model, "--out", tmp_path / "p", "--format", "zspy",
            "--allow-other-calibration")
    assert r.returncode == 0, r.stderr
    from al4dstem.export import read_map

    data, cal, meta = read_map(tmp_path / "p.zspy")
    assert data.shape == (4, 5, 3) and cal.scan[1].scale == 2.0 and cal.scan[1].units == "nm"
    record = json.loads((tmp_path / "p.json").read_text())
    assert record["data"]["path"] == str((tmp_path / "c.hspy").resolve())
    assert record["model"]["provenance"]["labels"]["rows_used"] == 40
    assert "--allow-other-calibration" in record["command"]
    assert json.loads(meta["provenance_json"]) == record

    r = run("train", tmp_path / "a.hspy", tmp_path / "d.hspy", "--labels", tmp_path / "labels.csv", "--out",
            tmp_path / "m2.pt")
    assert_one_line_error(r, "d.hspy has 16 x 16 patterns", "a model learns one detector size")
    r = run("train", tmp_path / "a.hspy", tmp_path / "c.hspy", "--labels", tmp_path / "labels.csv", "--out",
            tmp_path / "m2.pt")
    assert_one_line_error(r, "c.hspy", "detector pixel 0.1 1/nm", "--allow-other-calibration")


def test_several_scans_need_a_scan_column(tmp_path):
    write_scan(tmp_path / "a.hspy")
    write_scan(tmp_path / "b.hspy")
    (tmp_path / "labels.csv").write_text("x,y,label\n0,0,none\n")
    r = run("train", tmp_path / "a.hspy", tmp_path / "b.hspy", "--labels", tmp_path / "labels.csv", "--out",
            tmp_path / "m.pt")
    assert_one_line_error(r, "labels.csv: no scan column", "each label row names its scan")


real = pytest.mark.skipif(not REAL.is_dir(), reason=f"no real detector files at {REAL}")


@real
def test_real_files_info_train_predict(tmp_path):
    expected = {"001_4x2_6bit.mib": "(2, 4, 256, 256)", "002_4x2_6bit_roi128.mib": "(2, 4, 128, 256)",
                "test1.blo": "(3, 2, 144, 144)"}
    for name, shape in expected.items():
        r = run("info", REAL / name)
        assert r.returncode == 0, r.stderr
        assert f"array       {shape}" in r.stdout and "dtype       uint8" in r.stdout
    r = run("info", REAL / "test1.blo")
    assert "scan step   12.8 nm" in r.stdout and "beam        200 keV" in r.stdout
    assert "pixel size  0.0160617 cm" in r.stdout
    classes = ("none", "vertical", "horizontal")
    (tmp_path / "labels.csv").write_text("x,y,label\n" + "".join(
        f"{x},{y},{classes[(x + 2 * y) % 3]}\n" for y in range(2) for x in range(4)))
    model = tmp_path / "mib.pt"
    r = run("train", REAL / "001_4x2_6bit.mib", "--labels", tmp_path / "labels.csv", "--out", model, "--epochs", "1")
    assert r.returncode == 0, r.stderr
    r = run("predict", REAL / "001_4x2_6bit.mib", "--model", model, "--out", tmp_path / "map", "--format", "emd")
    assert r.returncode == 0, r.stderr
    from al4dstem.export import read_map

    assert read_map(tmp_path / "map.emd")[0].shape == (2, 4, 3)
    r = run("predict", REAL / "002_4x2_6bit_roi128.mib", "--model", model, "--out", tmp_path / "roi")
    assert_one_line_error(r, "trained on 256 x 256 detector patterns", "128 x 256")

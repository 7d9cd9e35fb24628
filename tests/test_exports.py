"""Maps out to the ecosystem: .hspy/.zspy/.emd reopened with rosettasciio (and py4DSTEM), their axes and
metadata; the prediction files of every format; the figure's scale bar and mixture key."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from al4dstem.data.calibration import Axis, Calibration
from al4dstem.errors import Al4dstemError
from al4dstem.export import read_map, write_map
from al4dstem.figures import scale_bar_length
from al4dstem.maps import output_paths, write_prediction

pytest.importorskip("rsciio")

CAL = Calibration((Axis(2.5, 0.0, "nm", "y"), Axis(4.0, 10.0, "nm", "x"), Axis(), Axis()), 300.0)
PROVENANCE = {"model": {"path": "/m/model.pt"}, "data": {"path": "/d/scan.mib"}, "command": "al4dstem predict"}


def prediction(rows=4, cols=6, seed=0):
    probs = np.random.default_rng(seed).dirichlet([1, 1, 1], size=(rows, cols)).astype(np.float32)
    valid = np.ones((rows, cols), bool)
    valid[1, 2] = False
    return probs, valid


@pytest.mark.parametrize("fmt", ["hspy", "zspy", "emd"])
def test_maps_reopen_with_their_axes(tmp_path, fmt):
    probs, valid = prediction()
    path = write_map(tmp_path / f"m.{fmt}", fmt, probs, valid, CAL, PROVENANCE)
    data, cal, meta = read_map(path)  # rosettasciio's own reader
    assert data.shape == (4, 6, 3) and data.dtype == np.float32
    assert np.isnan(data[1, 2]).all()  # not classified
    np.testing.assert_allclose(data[valid], probs[valid])
    rows_axis, cols_axis = cal.scan
    assert (rows_axis.scale, rows_axis.units) == (2.5, "nm")
    assert (cols_axis.scale, cols_axis.offset, cols_axis.units) == (4.0, 10.0, "nm")
    if fmt != "emd":  # rosettasciio puts emdfile metadata elsewhere; py4DSTEM reads it (below)
        assert meta["classes"] == ["none", "vertical", "horizontal"]
        assert json.loads(meta["provenance_json"])["model"]["path"] == "/m/model.pt"


def test_hspy_navigation_axes_are_the_scan(tmp_path):
    from rsciio.hspy import file_reader

    probs, valid = prediction()
    write_map(tmp_path / "m.hspy", "hspy", probs, valid, CAL, PROVENANCE)
    (sig,) = file_reader(str(tmp_path / "m.hspy"))
    axes = sorted(sig["axes"], key=lambda a: a["index_in_array"])
    assert [(a["name"], a["navigate"], a["size"]) for a in axes] == [("y", True, 4), ("x", True, 6),
                                                                      ("class", False, 3)]
    assert sig["metadata"]["Acquisition_instrument"]["TEM"]["beam_energy"] == 300.0


def test_emd_opens_in_py4dstem(tmp_path):
    py4dstem = pytest.importorskip("py4DSTEM")
    probs, valid = prediction()
    write_map(tmp_path / "m.emd", "emd", probs, valid, CAL, PROVENANCE)
    arr = py4dstem.read(str(tmp_path / "m.emd"))
    assert arr.shape == (4, 6, 3)
    assert arr.dim_units[:2] == ("nm", "nm")  # dim0 = Rx = scan rows, dim1 = Ry = scan cols
    np.testing.assert_allclose(arr.dims[1][:2], [10.0, 14.0])
    assert json.loads(arr.metadata["al4dstem"]["provenance_json"])["command"] == "al4dstem predict"


@pytest.mark.parametrize("fmt,names", [
    ("npy", ["p.json", "p.npy", "p.png", "p_figure.png", "p_valid.npy"]),
    ("hspy", ["p.hspy", "p.json", "p.png", "p_figure.png"]),
    ("zspy", ["p.json", "p.png", "p.zspy", "p_figure.png"]),
    ("emd", ["p.emd", "p.json", "p.png", "p_figure.png"]),
])
def test_prediction_files_of_every_format(tmp_path, fmt, names):
    probs, valid = prediction()
    paths = write_prediction(tmp_path / "p", probs, valid, format=fmt, calibration=CAL, provenance=PROVENANCE)
    assert sorted(p.name for p in paths.values()) == names
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # no temporary file left
    assert json.loads((tmp_path / "p.json").read_text())["data"]["path"] == "/d/scan.mib"
    again = write_prediction(tmp_path / "p", probs[..., ::-1].copy(), valid, format=fmt, calibration=CAL,
                             provenance=PROVENANCE)  # a second run replaces the map whole (a .zspy folder too)
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    if fmt != "npy":
        np.testing.assert_allclose(read_map(again["probs"])[0][0, 0], probs[0, 0, ::-1])


def test_prefix_and_format_checks(tmp_path):
    assert output_paths(tmp_path / "m.hspy", "hspy")["probs"].name == "m.hspy"
    assert "valid" not in output_paths(tmp_path / "m", "zspy")
    with pytest.raises(Al4dstemError, match="--format 'tif': one of npy, hspy, zspy, emd"):
        output_paths(tmp_path / "m", "tif")
    (tmp_path / "p.zspy").mkdir()  # somebody's folder, not a map
    probs, valid = prediction()
    with pytest.raises(Al4dstemError, match=r"p.zspy: is a folder, expected a file name"):
        write_prediction(tmp_path / "p", probs, valid, format="zspy")


@settings(max_examples=200, deadline=None)
@given(step=st.floats(1e-4, 1e4), n=st.integers(1, 5000))
def test_scale_bar_is_a_round_length_within_the_map(step, n):
    length = scale_bar_length(step, n)
    mantissa = length / 10 ** np.floor(np.log10(length) + 1e-12)
    assert any(np.isclose(mantissa, m) for m in (1, 2, 5))
    assert length <= max(step, 0.2 * n * step) * (1 + 1e-9)
    assert length > 0.2 * n * step / 2.5 * (1 - 1e-9) or length >= step * (1 - 1e-9)


def test_figure_has_scale_bar_and_key(tmp_path, monkeypatch):
    from al4dstem import figures, maps

    drawn = {}
    monkeypatch.setattr(figures, "add_scale_bar", lambda ax, step, units, cols, rows: drawn.setdefault(
        "bar", []).append((step, units)) or 1.0)
    monkeypatch.setattr(figures, "draw_ternary_key", lambda ax, scheme: drawn.setdefault("key", scheme))
    probs, valid = prediction(rows=34, cols=206)
    maps.save_figure(probs, tmp_path / "f.png", valid, calibration=CAL, scheme="class")
    assert drawn["bar"] == [(4.0, "nm"), (4.0, "nm")] and drawn["key"] == "class"
    drawn.clear()
    maps.save_figure(probs, tmp_path / "g.png", valid)  # no calibration: no bar
    assert "bar" not in drawn


def test_real_figure_is_drawn(tmp_path):
    probs, valid = prediction(rows=10, cols=12)
    write_prediction(tmp_path / "p", probs, valid, calibration=CAL, scheme="class")
    from PIL import Image

    assert Image.open(tmp_path / "p_figure.png").size[0] > 800

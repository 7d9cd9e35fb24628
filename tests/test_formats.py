"""The format registry: every reader on a file it writes itself, --scan-shape, calibrations, and the
real detector files in the folder named by $AL4DSTEM_REAL_FILES (skipped where it is unset or absent)."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from al4dstem.data import open_dataset
from al4dstem.data.arrays import FlatFrames, LazyFrames
from al4dstem.data.calibration import Axis, Calibration, normalise_unit
from al4dstem.data.formats import FORMATS, find_format, parse_scan_shape
from al4dstem.errors import Al4dstemError

pytest.importorskip("rsciio")

# Small files written by real detectors are not ours to redistribute: point this at a local copy.
REAL = Path(os.environ.get("AL4DSTEM_REAL_FILES", "/nonexistent"))


def frames(n=6, det=(8, 6), dtype=np.uint16, seed=0):
    """Frames whose first pixel is their own index: a misplaced frame shows at once."""
    arr = np.random.default_rng(seed).integers(0, 200, (n, *det)).astype(dtype)
    arr[:, 0, 0] = np.arange(n)
    return arr


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert msg and "\n" not in msg
    return msg


def assert_scan(ds, want: np.ndarray):
    """The dataset reads ``want`` whole, pattern by pattern (x = column, y = row) and batch by batch."""
    assert ds.shape == want.shape, (ds.shape, want.shape)
    np.testing.assert_array_equal(ds.load(), want)
    rows, cols = want.shape[:2]
    np.testing.assert_array_equal(ds.pattern(cols - 1, 0), want[0, cols - 1])
    np.testing.assert_array_equal(ds.get([(0, rows - 1), (cols - 1, 0)]), want[[rows - 1, 0], [0, cols - 1]])
    np.testing.assert_array_equal(np.concatenate([b.patterns for b in ds.iter_batches(2)]),
                                  want.reshape(-1, *want.shape[2:]))


def signal(data, axes_units=("nm", "nm", "1/nm", "1/nm"), scales=(2.0, 3.0, 0.05, 0.05), beam=200.0, title="scan"):
    """A rosettasciio signal dictionary, as HyperSpy hands one to a writer."""
    names = ("y", "x", "ky", "kx")[-data.ndim:]
    axes = [{"size": n, "index_in_array": i, "name": names[i], "scale": scales[-data.ndim:][i], "offset": 0.0,
             "units": axes_units[-data.ndim:][i], "navigate": i < data.ndim - 2, "_type": "UniformDataAxis"}
            for i, n in enumerate(data.shape)]
    return {"data": data, "axes": axes, "metadata": {"General": {"title": title},
                                                       "Signal": {"signal_type": "electron_diffraction"},
                                                       "Acquisition_instrument": {"TEM": {"beam_energy": beam}}},
            "original_metadata": {}, "tmp_parameters": {}, "attributes": {"_lazy": False, "ragged": False},
            "learning_results": {}, "models": {}, "package_info": {"name": "test", "version": "0"}}


# ---------------------------------------------------------------- HyperSpy files


@pytest.mark.parametrize("ext", ["hspy", "zspy"])
def test_hyperspy_files_are_read_lazily_with_calibrations(tmp_path, ext):
    import importlib

    scan = frames(12).reshape(3, 4, 8, 6)
    importlib.import_module(f"rsciio.{ext}").file_writer(str(tmp_path / f"s.{ext}"), signal(scan))
    ds = open_dataset(tmp_path / f"s.{ext}")
    assert ds.format == ext and isinstance(ds.array, LazyFrames) and "lazy" in ds.reader
    assert_scan(ds, scan)
    cal = ds.calibration
    assert [a.units for a in cal.axes] == ["nm", "nm", "1/nm", "1/nm"]
    assert (cal.scan[0].scale, cal.scan[1].scale, cal.detector[0].scale) == (2.0, 3.0, 0.05)
    assert cal.beam_energy_kev == 200.0


def test_hyperspy_hdf5_is_told_from_plain_hdf5(tmp_path):
    from rsciio.hspy import file_writer

    scan = frames(4).reshape(2, 2, 8, 6)
    file_writer(str(tmp_path / "s.hdf5"), signal(scan))
    assert find_format(tmp_path / "s.hdf5").name == "hspy"
    with h5py.File(tmp_path / "plain.hdf5", "w") as f:
        f["scan"] = scan
    assert find_format(tmp_path / "plain.hdf5").name == "HDF5"
    assert_scan(open_dataset(tmp_path / "s.hdf5"), scan)


def test_a_hyperspy_stack_needs_a_scan_shape(tmp_path):
    from rsciio.hspy import file_writer

    stack = frames(6)
    file_writer(str(tmp_path / "stack.hspy"), signal(stack))
    with pytest.raises(Al4dstemError, match=r"stack.hspy: holds 6 frames of 8 x 6 pixels and no scan shape: give "
                                            r"--scan-shape ROWSxCOLS") as e:
        open_dataset(tmp_path / "stack.hspy")
    one_line(e)
    ds = open_dataset(tmp_path / "stack.hspy", scan_shape="2x3")
    assert isinstance(ds.array, FlatFrames)
    assert_scan(ds, stack.reshape(2, 3, 8, 6))
    assert ds.calibration.detector[0].units == "1/nm" and not ds.calibration.scan[0].calibrated


# ---------------------------------------------------------------- detector formats


def write_mib(path: Path, stack: np.ndarray, per_trigger: int | None, header_time: bool = False) -> None:
    """Merlin frames (384-byte headers, big-endian 12-bit counters), and a .hdr when ``per_trigger`` is given."""
    det = stack.shape[1:]
    with open(path, "wb") as f:
        for i, frame in enumerate(stack.astype(">u2")):
            stamp = f"2021-05-07T16:51:{10 + i * 0.01 + (i // 3) * 0.5:012.9f}Z" if header_time else \
                "2021-05-07T16:51:10.905800928Z"
            head = (f"MQ1,{i + 1:06d},00384,01,{det[1]:04d},{det[0]:04d},U16,   1x1,01,2021-05-07 16:51:10.905800,"
                    f"0.100000,0,0,0,1.2E+2,5.1E+2,0.0E+0,0.0E+0,0.0E+0,0.0E+0,0.0E+0,0.0E+0,3RX,175,511,000,000,"
                    f"000,000,000,000,125,255,125,125,100,100,082,100,087,030,128,004,255,129,128,176,168,511,511,"
                    f"MQ1A,{stamp},100000000ns,12,")
            f.write(head.encode().ljust(384, b"\0"))
            f.write(frame.tobytes())
    if per_trigger is not None:
        path.with_suffix(".hdr").write_text(f"HDR,\t\nFrames in Acquisition (Number):\t{len(stack)}\n"
                                            f"Frames per Trigger (Number):\t{per_trigger}\nEnd\t\n")


def test_mib_scan_shape_from_hdr_and_given(tmp_path):
    stack = frames(12, det=(16, 16))
    write_mib(tmp_path / "s.mib", stack, per_trigger=4)
    ds = open_dataset(tmp_path / "s.mib")
    assert ds.format == "mib" and isinstance(ds.array, LazyFrames) and not ds.notes
    flipped = stack[:, ::-1, :]  # rosettasciio stores Merlin frames bottom row first: turned upright
    assert_scan(ds, flipped.reshape(3, 4, 16, 16))
    ds = open_dataset(tmp_path / "s.mib", scan_shape="4x3")  # the hdr overridden
    assert_scan(ds, flipped.reshape(4, 3, 16, 16))
    assert ds.notes == ("--scan-shape 4x3 given",)


def test_mib_that_stopped_early_and_wrong_sizes(tmp_path):
    stack = frames(11, det=(16, 16))  # a 3 x 4 scan that stopped one frame short
    write_mib(tmp_path / "cut.mib", stack, per_trigger=None)
    ds = open_dataset(tmp_path / "cut.mib", scan_shape="2x4")
    assert_scan(ds, stack[:8, ::-1].reshape(2, 4, 16, 16))
    assert "the first 8 of 11 frames are used" in ds.notes[0]
    with pytest.raises(Al4dstemError, match=r"cut.mib: --scan-shape 3x4 needs 12 frames, the file holds 11 "
                                            r"\(of 16 x 16 pixels\)") as e:
        open_dataset(tmp_path / "cut.mib", scan_shape="3x4")
    one_line(e)
    with pytest.raises(Al4dstemError, match=r"--scan-shape '3by4': expected ROWSxCOLS"):
        open_dataset(tmp_path / "cut.mib", scan_shape="3by4")
    with pytest.raises(Al4dstemError, match="rows and columns must be at least 1"):
        open_dataset(tmp_path / "cut.mib", scan_shape="0x4")


def test_mib_without_hdr_guesses_lines_from_timestamps(tmp_path):
    stack = frames(6, det=(16, 16))
    write_mib(tmp_path / "t.mib", stack, per_trigger=None, header_time=True)  # a pause after every 3 frames
    ds = open_dataset(tmp_path / "t.mib")
    assert ds.scan_shape == (2, 3)
    assert "scan shape from the frame timestamps (no t.hdr beside it)" in ds.notes[0]


def test_mib_is_found_by_its_header_whatever_its_name(tmp_path):
    write_mib(tmp_path / "frames.bin", frames(4, det=(16, 16)), per_trigger=None)
    assert find_format(tmp_path / "frames.bin").name == "mib"


def test_blockfile_round_trip(tmp_path):
    from rsciio.blockfile import file_writer

    scan = frames(6, det=(16, 16), dtype=np.uint8).reshape(3, 2, 16, 16)
    sig = signal(scan, axes_units=("nm", "nm", "cm", "cm"), scales=(12.8, 12.8, 0.01, 0.01))
    file_writer(str(tmp_path / "s.blo"), sig)
    ds = open_dataset(tmp_path / "s.blo")
    assert ds.format == "blo" and isinstance(ds.array, LazyFrames)
    assert_scan(ds, scan)
    assert ds.calibration.scan[0].scale == pytest.approx(12.8) and ds.calibration.scan[0].units == "nm"


def test_mrc_stack_with_scan_shape(tmp_path):
    from rsciio.mrc._api import get_std_dtype_list

    stack = frames(6, det=(8, 10))
    header = np.zeros(1, dtype=get_std_dtype_list("<"))
    header["NX"], header["NY"], header["NZ"], header["MODE"] = 10, 8, 6, 6  # mode 6: uint16
    with open(tmp_path / "s.mrc", "wb") as f:
        f.write(header.tobytes().ljust(1024, b"\0"))
        f.write(stack.astype("<u2").tobytes())
    with pytest.raises(Al4dstemError, match="s.mrc: holds 6 frames of 8 x 10 pixels and no scan shape"):
        open_dataset(tmp_path / "s.mrc")
    assert_scan(open_dataset(tmp_path / "s.mrc", scan_shape="3x2"), stack.reshape(3, 2, 8, 10))


def test_tvips_stream_with_scan_shape(tmp_path):
    from rsciio.tvips import file_writer

    stack = frames(6, det=(8, 8), dtype=np.uint8)
    sig = signal(stack, axes_units=("", "1/nm", "1/nm"), scales=(1.0, 0.1, 0.1))
    sig["axes"][0].update(name="time", units="s")
    file_writer(str(tmp_path / "s.tvips"), sig)
    path = next(tmp_path.glob("s*.tvips"))
    ds = open_dataset(path, scan_shape="2x3")
    assert ds.format == "tvips"
    assert_scan(ds, stack.reshape(2, 3, 8, 8))


def test_ncem_emd_and_nexus_round_trips(tmp_path):
    from rsciio.emd import file_writer as write_emd
    from rsciio.nexus import file_writer as write_nexus

    scan = frames(6).reshape(2, 3, 8, 6)
    write_emd(str(tmp_path / "s.emd"), signal(scan))
    assert find_format(tmp_path / "s.emd").name == "emd"
    ds = open_dataset(tmp_path / "s.emd")
    assert_scan(ds, scan)
    assert ds.calibration.detector[1].units == "1/nm"
    write_nexus(str(tmp_path / "s.nxs"), signal(scan))
    assert_scan(open_dataset(tmp_path / "s.nxs"), scan)


def test_several_4d_signals_need_dataset_by_number_or_title(tmp_path):
    from rsciio.nexus import file_writer

    a, b = frames(6).reshape(2, 3, 8, 6), frames(4, seed=1).reshape(2, 2, 8, 6)
    file_writer(str(tmp_path / "two.nxs"), [signal(a, title="first"), signal(b, title="second")])
    with pytest.raises(Al4dstemError, match=r"two.nxs: 2 4-D datasets \(0 .*, 1 .*\); pick one with --dataset") as e:
        open_dataset(tmp_path / "two.nxs")
    one_line(e)
    names = {open_dataset(tmp_path / "two.nxs", dataset=str(i)).shape for i in (0, 1)}
    assert names == {a.shape, b.shape}
    with pytest.raises(Al4dstemError, match=r"--dataset 'third': no such dataset \(give the number or title"):
        open_dataset(tmp_path / "two.nxs", dataset="third")


def write_arina(folder: Path, stack: np.ndarray, per_file: int, energy_ev=300000.0, distance_m=0.5) -> Path:
    """A master file with its frames in data files linked from entry/data, as an ARINA writes them."""
    master = folder / "scan_master.h5"
    with h5py.File(master, "w") as f:
        det = f.create_group("entry/instrument/detector")
        det["x_pixel_size"] = 1e-4
        det["x_pixel_size"].attrs["units"] = "m"
        det["detector_distance"] = distance_m
        det["detector_distance"].attrs["units"] = "m"
        det.create_group("detectorSpecific")["photon_energy"] = energy_ev
        data = f.create_group("entry/data")
        for k, start in enumerate(range(0, len(stack), per_file), start=1):
            name = f"scan_data_{k:06d}.h5"
            with h5py.File(folder / name, "w") as part:
                part["entry/data/data"] = stack[start:start + per_file]
            data[f"data_{k:06d}"] = h5py.ExternalLink(name, "/entry/data/data")
    return master


def test_arina_master_with_several_data_files(tmp_path):
    stack = frames(12, det=(8, 8), dtype=np.uint32)
    master = write_arina(tmp_path, stack, per_file=5)
    assert find_format(master).name == "arina"
    ds = open_dataset(master, scan_shape="3x4")
    assert ds.format == "arina"
    assert_scan(ds, stack.reshape(3, 4, 8, 8))
    assert ds.calibration.beam_energy_kev == 300.0
    assert ds.calibration.detector[0].units == "mrad" and ds.calibration.detector[0].scale == pytest.approx(0.2)
    with pytest.raises(Al4dstemError, match="holds 12 frames of 8 x 8 pixels and no scan shape"):
        open_dataset(master)  # not square: nothing to assume
    (tmp_path / "sq").mkdir()
    square = open_dataset(write_arina(tmp_path / "sq", frames(16, det=(8, 8)), per_file=16))
    assert square.scan_shape == (4, 4) and "scan shape 4x4 assumed" in square.notes[0]


def test_empad_raw_scan_shape_from_option_and_name(tmp_path):
    stored = np.random.default_rng(2).random((6, 130, 128), dtype=np.float32)
    stored[:, 0, 0] = np.arange(6)
    stored.tofile(tmp_path / "scan_x3_y2.raw")
    ds = open_dataset(tmp_path / "scan_x3_y2.raw")  # x = columns, y = rows, as EMPAD names its files
    assert ds.format == "raw" and isinstance(ds.array, np.memmap)
    assert_scan(ds, stored[:, :128].reshape(2, 3, 128, 128))
    assert "from the file name" in ds.notes[0]
    (tmp_path / "scan_x3_y2.raw").rename(tmp_path / "paper.raw")
    assert_scan(open_dataset(tmp_path / "paper.raw", scan_shape="3x2"), stored[:, :128].reshape(3, 2, 128, 128))


def test_npy_stack_with_scan_shape_and_a_4d_scan_relaid(tmp_path):
    stack = frames(12)
    np.save(tmp_path / "stack.npy", stack)
    ds = open_dataset(tmp_path / "stack.npy", scan_shape="3x4")
    assert isinstance(ds.array, np.memmap)
    assert_scan(ds, stack.reshape(3, 4, 8, 6))
    np.save(tmp_path / "scan.npy", stack.reshape(2, 6, 8, 6))
    assert_scan(open_dataset(tmp_path / "scan.npy", scan_shape="4x3"), stack.reshape(4, 3, 8, 6))


def test_hdf5_frame_stack_with_scan_shape(tmp_path):
    stack = frames(6)
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["frames"] = stack
    with pytest.raises(Al4dstemError, match="no 4-D dataset"):
        open_dataset(tmp_path / "s.h5")
    assert_scan(open_dataset(tmp_path / "s.h5", scan_shape="2x3"), stack.reshape(2, 3, 8, 6))


# ---------------------------------------------------------------- registry and units


def test_every_format_is_named_and_extensions_are_claimed():
    names = {f.name for f in FORMATS}
    assert {"npy", "HDF5", "mib", "blo", "dm", "emd", "hspy", "zspy", "mrc", "arina", "nexus", "app5", "empad",
            "raw", "tvips", "png-folder"} <= names
    for f in FORMATS:
        assert f.title and f.lazy and all(e == e.lower() and e.startswith(".") for e in f.extensions)


def test_unknown_files_are_one_line(tmp_path):
    (tmp_path / "x.xml").write_text("<root><other/></root>")
    with pytest.raises(Al4dstemError, match=r"x.xml: unknown data format '.xml'") as e:
        open_dataset(tmp_path / "x.xml")
    one_line(e)
    (tmp_path / "junk.blo").write_bytes(b"\0" * 5000)
    with pytest.raises(Al4dstemError, match=r"junk.blo: rosettasciio could not read it") as e:
        open_dataset(tmp_path / "junk.blo")
    one_line(e)


def test_scan_shape_parsing():
    assert parse_scan_shape("34x206") == (34, 206)
    assert parse_scan_shape(" 34 X 206 ") == (34, 206)
    assert parse_scan_shape((2, 3)) == (2, 3)
    assert parse_scan_shape(None) is None


def test_units_are_normalised_and_converted():
    assert [normalise_unit(u) for u in ("1 / nm", "nm^-1", "um", "A", "<undefined>", "", None)] == \
        ["1/nm", "1/nm", "µm", "Å", None, None, None]
    reciprocal = Calibration((Axis(), Axis(), Axis(0.1, 0, "1/nm"), Axis(0.1, 0, "1/nm")), 200.0)
    angle = Calibration((Axis(), Axis(), Axis(0.2508, 0, "mrad"), Axis(0.2508, 0, "mrad")), 200.0)
    assert reciprocal.differences(angle) == [] and angle.differences(reciprocal) == []  # 0.1 1/nm = 0.2508 mrad
    assert Axis(0.1, 0, "1/nm").in_base_units(200.0, "angle") == pytest.approx(0.2508, rel=1e-3)
    twice = Calibration((Axis(), Axis(), Axis(0.2, 0, "1/nm"), Axis(0.2, 0, "1/nm")), 200.0)
    assert "detector pixel 0.2 1/nm, not 0.1 1/nm" in reciprocal.differences(twice)[0]
    assert Calibration().differences(twice) == []  # nothing recorded, nothing to compare
    assert Calibration.from_dict(twice.to_dict()) == twice


# ---------------------------------------------------------------- the real detector files

real = pytest.mark.skipif(not REAL.is_dir(), reason=f"no real detector files at {REAL}")


@real
@pytest.mark.parametrize("name,shape,cal", [
    ("001_4x2_6bit.mib", (2, 4, 256, 256), None),
    ("002_4x2_6bit_roi128.mib", (2, 4, 128, 256), None),
    ("test1.blo", (3, 2, 144, 144), (12.8, "nm", 200.0)),
])
def test_real_detector_files(name, shape, cal):
    ds = open_dataset(REAL / name)
    assert ds.shape == shape and ds.dtype == np.uint8 and isinstance(ds.array, LazyFrames)
    whole = ds.load()
    assert whole.shape == shape and whole.any()
    np.testing.assert_array_equal(ds.pattern(1, 1), whole[1, 1])
    if cal is None:
        assert not ds.calibration.calibrated
    else:
        step, units, energy = cal
        assert ds.calibration.scan[1].scale == pytest.approx(step) and ds.calibration.scan[1].units == units
        assert ds.calibration.beam_energy_kev == energy
        assert ds.calibration.detector[0].units == "cm"


def write_empad(folder: Path, rows: int, cols: int) -> np.ndarray:
    """An EMPAD description and its frames (128 x 128 float32 plus two footer rows each)."""
    stored = np.random.default_rng(7).random((rows * cols, 130, 128), dtype=np.float32)
    stored[:, 0, 0] = np.arange(rows * cols)
    stored.tofile(folder / "frames.raw")
    (folder / "acquisition.xml").write_text(
        f'<root name="acquisition_1"><type>scan</type><pix_x>{cols}</pix_x><pix_y>{rows}</pix_y>'
        f'<raw_file filename="frames.raw"/><iom_measurements><source.get_voltage>300000.0</source.get_voltage>'
        f'<calibrated_pixelsize>1.8e-10</calibrated_pixelsize></iom_measurements></root>')
    return stored[:, :128].reshape(rows, cols, 128, 128)


def test_empad_description_and_its_raw_file(tmp_path):
    want = write_empad(tmp_path, rows=2, cols=3)
    ds = open_dataset(tmp_path / "acquisition.xml")
    assert ds.format == "empad" and isinstance(ds.array, LazyFrames)
    assert_scan(ds, want)
    assert ds.calibration.beam_energy_kev == 300.0
    assert ds.calibration.detector[0].units == "1/nm" and ds.calibration.detector[0].scale == pytest.approx(0.18)
    via_raw = open_dataset(tmp_path / "frames.raw")  # the description beside it gives the shape
    assert via_raw.scan_shape == (2, 3) and "acquisition.xml" in via_raw.notes[-1]


def test_every_command_takes_scan_shape_for_a_frame_stack(tmp_path):
    """A flattened (n, det, det) stack goes through info, label, plot-labels, train and predict with
    --scan-shape; a wrong shape is one line naming the frame count."""
    from cli_helpers import assert_one_line_error, run

    rows, cols, det = 3, 4, 16
    frames = np.random.default_rng(0).poisson(2.0, (rows * cols, det, det)).astype(np.float32)
    truth_lines = ["x,y,label"]
    for i in range(rows * cols):
        y, x = divmod(i, cols)
        c = x % 3
        frames[i, det // 2, :] += 40 * (c == 2)
        frames[i, :, det // 2] += 40 * (c == 1)
        truth_lines.append(f"{x},{y},{('none', 'vertical', 'horizontal')[c]}")
    stack, truth = tmp_path / "stack.npy", tmp_path / "truth.csv"
    np.save(stack, frames)
    truth.write_text("\n".join(truth_lines) + "\n")
    shape = f"{rows}x{cols}"

    r = run("info", stack, "--scan-shape", shape)
    assert r.returncode == 0 and "(3, 4, 16, 16)" in r.stdout, r.stderr
    r = run("info", stack, "--scan-shape", "4x4")
    assert_one_line_error(r, "--scan-shape 4x4 needs 16 frames", "12")
    labels = tmp_path / "labels.csv"
    r = run("label", stack, "--scan-shape", shape, "--labels", labels, "--budget", 9, "--truth", truth)
    assert r.returncode == 0, r.stderr
    r = run("plot-labels", stack, "--scan-shape", shape, "--labels", labels, "--out", tmp_path / "l.png")
    assert r.returncode == 0 and (tmp_path / "l.png").stat().st_size > 0, r.stderr
    model = tmp_path / "m.pt"
    r = run("train", stack, "--scan-shape", shape, "--labels", labels, "--out", model, "--network", "default",
            "--epochs", 1)
    assert r.returncode == 0, r.stderr
    r = run("predict", stack, "--scan-shape", shape, "--model", model, "--out", tmp_path / "p")
    assert r.returncode == 0, r.stderr
    assert np.load(tmp_path / "p.npy").shape == (rows, cols, 3)


# ---------------------------------------------------------------- NanoMegas TopSpin .app5

APP5_GUID = "0a1b2c3d-0000-4000-8000-00000000000{}"


def write_app5(path: Path, scans: list[np.ndarray], step_nm: float = 2.5, k_scale: float = 0.1,
               image: bool = False) -> None:
    """A TopSpin ``.app5`` laid out as TopSpin exports one session: a session ``Metadata`` XML and, per
    4-D result, a GUID group of numbered frames, each a contiguous ``Data`` array with its ``Metadata``
    XML (detector axes; probe position in metres). ``image`` adds a 2-D composite image result."""
    axis = "<A><O>0</O><S>{}</S><U><N>unit</N><V>mrad</V></U></A>"
    with h5py.File(path, "w") as f:
        f["Metadata"] = np.bytes_("<Root><Id>session</Id><Title>a test scan</Title>"
                                  "<ProcedureName>Precession</ProcedureName></Root>")
        for n, data in enumerate(scans):
            group = f.create_group(APP5_GUID.format(n))
            rows, cols = data.shape[:2]
            for i in range(rows * cols):
                y, x = divmod(i, cols)
                frame = group.create_group(str(i))
                frame.create_dataset("Data", data=data[y, x])  # contiguous: TopSpin's own layout
                frame["Metadata"] = np.bytes_(
                    f"<Root><K>{axis.format(k_scale)}{axis.format(k_scale)}</K><P><Q><N>position</N><V>"
                    f"<X>{x * step_nm * 1e-9!r}</X><Y>{y * step_nm * 1e-9!r}</Y></V></Q></P></Root>")
        if image:
            f.create_dataset(APP5_GUID.format(9), data=np.zeros((5, 7), np.float32))


def test_app5_is_read_with_its_scan_step_and_several_results_need_dataset(tmp_path):
    scan = frames(12, (9, 8), dtype=np.float32).reshape(3, 4, 9, 8)
    write_app5(tmp_path / "one.app5", [scan], image=True)  # one 4-D result beside a 2-D image: taken
    ds = open_dataset(tmp_path / "one.app5")
    assert ds.format == "app5" and "frame by frame" in ds.reader  # lazy: rosettasciio alone reads it whole
    assert_scan(ds, scan)
    step = ds.calibration.scan[1]
    assert step.scale == pytest.approx(2.5) and step.units == "nm"
    assert ds.calibration.detector[0].scale == pytest.approx(0.1) and ds.calibration.detector[0].units == "mrad"

    other = frames(6, (9, 8), dtype=np.float32, seed=1).reshape(2, 3, 9, 8)
    write_app5(tmp_path / "two.app5", [scan, other])
    with pytest.raises(Al4dstemError, match="--dataset") as e:
        open_dataset(tmp_path / "two.app5")
    one_line(e)
    assert_scan(open_dataset(tmp_path / "two.app5", dataset="1"), other)  # numbered from 0, as listed

    del ds  # (closes the file)
    write_app5(tmp_path / "bad.app5", [scan])
    with h5py.File(tmp_path / "bad.app5", "a") as f:  # a frame's metadata lost: one line naming the file
        del f[APP5_GUID.format(0)]["0"]["Metadata"]
    with pytest.raises(Al4dstemError, match="bad.app5") as e:
        open_dataset(tmp_path / "bad.app5")
    one_line(e)


# ---------------------------------------------------------------- ThermoFisher Velox .emd


def write_velox(path: Path, frames: np.ndarray) -> None:
    """A Velox EMD holding one camera image stack, laid out as Velox writes one: a ``Version`` JSON,
    ``Data/Image/<id>/Data`` as (det_rows, det_cols, frames) and a ``Metadata`` column of JSON per frame."""
    import json

    meta = {"BinaryResult": {"PixelSize": {"width": "2e-3", "height": "2e-3"}, "PixelUnitX": "1/nm",
                             "Offset": {"x": "0", "y": "0"}, "DetectorIndex": "0"},
            "Detectors": {"Detector-0": {"DetectorName": "BM-Ceta", "ExposureTime": "0.001"}},
            "Scan": {}, "Acquisition": {}, "CustomProperties": {}}
    text = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    column = np.zeros((len(text) + 8, len(frames)), np.uint8)
    column[:len(text)] = text[:, None]
    with h5py.File(path, "w") as f:
        f.create_dataset("Version", data=[json.dumps({"format": "Velox", "version": 11}).encode()])
        image = f.create_group("Data/Image/0123456789abcdef0123456789abcdef")
        image.create_dataset("Data", data=np.moveaxis(frames, 0, -1), chunks=(*frames.shape[1:], 1))
        image.create_dataset("Metadata", data=column)


def test_velox_camera_stack_with_scan_shape(tmp_path):
    stack = frames(12, (9, 8))
    write_velox(tmp_path / "v.emd", stack)
    with pytest.raises(Al4dstemError, match="holds 12 frames of 9 x 8 pixels and no scan shape") as e:
        open_dataset(tmp_path / "v.emd")
    one_line(e)
    ds = open_dataset(tmp_path / "v.emd", scan_shape="3x4")
    assert ds.format == "emd" and "lazy" in ds.reader
    assert_scan(ds, stack.reshape(3, 4, 9, 8))
    pixel = ds.calibration.detector[1]  # 2e-3 1/nm, which rosettasciio gives as 2 1/µm
    assert (pixel.scale, pixel.units) == (pytest.approx(2.0), "1/µm")

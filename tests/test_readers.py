"""Every reader: a round trip through a file the test writes, and the bad inputs."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from PIL import Image

from al4dstem.data import Dataset, open_dataset
from al4dstem.data.formats import hdf5 as hdf5_module
from al4dstem.data.png_folder import PngFolder
from al4dstem.errors import Al4dstemError


def scan(rows=3, cols=4, det=(8, 6), dtype=np.uint16, seed=0):
    return np.random.default_rng(seed).integers(0, 3000, (rows, cols, *det)).astype(dtype)


def assert_round_trip(ds: Dataset, want: np.ndarray):
    assert ds.shape == want.shape and ds.dtype == want.dtype
    np.testing.assert_array_equal(ds.load(), want)
    rows, cols = want.shape[:2]
    np.testing.assert_array_equal(ds.pattern(cols - 1, 0), want[0, cols - 1])  # x = column, y = row
    np.testing.assert_array_equal(np.concatenate([b.patterns for b in ds.iter_batches(5)]),
                                  want.reshape(-1, *want.shape[2:]))


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert msg and "\n" not in msg
    return msg


# ---------------------------------------------------------------- in memory


def test_numpy_array_and_dataset_pass_through():
    arr = scan()
    ds = open_dataset(arr)
    assert ds.array is arr and ds.format == "array"
    assert open_dataset(ds) is ds
    with pytest.raises(Al4dstemError, match="expected a 4-D dataset"):
        open_dataset(arr[0])
    with pytest.raises(Al4dstemError, match="cannot read 4D-STEM data from a dict"):
        open_dataset({})


# ---------------------------------------------------------------- .npy


def test_npy_is_memory_mapped(tmp_path):
    arr = scan(dtype=np.float32)
    np.save(tmp_path / "a.npy", arr)
    ds = open_dataset(tmp_path / "a.npy")
    assert isinstance(ds.array, np.memmap) and ds.format == "npy"
    assert ds.size_on_disk == (tmp_path / "a.npy").stat().st_size
    assert_round_trip(ds, arr)


def test_npy_bad_inputs(tmp_path):
    np.save(tmp_path / "cube.npy", np.zeros((3, 4, 5), np.uint16))
    with pytest.raises(Al4dstemError, match=r"cube.npy: expected a 4-D dataset .* got shape \(3, 4, 5\)") as e:
        open_dataset(tmp_path / "cube.npy")
    one_line(e)
    np.save(tmp_path / "cut.npy", scan())
    data = (tmp_path / "cut.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(Al4dstemError, match="cut.npy: not a readable .npy file, truncated") as e:
        open_dataset(tmp_path / "cut.npy")
    one_line(e)
    (tmp_path / "empty.npy").write_bytes(b"")
    with pytest.raises(Al4dstemError, match="empty.npy: empty file"):
        open_dataset(tmp_path / "empty.npy")
    with pytest.raises(Al4dstemError, match="nothere.npy: no such file or folder"):
        open_dataset(tmp_path / "nothere.npy")
    (tmp_path / "scan.tiff").write_bytes(b"II*\0")
    with pytest.raises(Al4dstemError, match=r"scan.tiff: unknown data format '.tiff'") as e:
        open_dataset(tmp_path / "scan.tiff")
    one_line(e)
    with pytest.raises(Al4dstemError, match="--dataset only applies to files holding several datasets"):
        open_dataset(tmp_path / "cut.npy", dataset="data")


# ---------------------------------------------------------------- HDF5


def test_plain_hdf5_with_one_4d_dataset(tmp_path):
    arr = scan()
    with h5py.File(tmp_path / "one.hdf5", "w") as f:
        f["meta/angles"] = np.arange(10.0)
        f["meta/image"] = np.zeros((4, 3))
        f.create_dataset("exp/scan", data=arr, chunks=(1, 2, 8, 6), compression="gzip")
    ds = open_dataset(tmp_path / "one.hdf5")
    assert isinstance(ds.array, h5py.Dataset) and ds.format == "HDF5"
    assert ds.source.endswith("one.hdf5:exp/scan")
    assert_round_trip(ds, arr)


def test_hdf5_with_several_needs_dataset(tmp_path):
    a, b = scan(seed=1), scan(rows=2, cols=2, seed=2)
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["first"] = a
        f["group/second"] = b
        f["flat"] = np.zeros((5, 5))
    with pytest.raises(Al4dstemError, match=r"two.h5: 2 4-D datasets \(first, group/second\); pick one with "
                                            r"--dataset") as e:
        open_dataset(tmp_path / "two.h5")
    one_line(e)
    assert_round_trip(open_dataset(tmp_path / "two.h5", dataset="group/second"), b)
    assert_round_trip(open_dataset(tmp_path / "two.h5", dataset="/first"), a)
    with pytest.raises(Al4dstemError, match=r"--dataset 'nope': no such dataset \(4-D datasets here: first, "):
        open_dataset(tmp_path / "two.h5", dataset="nope")
    with pytest.raises(Al4dstemError, match=r"--dataset 'flat' has shape \(5, 5\), not 4-D"):
        open_dataset(tmp_path / "two.h5", dataset="flat")
    with pytest.raises(Al4dstemError, match="--dataset 'group': a group"):
        open_dataset(tmp_path / "two.h5", dataset="group")


def test_hdf5_bad_inputs(tmp_path):
    with h5py.File(tmp_path / "none.h5", "w") as f:
        f["image"] = np.zeros((6, 7, 8))
    with pytest.raises(Al4dstemError, match=r"none.h5: no 4-D dataset in this HDF5 file \(found image "
                                            r"\(6, 7, 8\)\)") as e:
        open_dataset(tmp_path / "none.h5")
    one_line(e)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all" * 10)
    with pytest.raises(Al4dstemError, match="junk.h5: not a readable HDF5 file") as e:
        open_dataset(tmp_path / "junk.h5")
    one_line(e)


# ---------------------------------------------------------------- py4DSTEM


@pytest.fixture(scope="module")
def py4dstem():
    return pytest.importorskip("py4DSTEM")


def test_py4dstem_saved_datacube_is_read_lazily_with_h5py(tmp_path, py4dstem):
    arr = scan(rows=3, cols=5)  # (Rx, Ry, Qx, Qy) = (scan rows, scan cols, det rows, det cols)
    py4dstem.save(str(tmp_path / "cube.h5"), py4dstem.DataCube(data=arr), mode="o")
    ds = open_dataset(tmp_path / "cube.h5")
    assert ds.format == "py4DSTEM" and isinstance(ds.array, h5py.Dataset)
    assert ds.scan_shape == (3, 5)
    assert_round_trip(ds, arr)


def test_py4dstem_read_fallback(tmp_path, py4dstem, monkeypatch):
    arr = scan()
    py4dstem.save(str(tmp_path / "cube.emd"), py4dstem.DataCube(data=arr), mode="o")
    # h5py finding nothing in a py4DSTEM-native file: py4DSTEM.read takes over
    monkeypatch.setattr(hdf5_module, "datasets_4d", lambda f, h5py: [])
    ds = open_dataset(tmp_path / "cube.emd")
    assert ds.format == "py4DSTEM"
    assert_round_trip(ds, arr)
    monkeypatch.undo()
    # a native file that really holds no 4-D data: one line, through the fallback
    py4dstem.save(str(tmp_path / "image.h5"), py4dstem.Array(data=np.zeros((4, 4))), mode="o")
    with pytest.raises(Al4dstemError, match="image.h5: no 4-D dataset") as e:
        open_dataset(tmp_path / "image.h5")
    one_line(e)


def test_datacube_object(py4dstem):
    arr = scan()
    ds = open_dataset(py4dstem.DataCube(data=arr))
    assert ds.format == "py4DSTEM" and ds.source.startswith("<DataCube")
    assert_round_trip(ds, arr)


def test_empad_raw_round_trip(tmp_path, py4dstem):
    frames = np.random.default_rng(3).random((3, 3, 130, 128), dtype=np.float32)  # 2 metadata rows
    frames.tofile(tmp_path / "scan.raw")
    ds = open_dataset(tmp_path / "scan.raw")
    assert ds.format == "raw" and isinstance(ds.array, np.memmap)
    assert_round_trip(ds, frames[:, :, :128, :])


def test_empad_raw_of_the_wrong_size(tmp_path):
    (tmp_path / "short.raw").write_bytes(b"\0" * (130 * 128 * 4 * 3))
    with pytest.raises(Al4dstemError, match="short.raw: 3 EMPAD frames and no scan shape .*: give --scan-shape") as e:
        open_dataset(tmp_path / "short.raw")
    one_line(e)
    (tmp_path / "cut.raw").write_bytes(b"\0" * (130 * 128 * 4 * 3 - 10))
    with pytest.raises(Al4dstemError, match="cut.raw: 199,670 bytes is not a whole number of EMPAD frames") as e:
        open_dataset(tmp_path / "cut.raw")
    one_line(e)


def write_mib(path, frames: np.ndarray):
    """A Merlin .mib (single chip, 256 x 256, 12-bit counter) with its .hdr giving the scan size."""
    rows, cols = frames.shape[:2]
    header = ("MQ1,000001,00384,01,0256,0256,U16,   1x1,01,2020-05-18 16:51:49.971626,0.000555,0,0,0,"
              "1.200000E+2,5.110000E+2,0.000000E+0,0.000000E+0,0.000000E+0,0.000000E+0,0.000000E+0,"
              "0.000000E+0,3RX,175,511,000,000,000,000,000,000,125,255,125,125,100,100,082,100,087,030,"
              "128,004,255,129,128,176,168,511,511,MQ1A,2020-05-18T14:51:49.971626178Z,555000ns,12,")
    head = header.encode().ljust(384, b"\0")
    with open(path, "wb") as f:
        for frame in frames.reshape(-1, 256, 256).astype(">u2"):
            f.write(head)
            f.write(frame.tobytes())
    # as a Merlin writes it for a raster scan: one trigger per scan line
    path.with_suffix(".hdr").write_text(f"HDR,\t\nFrames in Acquisition (Number):\t{rows * cols}\n"
                                        f"Frames per Trigger (Number):\t{cols}\nEnd\t\n")


def test_mib_round_trip(tmp_path):
    frames = np.random.default_rng(4).integers(0, 4096, (2, 3, 256, 256)).astype(np.uint16)
    write_mib(tmp_path / "scan.mib", frames)
    ds = open_dataset(tmp_path / "scan.mib")
    assert ds.format == "mib" and ds.scan_shape == (2, 3) and ds.reader.startswith("rosettasciio")
    flipped = frames[..., ::-1, :]  # rosettasciio turns Merlin frames upside down (bottom row stored first)
    np.testing.assert_array_equal(ds.load(), flipped)
    np.testing.assert_array_equal(ds.pattern(2, 1), flipped[1, 2])


def test_import_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "scan.dm4").write_bytes(np.random.default_rng(5).bytes(2000))
    with pytest.raises(Al4dstemError, match=r"scan.dm4: rosettasciio could not read it \(") as e:
        open_dataset(tmp_path / "scan.dm4")
    one_line(e)
    frames = np.zeros((1, 3, 256, 256), np.uint16)
    write_mib(tmp_path / "noheader.mib", frames)
    (tmp_path / "noheader.hdr").unlink()
    with pytest.raises(Al4dstemError, match="no noheader.hdr beside it and the frame timestamps do not show the "
                                            "scan lines: give --scan-shape ROWSxCOLS") as e:
        open_dataset(tmp_path / "noheader.mib")
    one_line(e)
    assert capsys.readouterr().out == ""  # the readers' chatter does not reach stdout


# ---------------------------------------------------------------- PNG folders


def write_pngs(folder, arr: np.ndarray, suffix="_boxsize5"):
    folder.mkdir(exist_ok=True)
    rows, cols = arr.shape[:2]
    for y in range(rows):
        for x in range(cols):
            Image.fromarray(arr[y, x]).save(folder / f"{x}_{y}{suffix}.png")


@pytest.mark.parametrize("dtype,high", [(np.uint8, 255), (np.uint16, 65535)])
def test_png_folder_round_trip(tmp_path, dtype, high):
    arr = np.random.default_rng(6).integers(0, high + 1, (3, 12, 7, 5)).astype(dtype)
    write_pngs(tmp_path / "pngs", arr)
    (tmp_path / "pngs" / "labels.csv").write_text("x,y,label\n")  # other files are ignored
    ds = open_dataset(tmp_path / "pngs")
    assert ds.format == "png-folder" and isinstance(ds.array, PngFolder)
    assert ds.scan_shape == (3, 12)  # 12 columns (X up to 11), 3 rows (Y up to 2): not sorted-name order
    assert ds.size_on_disk > 0
    assert_round_trip(ds, arr)  # 16-bit PNGs keep their depth
    np.testing.assert_array_equal(ds.get([(11, 2), (10, 0)]), arr[[2, 0], [11, 10]])
    stack = ds.array
    np.testing.assert_array_equal(stack[1, 2:5, 3], arr[1, 2:5, 3])
    np.testing.assert_array_equal(stack[-1], arr[-1])
    np.testing.assert_array_equal(np.asarray(stack), arr)
    with pytest.raises(IndexError):
        stack[3]


def test_png_folder_colour_images_are_read_as_grey(tmp_path):
    (tmp_path / "rgb").mkdir()
    for x, y in [(0, 0), (1, 0)]:
        Image.fromarray(np.full((4, 4, 3), 100 * (x + 1), np.uint8)).save(tmp_path / "rgb" / f"{x}_{y}.png")
    ds = open_dataset(tmp_path / "rgb")
    assert ds.shape == (1, 2, 4, 4) and ds.dtype == np.uint8
    assert ds.pattern(1, 0)[0, 0] == 200


def test_png_folder_bad_inputs(tmp_path):
    arr = np.zeros((2, 3, 4, 4), np.uint8)
    write_pngs(tmp_path / "gaps", arr)
    (tmp_path / "gaps" / "1_1_boxsize5.png").unlink()
    with pytest.raises(Al4dstemError, match=r"gaps: 1 of 6 positions of the 3 x 2 scan have no image, "
                                            r"e.g. x=1, y=1 \(1_1\*.png\)") as e:
        open_dataset(tmp_path / "gaps")
    one_line(e)
    write_pngs(tmp_path / "sizes", arr)
    Image.fromarray(np.zeros((5, 4), np.uint8)).save(tmp_path / "sizes" / "2_1_boxsize5.png")
    with pytest.raises(Al4dstemError, match=r"2_1_boxsize5.png: image is 4 x 5 pixels but 0_0_boxsize5.png is "
                                            r"4 x 4") as e:
        open_dataset(tmp_path / "sizes")
    one_line(e)
    write_pngs(tmp_path / "depths", arr)
    Image.fromarray(np.zeros((4, 4), np.uint16)).save(tmp_path / "depths" / "1_0_boxsize5.png")
    with pytest.raises(Al4dstemError, match="1_0_boxsize5.png: image mode I;16 differs"):
        open_dataset(tmp_path / "depths")
    write_pngs(tmp_path / "dupes", arr)
    Image.fromarray(arr[0, 0]).save(tmp_path / "dupes" / "0_1.png")
    with pytest.raises(Al4dstemError, match=r"two images for position x=0, y=1: 0_1.png and 0_1_boxsize5.png"):
        open_dataset(tmp_path / "dupes")
    write_pngs(tmp_path / "names", arr)
    Image.fromarray(arr[0, 0]).save(tmp_path / "names" / "overview.png")
    with pytest.raises(Al4dstemError, match="overview.png: PNG name does not start with X_Y"):
        open_dataset(tmp_path / "names")
    (tmp_path / "empty").mkdir()
    with pytest.raises(Al4dstemError, match="empty: folder holds no .png files"):
        open_dataset(tmp_path / "empty")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "0_0.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(Al4dstemError, match=r"0_0.png: cannot read image") as e:
        open_dataset(tmp_path / "broken")
    one_line(e)

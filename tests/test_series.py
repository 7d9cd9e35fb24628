"""In-situ series: the simulator's moving wall, series inputs, the wall measurement, `predict` on a series."""

import csv

import imageio.v3 as iio
import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run

from al4dstem.data import Preprocessing
from al4dstem.errors import Al4dstemError
from al4dstem.models import CNNClassifier
from al4dstem.models.trained import TrainedNetwork
from al4dstem.series import map_series, mp4_available, open_series, wall_profile
from al4dstem.simulate import moving_wall, simulate_series

NX, NY, DET, FRAMES = 32, 12, 32, 4


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    d = tmp_path_factory.mktemp("series")
    five_d = simulate_series(d / "s.npy", FRAMES, truth_path=d / "truth.csv", nx=NX, ny=NY, detector=DET, threads=1)
    folder = simulate_series(d / "frames", FRAMES, nx=NX, ny=NY, detector=DET, threads=1)
    CNNClassifier(network="default", preprocessing=Preprocessing(size=16), random_state=0).initialize(
        (DET, DET)).save(d / "model.pt")
    return d, five_d, folder


def test_the_wall_moves_and_widens_and_each_frame_has_its_own_noise(made):
    d, five_d, folder = made
    assert five_d.shape == (FRAMES, NY, NX, DET, DET)
    assert np.all(np.diff(five_d.wall_position) > 0) and np.all(np.diff(five_d.none_width) > 0)
    stack = np.load(d / "s.npy", mmap_mode="r")
    assert not np.array_equal(stack[0], stack[1])
    # the same frames whether written as one 5-D file or a folder
    assert [p.name for p in folder.frame_paths] == [f"frame_{f:03d}.npy" for f in range(FRAMES)]
    assert np.array_equal(np.load(folder.frame_paths[2]), stack[2])
    rows = list(csv.DictReader(open(d / "truth.csv")))
    assert len(rows) == FRAMES * NX * NY and rows[-1]["scan"] == f"frame_{FRAMES - 1}"
    walls = list(csv.DictReader(open(d / "truth_walls.csv")))
    assert [float(w["wall_position"]) for w in walls] == pytest.approx(five_d.wall_position, abs=1e-3)


def test_wall_profile_finds_the_simulated_wall(made):
    _, five_d, _ = made
    onehot = np.eye(3, dtype=np.float32)[five_d.truth]  # the truth as a perfect map
    position, width = wall_profile(onehot)
    assert position == pytest.approx(five_d.wall_position, abs=1.0)
    assert width == pytest.approx(five_d.none_width, abs=1.0)
    column = np.eye(3, dtype=np.float32)[np.transpose(five_d.truth, (0, 2, 1))]  # the same wall turned by 90 degrees
    assert wall_profile(column, axis="y")[0] == pytest.approx(position)
    assert wall_profile(column, axis="auto")[0] == pytest.approx(position)  # auto sees the band along the rows
    assert wall_profile(onehot, axis="auto")[0] == pytest.approx(position)
    invalid = np.zeros(onehot.shape[:3], bool)
    assert np.isnan(wall_profile(onehot, invalid)[0]).all()  # nothing classified: no wall


def test_moving_wall_is_a_band_between_two_domains():
    truth, fractions, centre, width = moving_wall(40, 10, 0, 3, none_width=4, wall_width=0)
    assert set(np.unique(truth[:, :int(centre - width)])) == {1}  # vertical left
    assert set(np.unique(truth[:, int(centre + width) + 1:])) == {2}  # horizontal right
    assert (truth == 0).sum(axis=1).tolist() == [4] * 10
    assert np.allclose(fractions.sum(-1), 1)


def test_series_inputs(made, tmp_path):
    d, _, folder = made
    five = open_series(d / "s.npy")
    listed = open_series([str(p) for p in folder.frame_paths])
    from_folder = open_series(d / "frames")
    assert len(five) == len(listed) == len(from_folder) == FRAMES
    assert from_folder.frames[1].source.endswith("frame_001.npy")
    assert np.array_equal(five.frames[3].load(), np.load(d / "s.npy")[3])
    assert open_series(folder.frame_paths[0]) is None  # one scan is not a series
    assert open_series(np.zeros((2, 3, 4, 8, 8), np.uint16)).scan_shape == (3, 4)
    np.save(tmp_path / "other.npy", np.zeros((NY, NX + 1, DET, DET), np.uint16))
    with pytest.raises(Al4dstemError, match="every frame of a series must have the same scan"):
        open_series([folder.frame_paths[0], tmp_path / "other.npy"])


def test_map_series_equals_frame_by_frame(made):
    d, _, _ = made
    model = TrainedNetwork.load(d / "model.pt")
    series = open_series(d / "s.npy")
    seen = []
    probs, valid = map_series(model, series, progress=lambda done, total: seen.append((done, total)))
    assert probs.shape == (FRAMES, NY, NX, 3) and valid.all()
    stack = np.load(d / "s.npy")
    expected, _ = model.classify(stack[2].reshape(-1, DET, DET))
    np.testing.assert_allclose(probs[2].reshape(-1, 3), expected, atol=1e-5)
    assert seen[-1] == (FRAMES * NX * NY, FRAMES * NX * NY)


def test_predict_cli_writes_stack_movie_and_wall_plot(made, tmp_path):
    d, _, _ = made
    p = run("predict", d / "frames", "--model", d / "model.pt", "--out", tmp_path / "movie")
    assert p.returncode == 0, p.stderr
    assert "mapped 4 frames" in p.stdout
    stack = np.load(tmp_path / "movie_series.npy")
    assert stack.shape == (FRAMES, NY, NX, 3) and np.load(tmp_path / "movie_series_valid.npy").all()
    gif = iio.imread(tmp_path / "movie.gif", index=None)
    assert gif.shape[0] == FRAMES and gif.shape[1] % 16 == 0 and gif.shape[2] % 16 == 0
    assert iio.imread(tmp_path / "movie_walls.png").ndim == 3
    lines = (tmp_path / "movie_walls.csv").read_text().splitlines()
    assert lines[0] in ("frame,wall_position_x,none_width", "frame,wall_position_y,none_width")
    assert len(lines) == FRAMES + 1
    if mp4_available():
        assert (tmp_path / "movie.mp4").stat().st_size > 0
    # the same series given as a list of files maps to the same stack
    q = run("predict", *sorted((d / "frames").glob("*.npy")), "--model", d / "model.pt", "--out", tmp_path / "b")
    assert q.returncode == 0, q.stderr
    np.testing.assert_allclose(np.load(tmp_path / "b_series.npy"), stack, atol=1e-6)


def test_series_errors_are_one_line(made, tmp_path):
    d, _, folder = made
    np.save(tmp_path / "det16.npy", np.zeros((NY, NX, 16, 16), np.uint16))
    assert_one_line_error(run("predict", folder.frame_paths[0], tmp_path / "det16.npy", "--model", d / "model.pt",
                              "--out", tmp_path / "x"), "same scan and detector")
    assert_one_line_error(run("predict", folder.frame_paths[0], tmp_path / "missing.npy", "--model", d / "model.pt",
                              "--out", tmp_path / "x"), "missing.npy")
    assert_one_line_error(run("simulate", tmp_path / "s.h5", "--series", "2", "--nx", "16", "--ny", "8",
                              "--detector", "32"), "a series is one .npy")

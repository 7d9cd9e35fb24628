"""`al4dstem live`: a recorded Merlin scan replayed over loopback by LiberTEM-live's simulator is mapped
as it streams, and the map equals the offline map of the same file (frames turned upright as al4dstem
reads .mib files). Skipped where LiberTEM-live (the `live` extra) is not installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run

pytest.importorskip("libertem_live", reason="LiberTEM-live (the 'live' extra) is not installed")
pytest.importorskip("torch")

ROWS, COLS, DET = 3, 4, 32


def write_recording(path: Path, rows: int = ROWS, cols: int = COLS, det: int = DET) -> np.ndarray:
    """A Merlin recording (6-bit frames, bottom row first as the detector stores them) and its .hdr; returns
    the frames as they are stored. Each frame is bright in one corner region, so that turning it over
    changes what a network sees."""
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 8, (rows * cols, det, det)).astype(np.uint8)
    for i in range(rows * cols):
        stack[i, : det // 4 + i % 5, : det // 2] += 40  # bright near the first stored rows
    with open(path, "wb") as f:
        for i, frame in enumerate(stack):
            head = (f"MQ1,{i + 1:06d},00384,01,{det:04d},{det:04d},U08,   1x1,01,2021-05-07 16:51:10.905800,"
                    f"0.100000,0,0,0,4.0E+1,5.1E+2,0.0E+0,0.0E+0,0.0E+0,0.0E+0,0.0E+0,0.0E+0,3RX,068,511,000,000,"
                    f"000,000,000,000,100,255,100,125,100,100,080,100,090,030,128,004,255,126,128,174,172,511,511,"
                    f"MQ1A,2021-05-07T16:51:10.905800928Z,100000000ns,6,")
            f.write(head.encode().ljust(384, b"\0"))
            f.write(frame.tobytes())
    path.with_suffix(".hdr").write_text(
        "HDR,\t\nCounter Depth (number):\t6\nAssembly Size (NX1, 2X2):\t   1x1\n"
        f"Frames in Acquisition (Number):\t{rows * cols}\nFrames per Trigger (Number):\t{cols}\nEnd\t\n")
    return stack


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    from al4dstem.models import CNNClassifier

    folder = tmp_path_factory.mktemp("live")
    stack = write_recording(folder / "scan.mib")
    model = folder / "m.pt"
    CNNClassifier(network="default", random_state=0).initialize((DET, DET)).save(model)
    return folder / "scan.mib", stack, model


def test_live_map_equals_the_offline_map_of_the_same_file(recording):
    from al4dstem.data import open_dataset
    from al4dstem.engines.local import predict_dataset
    from al4dstem.integrations.live import map_live, replay
    from al4dstem.models.trained import TrainedNetwork

    mib, stack, model_path = recording
    model = TrainedNetwork.load(model_path)
    with replay(mib, (ROWS, COLS)) as where:
        result = map_live(model, (ROWS, COLS), **where)
    offline, _ = predict_dataset(model, open_dataset(mib))
    assert result.probs.shape == (ROWS, COLS, 3) and result.valid.all()
    assert np.abs(result.probs - offline).max() <= 1e-5
    # the check has teeth: the frames as stored (not turned upright) give another map
    as_stored, _ = predict_dataset(model, open_dataset(stack.reshape(ROWS, COLS, DET, DET)))
    assert np.abs(as_stored - offline).max() > 1e-4
    assert result.patterns_per_second > 0


def test_live_command_replays_and_writes_the_map(recording, tmp_path):
    mib, _, model = recording
    r = run("live", "--model", model, "--scan-shape", f"{ROWS}x{COLS}", "--out", tmp_path / "p", "--replay", mib,
            "--no-figure")
    assert r.returncode == 0, r.stderr
    assert "mapped 12 frames live" in r.stdout
    r2 = run("predict", mib, "--model", model, "--out", tmp_path / "q", "--no-figure")
    assert r2.returncode == 0, r2.stderr
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), np.load(tmp_path / "q.npy"), atol=1e-5)
    assert '"live"' in (tmp_path / "p.json").read_text()


def test_live_bad_inputs_are_one_line(recording, tmp_path):
    from al4dstem.models import CNNClassifier

    mib, _, model = recording
    other = tmp_path / "m16.pt"
    CNNClassifier(network="default", random_state=0).initialize((16, 16)).save(other)
    r = run("live", "--model", other, "--scan-shape", f"{ROWS}x{COLS}", "--out", tmp_path / "p", "--replay", mib)
    assert_one_line_error(r, "trained on 16 x 16", "32 x 32")
    r = run("live", "--model", model, "--scan-shape", "3x4", "--out", tmp_path / "p", "--replay", tmp_path / "no.mib")
    assert_one_line_error(r, "no.mib", "no such file")
    r = run("live", "--model", model, "--scan-shape", "3x4", "--out", tmp_path / "p", "--data-port", "9",
            "--api-port", "9")
    assert_one_line_error(r, "cannot connect to the detector")
    assert not list(tmp_path.glob("p*"))

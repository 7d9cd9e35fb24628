"""Hostile and clumsy inputs through the real command line: one table, one test.

Each row builds its inputs in a fresh folder (beside a copy of a tiny shared scan, truth,
labels, model and prediction), runs `al4dstem ARGV`, and expects a user error: non-zero exit,
exactly one stderr line holding the expected words, no traceback, and every file that was in
the folder before byte-identical afterwards, with nothing added (outputs never destroy inputs,
and a refused command writes nothing).

Classes of input (issue 9): A outputs that would overwrite inputs, B results that are no
result, C crashes that must be one line (damaged files, forged checkpoints, bad options,
unwritable folders, broken custom samplers), L label files that are not label files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run

ROWS = COLS = 8
DET = 32
SHARED = ("s.npy", "truth.csv", "labels.csv", "m.pt", "p.npy", "p_valid.npy")


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    """A tiny simulated scan with its truth, ten labels, an untrained model (no training: fast) and a map."""
    from al4dstem.data import Preprocessing
    from al4dstem.labels import Label, write_labels
    from al4dstem.maps import write_prediction
    from al4dstem.models import CNNClassifier
    from al4dstem.simulate import simulate_to_file

    d = tmp_path_factory.mktemp("shared")
    sim = simulate_to_file(d / "s.npy", d / "truth.csv", nx=COLS, ny=ROWS, detector=DET, threads=1)
    write_labels(d / "labels.csv", [Label(x, y, int(sim.truth[y, x])) for x, y in
                                    [(0, 0), (3, 0), (7, 0), (0, 4), (4, 4), (7, 4), (0, 7), (3, 7), (7, 7), (5, 2)]])
    CNNClassifier(preprocessing=Preprocessing(size=16), random_state=0).initialize((DET, DET)).save(d / "m.pt")
    probs = np.random.default_rng(0).dirichlet(np.ones(3), size=(ROWS, COLS)).astype(np.float32)
    write_prediction(d / "p", probs, figure=False)
    return d


# ---------------------------------------------------------------- building hostile inputs


def _link(d: Path, name: str, target: str) -> None:
    os.symlink(target, d / name)


def _npy_with_header(d: Path, name: str, shape: str) -> None:
    """A valid small .npy whose header then claims another shape."""
    np.save(d / name, np.zeros((2, 2, 4, 4), np.uint16))
    raw = (d / name).read_bytes()
    (d / name).write_bytes(raw.replace(b"(2, 2, 4, 4)", shape.encode()))


def _npz_named_npy(d: Path) -> None:
    np.savez(d / "z.npz", a=np.zeros((2, 2, 4, 4)))
    (d / "z.npz").rename(d / "z.npy")


def _png_folder(d: Path) -> None:
    from PIL import Image

    (d / "pngs").mkdir()
    for y in range(2):
        for x in range(3):
            Image.fromarray(np.full((DET, DET), 10 * x + y, np.uint8)).save(d / "pngs" / f"{x}_{y}.png")


def _hdf5(path: Path, **datasets) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            f[name] = value


def _sparse_hdf5(path: Path, shape) -> None:
    import h5py

    with h5py.File(path, "w") as f:  # chunked and never written: a few KB on disk
        f.create_dataset("data", shape=shape, dtype="u2", chunks=(1, 1, *shape[2:]))


def _forged_model(d: Path, change) -> None:
    import torch

    payload = torch.load(d / "m.pt", weights_only=True)
    change(payload)
    torch.save(payload, d / "forged.pt")


def _sampler_module(d: Path) -> None:
    (d / "mods").mkdir()
    (d / "mods" / "broken.py").write_text("import numpy\n\nclass Bad:\n    def query(self, context, n)\n        "
                                          "return []\n")


def _fifo(d: Path, name: str) -> None:
    os.mkfifo(d / name)


def _read_only_folder(d: Path) -> None:
    (d / "ro").mkdir()
    (d / "ro").chmod(0o555)


# ---------------------------------------------------------------- the table


@dataclass
class Case:
    id: str
    argv: list[str]  # names in the case folder are made absolute (see _argv); options stay as they are
    words: list[str]  # the error line must hold each of them
    setup: object = None  # callable(d): builds extra inputs
    env: dict = field(default_factory=dict)  # extra environment (PYTHONPATH of a custom sampler)
    unprivileged: bool = False  # run as an ordinary user: root may write into read-only folders
    xfail: str | None = None  # a row waiting for another part of the code base (non-strict)


PREDICT = ["predict", "@s.npy", "--model", "@m.pt", "--no-figure"]
TRAIN = ["train", "@s.npy", "--labels", "@labels.csv"]
SIM = ["simulate", "--nx", "8", "--ny", "8", "--detector", "32"]
LABEL = ["label", "@s.npy", "--budget", "3", "--truth", "@truth.csv"]

CASES = [
    # A: an output would overwrite an input (or another output), refused before any work
    Case("A predict --out PREFIX = data", [*PREDICT, "--out", "@s"], ["--out", "would overwrite the data file"]),
    Case("A predict --out = data .npy", [*PREDICT, "--out", "@s.npy"], ["--out", "the data file", "s.npy"]),
    Case("A predict --out = data via link", [*PREDICT, "--out", "@alias"], ["the data file"],
         setup=lambda d: _link(d, "alias.npy", "s.npy")),
    Case("A predict --out = data hard link", [*PREDICT, "--out", "@hard"], ["the data file"],
         setup=lambda d: os.link(d / "s.npy", d / "hard.npy")),
    Case("A predict --out PREFIX_valid = model", ["predict", "@s.npy", "--model", "@q_valid.npy", "--out", "@q"],
         ["--out", "would overwrite --model", "q_valid.npy"],
         setup=lambda d: shutil.copy(d / "m.pt", d / "q_valid.npy")),
    Case("A predict --out PREFIX.png = labels", [*PREDICT, "--labels", "@marks.png", "--out", "@marks"],
         ["--out", "would overwrite --labels", "marks.png"],
         setup=lambda d: shutil.copy(d / "labels.csv", d / "marks.png")),
    Case("A predict --out inside the PNG data folder",
         ["predict", "@pngs", "--model", "@m.pt", "--out", "@pngs/map"], ["--out", "inside the data folder", "pngs"],
         setup=_png_folder),
    Case("A train --out = data", [*TRAIN, "--out", "@s.npy"], ["--out", "the data file", "s.npy"]),
    Case("A train --out = labels", [*TRAIN, "--out", "@labels.csv"], ["--out", "--labels", "labels.csv"]),
    Case("A train --out = labels via link", [*TRAIN, "--out", "@model.pt"], ["--out", "--labels"],
         setup=lambda d: _link(d, "model.pt", "labels.csv")),
    Case("A simulate OUT = --truth", [*SIM, "@x.npy", "--truth", "@x.npy"], ["OUT", "--truth", "same file"]),
    Case("A simulate --truth = OUT via link", [*SIM, "@x.npy", "--truth", "@t.csv"], ["OUT", "--truth"],
         setup=lambda d: _link(d, "t.csv", "x.npy")),
    Case("A plot-labels --out = labels", ["plot-labels", "@s.npy", "--labels", "@labels.csv", "--out", "@labels.csv"],
         ["--out", "--labels"]),
    Case("A plot-labels --out = data", ["plot-labels", "@s.npy", "--labels", "@labels.csv", "--out", "@s.npy"],
         ["--out", "data file"]),
    Case("A label --plot = labels", [*LABEL, "--labels", "@labels.csv", "--plot", "@labels.csv"],
         ["--labels", "--plot"]),
    Case("A label --labels = data", [*LABEL, "--labels", "@s.npy"], ["--labels", "data file"]),
    Case("A label --labels = truth", [*LABEL, "--labels", "@truth.csv"], ["--labels", "--truth"]),
    Case("A label --labels = model", [*LABEL, "--model", "@m.pt", "--labels", "@m.pt"], ["--labels", "--model"]),
    Case("A label --plot = data", [*LABEL, "--labels", "@new.csv", "--plot", "@s.npy"], ["--plot", "data file"]),
    Case("A label --plot = truth", [*LABEL, "--labels", "@new.csv", "--plot", "@truth.csv"], ["--plot", "--truth"]),
    Case("A label --plot = model", [*LABEL, "--model", "@m.pt", "--labels", "@new.csv", "--plot", "@m.pt"],
         ["--plot", "--model"]),
    # B: nothing to report is an error, not "accuracy nan" with exit 0
    Case("B evaluate truth without labels", ["evaluate", "@p.npy", "--truth", "@empty.csv"], ["empty.csv", "nothing"],
         setup=lambda d: (d / "empty.csv").write_text("x,y,label\n")),
    Case("B evaluate --exclude = --truth", ["evaluate", "@p.npy", "--truth", "@truth.csv", "--exclude", "@truth.csv"],
         ["nothing to score", "--exclude"]),
    Case("B plot-labels mistyped labels", ["plot-labels", "@s.npy", "--labels", "@lables.csv", "--out", "@f.png"],
         ["lables.csv"]),
    # C: damaged data files
    Case("C .npz named .npy", ["info", "@z.npy"], ["z.npy", ".npz"], setup=_npz_named_npy),
    Case("C absurd .npy header shape", ["info", "@huge.npy"], ["huge.npy", "truncated or corrupt"],
         setup=lambda d: _npy_with_header(d, "huge.npy", "(4294967296, 4294967296, 4294967296, 4)")),
    Case("C negative .npy header shape", ["info", "@neg.npy"], ["neg.npy", "negative"],
         setup=lambda d: _npy_with_header(d, "neg.npy", "(-2, 2, 4, 4)")),
    Case("C truncated .npy", ["predict", "@cut.npy", "--model", "@m.pt", "--out", "@q"], ["cut.npy", "truncated"],
         setup=lambda d: (d / "cut.npy").write_bytes((d / "s.npy").read_bytes()[:5000])),
    Case("C empty data file", ["info", "@e.npy"], ["e.npy", "empty"], setup=lambda d: (d / "e.npy").write_bytes(b"")),
    Case("C 3-D array", ["info", "@c.npy"], ["c.npy", "4-D"],
         setup=lambda d: np.save(d / "c.npy", np.zeros((2, 4, 4)))),
    Case("C object array", ["info", "@o.npy"], ["o.npy", "objects"],
         setup=lambda d: np.save(d / "o.npy", np.array([None, 1], dtype=object), allow_pickle=True)),
    Case("C data is a FIFO", ["info", "@f.npy"], ["f.npy", "FIFO"], setup=lambda d: _fifo(d, "f.npy")),
    Case("C data links to /dev/null", ["info", "@n.npy"], ["n.npy", "device"],
         setup=lambda d: _link(d, "n.npy", "/dev/null")),
    Case("C HDF5 without a 4-D dataset", ["info", "@flat.h5"], ["flat.h5", "no 4-D dataset"],
         setup=lambda d: _hdf5(d / "flat.h5", a=np.zeros((4, 4)), b=np.zeros((2, 3, 4)))),
    Case("C HDF5 dataset of an absurd shape (stored sparse)", ["info", "@huge.h5"], ["huge.h5", "beyond"],
         setup=lambda d: _sparse_hdf5(d / "huge.h5", (2**20, 2**20, 64, 64))),
    Case("C NaN patterns", ["info", "@nan.npy"], ["nan.npy", "NaN"],
         setup=lambda d: np.save(d / "nan.npy", np.where(np.arange(8)[:, None, None, None] == 3, np.nan,
                                                          np.load(d / "s.npy").astype(np.float32)))),
    # C: options out of range
    Case("C train --seed -1", [*TRAIN, "--out", "@q.pt", "--seed", "-1"], ["--seed", "-1"]),
    Case("C train --seed 2**64", [*TRAIN, "--out", "@q.pt", "--seed", str(2**64)], ["--seed"]),
    Case("C train --epochs 0", [*TRAIN, "--out", "@q.pt", "--epochs", "0"], ["--epochs"]),
    Case("C train --threads 0", [*TRAIN, "--out", "@q.pt", "--threads", "0"], ["--threads"]),
    Case("C predict --threads -1", [*PREDICT, "--out", "@q", "--threads", "-1"], ["--threads"]),
    Case("C predict --batch-size 0", [*PREDICT, "--out", "@q", "--batch-size", "0"], ["batch"]),
    Case("C predict --workers 0 (no such option)", [*PREDICT, "--out", "@q", "--workers", "0"], ["--workers"]),
    Case("C simulate --threads 0", [*SIM, "@x.npy", "--threads", "0"], ["--threads"]),
    Case("C predict --out a folder", [*PREDICT, "--out", "@."], ["--out", "is a folder"]),
    # (a model trained on another detector size: tests/test_predict_cli.py)
    # C: output folders that cannot be written (checked before any work)
    Case("C predict into a read-only folder", [*PREDICT, "--out", "@ro/q"], ["ro", "not writable"],
         setup=_read_only_folder, unprivileged=True),
    Case("C train into a read-only folder", [*TRAIN, "--out", "@ro/q.pt"], ["ro", "not writable"],
         setup=_read_only_folder, unprivileged=True),
    Case("C simulate into a read-only folder", [*SIM, "@ro/x.npy"], ["ro", "not writable"],
         setup=_read_only_folder, unprivileged=True),
    Case("C plot-labels into a read-only folder",
         ["plot-labels", "@s.npy", "--labels", "@labels.csv", "--out", "@ro/f.png"], ["ro", "not writable"],
         setup=_read_only_folder, unprivileged=True),
    # C: a custom sampler that does not compile
    Case("C sampler module with a syntax error", [*LABEL, "--labels", "@new.csv", "--sampler", "broken:Bad"],
         ["broken.py", "line 4"], setup=_sampler_module, env={"PYTHONPATH": "@mods"}),
    # C: forged checkpoint fields, each named
    Case("C checkpoint preprocessing size 2**31", [*PREDICT[:3], "@forged.pt", "--out", "@q"],
         ["forged.pt", "preprocessing size"],
         setup=lambda d: _forged_model(d, lambda p: p["preprocessing"].update(size=2**31))),
    Case("C checkpoint random_state 'abc'", [*PREDICT[:3], "@forged.pt", "--out", "@q"],
         ["forged.pt", "random_state"],
         setup=lambda d: _forged_model(d, lambda p: p["params"].update(random_state="abc"))),
    # (every other forged field: test_forged_checkpoint_fields_are_named, in-process and fast)
    # L: label files that are not label files
    Case("L bad label value names the line", [*TRAIN[:3], "@bad.csv", "--out", "@q.pt"], ["bad.csv", ":3", "diagonal"],
         setup=lambda d: (d / "bad.csv").write_text("x,y,label\n0,0,none\n1,0,diagonal\n")),
    Case("L label file is a folder", [*TRAIN[:3], "@dir.csv", "--out", "@q.pt"], ["dir.csv", "folder"],
         setup=lambda d: (d / "dir.csv").mkdir()),
    Case("L label file links to /dev/null", [*TRAIN[:3], "@null.csv", "--out", "@q.pt"], ["null.csv"],
         setup=lambda d: _link(d, "null.csv", "/dev/null")),
    Case("L label file is a FIFO", [*TRAIN[:3], "@fifo.csv", "--out", "@q.pt"], ["fifo.csv", "FIFO"],
         setup=lambda d: _fifo(d, "fifo.csv")),
    Case("C prediction is a FIFO", ["evaluate", "@fp.npy", "--truth", "@truth.csv"], ["fp.npy", "FIFO"],
         setup=lambda d: _fifo(d, "fp.npy")),
    Case("C prediction is a .npz", ["evaluate", "@z.npy", "--truth", "@truth.csv"], ["z.npy", ".npz"],
         setup=_npz_named_npy),
    Case("L truth of another scan", ["evaluate", "@p.npy", "--truth", "@wide.csv"], ["wide.csv"],
         setup=lambda d: (d / "wide.csv").write_text("x,y,label\n" + "".join(f"{x},{y},none\n" for y in range(2)
                                                                             for x in range(30)))),
]


def _argv(items, d: Path) -> list[str]:
    """``@name`` is a path in the case folder; everything else is passed as it is."""
    return [str(d / a[1:]) if a.startswith("@") else a for a in items]


def _snapshot(d: Path) -> dict[str, str]:
    """Every entry under ``d``: a hash for regular files, the kind for anything else (links not followed)."""
    found = {}
    for root, dirs, files in os.walk(d):
        for name in dirs + files:
            p = Path(root, name)
            rel = str(p.relative_to(d))
            if p.is_symlink():
                found[rel] = "link -> " + os.readlink(p)
            elif p.is_file():
                found[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                found[rel] = "folder" if p.is_dir() else "special"
    return found


def _unprivileged(argv: list[str], d: Path) -> subprocess.CompletedProcess:
    """Run as an ordinary user: as root, read-only folders do not stop writes."""
    if os.geteuid() != 0:
        return run(*argv)
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root and setpriv is not installed: cannot test an unwritable folder")
    env = {**os.environ, "HOME": str(d), "MPLCONFIGDIR": str(d)}
    return subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "al4dstem", *argv],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, env=env)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=pytest.mark.xfail(reason=c.xfail, strict=False))
                                  if c.xfail else pytest.param(c, id=c.id) for c in CASES])
def test_hostile_input_is_one_line_and_leaves_the_inputs_alone(case, shared, tmp_path, monkeypatch):
    if case.unprivileged:  # a folder an unprivileged user can enter (pytest's tmp_path is private to root)
        d = Path(tempfile.mkdtemp(prefix="al4dstem-hostile-"))
        d.chmod(0o755)
    else:
        d = tmp_path
    try:
        for name in SHARED:
            shutil.copy(shared / name, d / name)
        if case.setup is not None:
            case.setup(d)
        for k, v in case.env.items():
            monkeypatch.setenv(k, str(d / v[1:]) if v.startswith("@") else v)
        before = _snapshot(d)
        argv = _argv(case.argv, d)
        p = _unprivileged(argv, d) if case.unprivileged else run(*argv)
        assert_one_line_error(p, *case.words)
        assert _snapshot(d) == before, "a refused command changed, removed or added files"
    finally:
        if case.unprivileged:
            (d / "ro").chmod(0o755)
            shutil.rmtree(d)


def test_extreme_finite_values_are_not_reported_as_broken(tmp_path):
    """Patterns with finite values near the float64 limit are finite: `info` says so, in one piece."""
    arr = np.ones((4, 4, 16, 16))
    arr[1, 1] = 1.7e308  # a sum over the bright-field disk overflows float64
    arr[2, 2] = -1.7e308
    arr[3, 0, 8, 8] = 1e300
    np.save(tmp_path / "big.npy", arr)
    p = run("info", tmp_path / "big.npy")
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""  # no numpy overflow warning either
    assert "non-finite  0 patterns" in p.stdout
    image = p.stdout.split("non-finite patterns):", 1)[1]
    assert image.strip() and "!" not in image  # '!' marks a broken pattern in a plain-text image


def test_a_duck_typed_sampler_without_needs_model_runs(shared, tmp_path, monkeypatch):
    """README: any class with query(context, n) is a sampler; one that does not say needs_model needs none."""
    (tmp_path / "duck.py").write_text(
        "import numpy as np\n\nclass FirstFew:\n    def __init__(self, random_state=0):\n"
        "        self.random_state = random_state\n\n    def query(self, context, n):\n"
        "        return np.arange(min(n, len(context.candidates)))\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    p = run("label", shared / "s.npy", "--labels", tmp_path / "l.csv", "--budget", 3, "--truth",
            shared / "truth.csv", "--sampler", "duck:FirstFew")
    assert p.returncode == 0, p.stderr
    assert "3 of 3 labelled" in p.stdout


def _first_weight(payload):
    return next(iter(payload["state_dict"].values()))


FORGERIES = {  # field changed -> words the error names
    "preprocessing size 2**31": (lambda p: p["preprocessing"].update(size=2**31), "preprocessing size"),
    "preprocessing size 32.5": (lambda p: p["preprocessing"].update(size=32.5), "preprocessing size"),
    "preprocessing size != network input": (lambda p: p["preprocessing"].update(size=64), "differs"),
    "preprocessing crop text": (lambda p: p["preprocessing"].update(crop="abcd"), "crop"),
    "preprocessing crop 2**40": (lambda p: p["preprocessing"].update(crop=[2**40, 0, 0, 0]), "crop"),
    "preprocessing unknown field": (lambda p: p["preprocessing"].update(bogus=1), "bogus"),
    "random_state 'abc'": (lambda p: p["params"].update(random_state="abc"), "random_state"),
    "random_state -1": (lambda p: p["params"].update(random_state=-1), "random_state"),
    "epochs -3": (lambda p: p["params"].update(epochs=-3), "epochs"),
    "batch_size 0": (lambda p: p["params"].update(batch_size=0), "batch_size"),
    "lr 'fast'": (lambda p: p["params"].update(lr="fast"), "lr"),
    "lr nan": (lambda p: p["params"].update(lr=float("nan")), "lr"),
    "augment 'yes'": (lambda p: p["params"].update(augment="yes"), "augment"),
    "class_weight 3": (lambda p: p["params"].update(class_weight=3), "class_weight"),
    "detector_shape floats": (lambda p: p.update(detector_shape=[32.5, 32]), "detector_shape"),
    "detector_shape 2**31": (lambda p: p.update(detector_shape=[2**31, 2**31]), "detector_shape"),
    "detector_shape booleans": (lambda p: p.update(detector_shape=[True, True]), "detector_shape"),
    "detector_shape a number": (lambda p: p.update(detector_shape=32), "detector_shape"),
    "a billion channels": (lambda p: p["network_config"].update(widths=[10**9] * 4), "network_config"),
    "negative channels": (lambda p: p["network_config"].update(widths=[-1, 2, 3, 4]), "network_config"),
    "network input 2**31": (lambda p: p["network_config"].update(input_size=2**31), "input_size"),
    "class_bias NaN": (lambda p: p["network_config"].update(class_bias=[float("nan"), 0, 0]), "class_bias"),
    "class_bias of two": (lambda p: p["network_config"].update(class_bias=[1.0, 2.0]), "class_bias"),
    "class_weight 'heavy'": (lambda p: p["params"].update(class_weight="heavy"), "class_weight"),
    "weights NaN": (lambda p: _first_weight(p).fill_(float("nan")), "NaN"),
    "weights of another shape": (lambda p: p["state_dict"].update(
        {next(iter(p["state_dict"])): __import__("torch").zeros(3, 3)}), "shape"),
    "weights text": (lambda p: p.update(state_dict={"a": "b"}), "state_dict"),
    "label_counts text": (lambda p: p.update(label_counts={"none": "x"}), "label_counts"),
    "history of numbers": (lambda p: p.update(history=[1, 2]), "history"),
    "format_version 1.5": (lambda p: p.update(format_version=1.5), "1.5"),
    "format_version 0": (lambda p: p.update(format_version=0), "format version"),
}


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_forged_checkpoint_fields_are_named(shared, tmp_path, forgery):
    """Every field of a model file is checked on load (in-process: what `predict` and `label --model` call)."""
    from al4dstem.errors import Al4dstemError
    from al4dstem.models import CNNClassifier
    from al4dstem.models.trained import TrainedNetwork

    change, words = FORGERIES[forgery]
    shutil.copy(shared / "m.pt", tmp_path / "m.pt")
    _forged_model(tmp_path, change)
    for load in (TrainedNetwork.load, CNNClassifier.load):
        with pytest.raises(Al4dstemError) as e:
            load(tmp_path / "forged.pt")
        message = str(e.value)
        assert "forged.pt" in message and words in message and "\n" not in message, message


def test_get_sampler_gives_a_duck_typed_sampler_needs_model_false(tmp_path, monkeypatch):
    """Whoever reads ``sampler.needs_model`` (the loop, a user's script) finds it on any sampler get_sampler makes."""
    from al4dstem.strategies import get_sampler

    (tmp_path / "ducks.py").write_text(
        "class Plain:\n    def query(self, context, n):\n        return []\n\n"
        "class Slotted:\n    __slots__ = ()\n\n    def query(self, context, n):\n        return [0]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("Plain", "Slotted"):
        sampler = get_sampler(f"ducks:{name}", random_state=0)
        assert sampler.needs_model is False
        assert list(sampler.query(None, 1)) == ([] if name == "Plain" else [0])

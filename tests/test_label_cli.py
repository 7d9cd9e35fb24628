"""`al4dstem label` and `al4dstem plot-labels` through the real command: unattended runs,
resuming, the figure, and every bad input (one stderr line, non-zero exit, label file untouched)."""

import csv
import subprocess

import numpy as np
import pytest

CLASSES = ("none", "vertical", "horizontal")
ROWS, COLS, K = 8, 12, 32


def truth_class(x, y):
    return 1 if y < 3 else 0 if y < 5 else 2


def make_scan(folder):
    """A 12 x 8 scan of 32 x 32 patterns: a central beam plus a class-dependent spot
    (above the centre: vertical; right of it: horizontal; none: no spot), and its truth CSV."""
    rng = np.random.default_rng(0)
    arr = rng.poisson(0.5, (ROWS, COLS, K, K)).astype(np.uint16)
    c = K // 2
    arr[:, :, c - 2:c + 2, c - 2:c + 2] += 800
    lines = ["x,y,label"]
    for y in range(ROWS):
        for x in range(COLS):
            cls = truth_class(x, y)
            if cls == 1:
                arr[y, x, c - 10:c - 7, c - 1:c + 2] += 60
            elif cls == 2:
                arr[y, x, c - 1:c + 2, c + 7:c + 10] += 60
            lines.append(f"{x},{y},{CLASSES[cls]}")
    np.save(folder / "scan.npy", arr)
    (folder / "truth.csv").write_text("\n".join(lines) + "\n")
    return folder / "scan.npy", folder / "truth.csv"


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    return make_scan(tmp_path_factory.mktemp("scan"))


def al4dstem(*args, stdin=subprocess.DEVNULL, timeout=120):
    return subprocess.run(["al4dstem", *map(str, args)], capture_output=True, text=True, stdin=stdin,
                          timeout=timeout)


def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_long_paths_are_printed_whole_in_pipes(scan, tmp_path):
    """A script reads the paths a command prints: never wrapped to a terminal's width."""
    data, truth = scan
    deep = tmp_path / ("a-long-folder-name-" * 6)  # the path alone is longer than 80 columns
    deep.mkdir()
    labels = deep / "labels.csv"
    p = al4dstem("label", data, "--labels", labels, "--budget", 3, "--sampler", "random", "--truth", truth,
                 "--seed", 0)
    assert p.returncode == 0, p.stderr
    assert any(line.endswith(f"saved in {labels}") for line in p.stdout.splitlines()), p.stdout


def test_unattended_run_resumes_and_plots(scan, tmp_path):
    data, truth = scan
    labels, fig = tmp_path / "labels.csv", tmp_path / "fig.png"
    p = al4dstem("label", data, "--labels", labels, "--budget", 10, "--sampler", "grid-midpoint",
                 "--truth", truth, "--seed", 0, "--plot", fig)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""  # quiet in pipes: no progress bar
    first = rows(labels)
    assert list(first[0]) == ["x", "y", "label", "round", "source", "time", "sampler"]
    assert {r["sampler"] for r in first} == {"grid-midpoint random_state=0 step=None"}  # how each was chosen
    assert len(first) == 10 and all(r["label"] == CLASSES[truth_class(int(r["x"]), int(r["y"]))] for r in first)
    assert "10 of 10 labelled" in p.stdout and str(labels) in p.stdout
    assert fig.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    p = al4dstem("label", data, "--labels", labels, "--budget", 16, "--sampler", "grid-midpoint",
                 "--truth", truth, "--seed", 0)
    assert p.returncode == 0, p.stderr
    again = rows(labels)
    assert again[:10] == first and len(again) == 16
    assert len({(r["x"], r["y"]) for r in again}) == 16
    assert "+6 labels" in p.stdout

    model = tmp_path / "m.pt"  # the model, and what info says of it, name the sampler that chose its labels
    p = al4dstem("train", data, "--labels", labels, "--out", model, "--epochs", 1, "--network", "default")
    assert p.returncode == 0, p.stderr
    p = al4dstem("info", model)
    assert p.returncode == 0, p.stderr
    assert "grid-midpoint random_state=0 step=None: 16" in p.stdout, p.stdout


def test_fill_nearest_is_flagged_in_the_file(scan, tmp_path):
    data, _ = scan
    sparse = tmp_path / "sparse.csv"
    sparse.write_text("x,y,label\n0,0,v\n11,7,h\n")
    labels = tmp_path / "l.csv"
    p = al4dstem("label", data, "--labels", labels, "--budget", 6, "--sampler", "random", "--truth", sparse,
                 "--fill", "nearest", "--seed", 1)
    assert p.returncode == 0, p.stderr
    got = rows(labels)
    assert len(got) == 6 and {r["source"] for r in got} <= {"truth", "truth-nearest"}
    assert any(r["source"] == "truth-nearest" for r in got)


def test_plot_labels_command(scan, tmp_path):
    data, _ = scan
    labels = tmp_path / "l.csv"
    labels.write_text("x,y,label\n0,0,vertical\n5,6,horizontal\n3,4,skip\n")
    p = al4dstem("plot-labels", data, "--labels", labels, "--out", tmp_path / "f.png")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


BAD = {
    "budget zero": ([], ["--budget", 0, "--truth", "{truth}"], "budget"),
    "budget negative": ([], ["--budget", -3, "--truth", "{truth}"], "budget"),
    "step larger than the scan": ([], ["--budget", 5, "--step", 40, "--truth", "{truth}"], "step"),
    "unknown sampler": ([], ["--budget", 5, "--sampler", "clairvoyant", "--truth", "{truth}"], "clairvoyant"),
    "labels from another scan": (["x,y,label", "40,2,h"], ["--budget", 5, "--truth", "{truth}"], "outside"),
    "labels with conflicts": (["x,y,label", "1,1,h", "1,1,v"], ["--budget", 5, "--truth", "{truth}"], "labelled"),
    "truth lacking every candidate": (["x,y,label", "0,0,v"], ["--budget", 5, "--truth", "{lonely}"],
                                      "no label for any"),
    "truth from another scan": ([], ["--budget", 5, "--truth", "{far}"], "outside"),
    "non-interactive stdin": ([], ["--budget", 5], "interactive terminal"),
    "unknown fill": ([], ["--budget", 5, "--truth", "{truth}", "--fill", "guess"], "fill"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_one_line_and_label_file_untouched(scan, tmp_path, case):
    data, truth = scan
    existing, args, needle = BAD[case]
    (tmp_path / "lonely.csv").write_text("x,y,label\n0,0,v\n")
    (tmp_path / "far.csv").write_text("x,y,label\n0,0,v\n300,2,h\n")
    labels = tmp_path / "labels.csv"
    if existing:
        labels.write_text("\n".join(existing) + "\n")
    before = labels.read_bytes() if existing else None
    args = [str(a).format(truth=truth, lonely=tmp_path / "lonely.csv", far=tmp_path / "far.csv") for a in args]
    p = al4dstem("label", data, "--labels", labels, *args)
    lines = p.stderr.strip().splitlines()
    assert p.returncode != 0 and len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert needle in lines[0]
    assert (labels.read_bytes() if labels.exists() else None) == before
    assert p.stdout == ""


@pytest.mark.parametrize("sampler", ["uncertainty", "hybrid"])
def test_model_driven_sampler_starts_on_a_new_label_file(scan, tmp_path, sampler):
    """No labels and no model: a space-filling seed batch, a model trained on it, then model-driven rounds."""
    data, truth = scan
    labels = tmp_path / "labels.csv"
    p = al4dstem("label", data, "--labels", labels, "--budget", 22, "--sampler", sampler, "--truth", truth,
                 "--seed", 0, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "22 of 22 labelled (budget reached)" in p.stdout, p.stdout
    got = rows(labels)
    assert len(got) == 22 and len({(r["x"], r["y"]) for r in got}) == 22
    assert all(r["label"] == CLASSES[truth_class(int(r["x"]), int(r["y"]))] for r in got)
    first = [r for r in got if r["round"] == got[0]["round"]]
    assert len({int(r["y"]) for r in first}) >= 3 and len({int(r["x"]) for r in first}) >= 3  # spread out
    if sampler == "uncertainty":
        assert len(first) == 10 and len({r["round"] for r in got}) == 3  # seed batch, then two model rounds

"""Oracles: truth file (skip / nearest fill), noisy truth, and the terminal oracle's drawing and keys."""

import io
import os

import numpy as np
import pytest
from rich.console import Console

from al4dstem.base import SKIP, Answer, Sampler
from al4dstem.data import open_dataset
from al4dstem.errors import Al4dstemError
from al4dstem.labels import LabelStore, read_labels
from al4dstem.loop import run_labelling
from al4dstem.oracles import NoisyOracle, TerminalOracle, TruthOracle
from al4dstem.oracles.keys import CTRL_C, require_terminal
from al4dstem.oracles.render import (
    CLASS_RGB,
    CURRENT_RGB,
    HalfBlocks,
    overview_rgb,
    resample,
    stretch,
    zoom_window,
)
from al4dstem.oracles.testing import check_oracle

TRUTH = {(x, y): (1 if y < 2 else 2) for x in range(6) for y in range(4)}


def labels_of(answers):
    return [a.label for a in answers]


def test_truth_answers_from_table_and_skips_what_it_lacks():
    oracle = TruthOracle({k: v for k, v in TRUTH.items() if k != (3, 1)})
    answers = list(oracle.answers(np.array([[0, 0], [3, 1], [5, 3]]), None))
    assert answers == [Answer(0, 0, 1, "truth"), Answer(3, 1, SKIP, "truth"), Answer(5, 3, 2, "truth")]
    assert oracle.covers(np.array([[3, 1], [0, 0]])).tolist() == [False, True]


def test_truth_fill_nearest_is_flagged():
    oracle = TruthOracle({(0, 0): 1, (9, 9): 2}, fill="nearest")
    answers = list(oracle.answers(np.array([[1, 1], [8, 7], [0, 0]]), None))
    assert labels_of(answers) == [1, 2, 1]
    assert [a.source for a in answers] == ["truth-nearest", "truth-nearest", "truth"]
    assert oracle.covers(np.array([[5, 5]])).all()


def test_truth_reads_csv_and_ghost_hunter_yaml(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("x,y,label\n2,1,h\n0,3,na\n4,0,skip\n")
    yml = tmp_path / "t.yaml"
    yml.write_text("labels:\n- {file: 2_1_boxsize5.png, label: horizontal}\n- {file: 0_3_boxsize5.png, label: na}\n")
    for path in (csv, yml):
        oracle = TruthOracle(path)
        assert oracle.table((4, 6)) == {(2, 1): 2, (0, 3): 0}
        assert labels_of(oracle.answers(np.array([[2, 1], [0, 3], [4, 0]]), None)) == [2, 0, SKIP]


def test_truth_from_another_scan_or_bad_fill_is_a_user_error(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("x,y,label\n50,1,h\n")
    with pytest.raises(Al4dstemError, match="outside the scan"):
        TruthOracle(csv).table((4, 6))
    with pytest.raises(Al4dstemError, match="unknown fill"):
        list(TruthOracle(TRUTH, fill="guess").answers(np.array([[0, 0]]), None))


def test_noisy_rates_and_flags():
    positions = np.array(list(TRUTH))
    truth = [TRUTH[tuple(p)] for p in positions.tolist()]
    assert labels_of(NoisyOracle(TRUTH, 0.0, random_state=1).answers(positions, None)) == truth
    flipped = list(NoisyOracle(TRUTH, 1.0, random_state=1).answers(positions, None))
    assert all(a.label != t and 0 <= a.label < 3 for a, t in zip(flipped, truth, strict=True))
    assert {a.source for a in flipped} == {"truth-flipped"}
    big = {(x, y): 0 for x in range(40) for y in range(25)}
    answers = labels_of(NoisyOracle(big, 0.3, random_state=2).answers(np.array(list(big)), None))
    assert 0.25 < np.mean(np.array(answers) != 0) < 0.35


def test_noisy_depends_only_on_position_and_seed():
    positions = np.array(list(TRUTH))
    whole = labels_of(NoisyOracle(TRUTH, 0.5, random_state=3).answers(positions, None))
    one_by_one = NoisyOracle(TRUTH, 0.5, random_state=3)
    assert [labels_of(one_by_one.answers(p[None], None))[0] for p in positions[::-1]][::-1] == whole
    assert labels_of(NoisyOracle(TRUTH, 0.5, random_state=4).answers(positions, None)) != whole
    assert labels_of(NoisyOracle({(0, 0): 1}, 1.0, random_state=0).answers(np.array([[1, 1]]), None)) == [SKIP]


@pytest.mark.parametrize("make", [
    lambda: TruthOracle({(x, y): (x + y) % 3 for x in range(7) for y in range(5) if (x * y) % 4}),
    lambda: TruthOracle({(0, 0): 1, (6, 4): 2}, fill="nearest"),
    lambda: NoisyOracle({(x, y): x % 3 for x in range(7) for y in range(5)}, 0.3, random_state=0),
    lambda: TerminalOracle(console=screen_console(), keys=Keys(list("hvnsuhvnhvnhv"))),
], ids=["truth", "truth-nearest", "noisy", "terminal"])
def test_every_oracle_keeps_the_contract(make, tmp_path):
    given = check_oracle(make, tmp_path)
    assert len(given) >= 6


# ---------------------------------------------------------------- drawing


def test_stretch_keeps_faint_ghosts_visible():
    img = np.zeros((64, 64))
    img[30:34, 30:34] = 1e5  # central beam
    img[10:12, 31:33] = 20  # ghost, 2e-4 of the beam
    img[0, 0] = 1e7  # a hot pixel
    s = stretch(img)
    assert s[11, 32] > 0.2 and s[40, 40] == 0
    assert (img[11, 32] - img.min()) / np.ptp(img) < 1e-5  # a linear min-max stretch would lose it


def test_resample_averages_down_and_repeats_up():
    img = np.arange(36, dtype=float).reshape(6, 6)
    assert resample(img, (3, 3))[0, 0] == np.mean([0, 1, 6, 7])
    assert np.all(resample(np.full((7, 5), 3.0), (3, 2)) == 3.0)  # uneven bins are still averages
    assert resample(img, (12, 12))[11, 11] == 35


def test_zoom_window_holds_the_beam_and_its_neighbour_disk():
    img = np.zeros((128, 128))
    img[60:68, 60:68] = 1000
    img[60:68, 90:98] = 100
    r0, r1, c0, c1 = zoom_window(img)
    assert r0 <= 60 and r1 >= 68 and c0 <= 60 and c1 >= 98
    assert (r1 - r0) < 128 and r1 - r0 == c1 - c0


def test_overview_colours_labels_and_marks_current():
    bg = np.random.default_rng(0).random((8, 12))
    rgb = overview_rgb(bg, {(1, 2): 0, (5, 6): 2}, (11, 7), max_width=12, max_height=8)
    assert rgb.shape == (8, 12, 3)
    assert tuple(rgb[2, 1]) == CLASS_RGB[0] and tuple(rgb[6, 5]) == CLASS_RGB[2]
    assert tuple(rgb[7, 11]) == CURRENT_RGB
    small = overview_rgb(bg, {(1, 2): 1}, None, max_width=100, max_height=16)
    assert small.shape == (16, 24, 3) and tuple(small[5, 3]) == CLASS_RGB[1]  # scaled up x2
    big = overview_rgb(np.zeros((34, 206)), {(205, 33): 1}, None, max_width=103, max_height=16)
    assert big.shape[1] <= 103 and big.shape[0] <= 16 and tuple(big[-1, -1]) == CLASS_RGB[1]


def test_half_blocks_draw_two_pixel_rows_per_line():
    rgb = np.zeros((5, 7, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    con = Console(file=io.StringIO(), width=40, force_terminal=True, color_system="truecolor")
    con.print(HalfBlocks(rgb))
    text = con.file.getvalue()
    assert text.count("\n") == 3 and text.count("\u2580") == 21
    assert "38;2;255;0;0" in text  # truecolor foreground of the upper-left pixel


# ---------------------------------------------------------------- the terminal oracle


class Keys:
    """Scripted key presses standing in for the terminal."""

    def __init__(self, keys):
        self.keys = list(keys)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def read(self):
        key = self.keys.pop(0)
        if isinstance(key, BaseException):
            raise key
        return key


class OneClassModel:
    classes_ = np.array([0, 1, 2])

    def predict_proba(self, X):
        return np.tile([0.1, 0.8, 0.1], (len(X), 1))


def small_dataset():
    rng = np.random.default_rng(0)
    arr = rng.poisson(1.0, (4, 6, 32, 32)).astype(np.uint16)
    arr[:, :, 14:18, 14:18] += 500
    return open_dataset(arr)


class FixedOrder(Sampler):
    def __init__(self, order):
        self.order = order

    def query(self, context, n):
        cand = [tuple(c) for c in context.candidates.tolist()]
        return np.array([cand.index(p) for p in self.order if p in cand][:n], dtype=np.int64)


def screen_console():
    # truecolor, as the CLI asks for: rich caches a style's escape codes for the first colour system
    # that renders it, so a 16-colour console here would leak into the truecolor tests of test_render.py
    return Console(file=io.StringIO(), width=120, height=45, force_terminal=True, record=True,
                   color_system="truecolor")


def label_at_terminal(tmp_path, keys, model=None, budget=10):
    """Drive the terminal oracle through the real loop; returns (result, live rows, screen text)."""
    con = screen_console()
    path = tmp_path / "l.csv"
    with LabelStore(path, (4, 6)) as store:
        store.append(0, 0, 1)
        result = run_labelling(small_dataset(), store, FixedOrder([(x, 0) for x in range(1, 6)] + [(0, 1)]),
                               TerminalOracle(console=con, keys=Keys(keys)), budget=budget, model=model,
                               retrain=False)
    return result, read_labels(path), con.export_text()


def test_terminal_keys_give_answers_and_screen_shows_context(tmp_path):
    result, rows, text = label_at_terminal(tmp_path, ["h", "z", "v", "x", "s", "u", "n", "q"], OneClassModel())
    assert [(r.position, r.name) for r in rows] == [((0, 0), "vertical"), ((1, 0), "horizontal"),
                                                    ((2, 0), "vertical"), ((3, 0), "none")]
    assert result.undone == 1 and result.stopped == "quit" and result.exit_code == 0
    assert "x=1 y=0" in text and "x=3 y=0" in text and "x=5 y=0" not in text
    assert "1 of 10 labelled" in text and "2 of 10 labelled" in text and "3 of 10 labelled" in text
    assert "last vertical x=2 y=0" in text and "last horizontal x=1 y=0" in text
    assert "zoom rows" in text and "model: vertical 80%" in text and "unknown key 'x'" in text
    assert "took back skip at x=3, y=0" in text


@pytest.mark.parametrize("quit_key, code", [("q", 0), (CTRL_C, 130), (KeyboardInterrupt(), 130)])
def test_terminal_quit_keeps_answers_so_far(tmp_path, quit_key, code):
    result, rows, _ = label_at_terminal(tmp_path, ["n", quit_key])
    assert [(r.position, r.name) for r in rows] == [((0, 0), "vertical"), ((1, 0), "none")]
    assert result.stopped == "quit" and result.exit_code == code
def test_terminal_needs_an_interactive_stdin():
    r, w = os.pipe()
    try:
        with os.fdopen(r) as pipe, pytest.raises(Al4dstemError, match="interactive terminal; use --truth"):
            require_terminal(pipe)
    finally:
        os.close(w)

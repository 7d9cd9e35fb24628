"""Drives the real terminal labeller in tmux, as a person would: read the screen, press keys.

Label 5 patterns, undo one, quit with q; run again, label one, quit with Ctrl-C; run again and
finish the budget. The CSV must hold exactly the confirmed labels. Needs tmux (apt package
``tmux``); skipped with that reason where it is missing.
"""

import os
import re
import shutil
import signal
import subprocess
import time

import pytest
from test_label_cli import CLASSES, make_scan, rows, truth_class

from al4dstem.labels import read_labels

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt-get install tmux)")

HEADER = re.compile(r"al4dstem label\s+x=(\d+) y=(\d+)\s+(\d+) of (\d+) labelled")
KEY_FOR = {0: "n", 1: "v", 2: "h"}
BUDGET = 8


class Tmux:
    """A private tmux server (own socket) with one fixed-size session."""

    def __init__(self, socket):
        self.socket = str(socket)

    def tmux(self, *args, check=True):
        return subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True, text=True, check=check)

    def start(self, command):
        self.tmux("kill-session", "-t", "label", check=False)
        self.tmux("new-session", "-d", "-s", "label", "-x", "150", "-y", "50", command)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "label").stdout

    def press(self, key, literal=True):
        self.tmux("send-keys", "-t", "label", *(["-l"] if literal else []), key)

    def wait(self, test, what, timeout=30.0):
        """Poll the screen until ``test(screen)`` holds; returns its value."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            screen = self.screen()
            got = test(screen)
            if got:
                return got
            time.sleep(0.05)
        pytest.fail(f"timed out waiting for {what}; the screen shows:\n{self.screen()}")

    def prompt(self, done, extra="", away_from=None):
        """Wait for the labelling screen with ``done`` labels (and, if given, another position
        than ``away_from``); returns the position shown."""

        def ready(screen):
            m = HEADER.search(screen)
            if (m and int(m.group(3)) == done and "[q] quit" in screen and extra in screen
                    and (int(m.group(1)), int(m.group(2))) != away_from):
                assert int(m.group(4)) == BUDGET
                return int(m.group(1)), int(m.group(2))
            return None

        return self.wait(ready, f"the prompt with {done} labels {extra}")


@pytest.fixture
def tmux(tmp_path):
    t = Tmux(tmp_path / "tmux.sock")
    yield t
    t.tmux("kill-server", check=False)


def test_person_labels_undoes_quits_and_resumes(tmux, tmp_path):
    data, _ = make_scan(tmp_path)
    labels = tmp_path / "labels.csv"
    command = (f"env -u COLUMNS -u LINES {shutil.which('al4dstem')} label {data} --labels {labels} "
               f"--budget {BUDGET} --sampler grid-midpoint --seed 0; echo EXIT=$?; sleep 300")
    confirmed = []  # what this person confirmed, in order

    def answer(position, done):
        before = len(rows(labels)) if labels.exists() else 0
        tmux.press(KEY_FOR[truth_class(*position)])
        confirmed.append((*position, CLASSES[truth_class(*position)]))
        wait_for_rows(labels, before + 1)  # the key press alone appends its row
        return tmux.prompt(done + 1) if done + 1 < BUDGET else None

    # session 1: five labels (with a look at the zoom), undo one, quit with q
    tmux.start(command)
    position = tmux.prompt(0)
    screen = tmux.screen()
    assert screen.count("\u2580") > 500 and "scan:" in screen and "[u] undo" in screen  # pattern + overview
    tmux.press("z")
    tmux.prompt(0, extra="zoom rows")
    for done in range(5):
        position = answer(position, done)
    tmux.press("u")
    tmux.prompt(4, extra="took back")
    confirmed.pop()
    tmux.press("q")
    tmux.wait(lambda s: "EXIT=0" in s, "the program to exit")
    assert "4 of 8 labelled" in tmux.screen()
    assert live(labels) == confirmed
    assert [r["label"] for r in rows(labels)][-1] == "undo"  # undo appended a retraction row

    # session 2: one more, then Ctrl-C stops like q (exit 130, as the shell expects after Ctrl-C)
    tmux.start(command)
    position = answer(tmux.prompt(4), 4)
    tmux.press("C-c", literal=False)
    tmux.wait(lambda s: "EXIT=130" in s, "the program to exit after Ctrl-C")
    assert "5 of 8 labelled" in tmux.screen()

    # session 3: skip one (it does not count), then finish the budget
    tmux.start(command)
    position = tmux.prompt(5)
    tmux.press("s")
    position = tmux.prompt(5, away_from=position)
    for done in range(5, BUDGET):
        position = answer(position, done)
    tmux.wait(lambda s: "EXIT=0" in s, "the program to finish the budget")
    assert "8 of 8 labelled (budget reached)" in tmux.screen()
    assert [r for r in live(labels) if r[2] != "skip"] == confirmed
    got = rows(labels)
    assert sum(r["label"] == "skip" for r in got) == 1
    assert {r["source"] for r in got} == {"terminal"}


def live(path):
    return [(r.x, r.y, r.name) for r in read_labels(path)]


def wait_for_rows(path, n, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and len(rows(path)) >= n:
            return
        time.sleep(0.01)
    pytest.fail(f"{path} did not reach {n} rows within {timeout} s")


@pytest.mark.parametrize("stop", ["SIGHUP", "SIGTERM", "SIGKILL", "close-terminal"])
def test_stopping_mid_round_keeps_every_answer(tmux, tmp_path, stop):
    """A dropped ssh session (SIGHUP), kill (SIGTERM), kill -9, or closing the terminal window in
    the middle of a round: every answered pattern is in the file, nothing torn."""
    data, _ = make_scan(tmp_path)
    labels, pid_file = tmp_path / "labels.csv", tmp_path / "pid"
    inner = (f"echo $$ > {pid_file}; exec env -u COLUMNS -u LINES {shutil.which('al4dstem')} label {data} "
             f"--labels {labels} --budget {BUDGET} --sampler grid-midpoint --seed 0")
    tmux.start(f"sh -c '{inner}'; echo EXIT=$?; sleep 300")
    answered = []
    position = tmux.prompt(0)
    for done in range(3):  # grid-midpoint's first round is longer: this is mid-round
        tmux.press(KEY_FOR[truth_class(*position)])
        answered.append((*position, CLASSES[truth_class(*position)]))
        position = tmux.prompt(done + 1)
    pid = int(pid_file.read_text())
    if stop == "close-terminal":
        tmux.tmux("kill-session", "-t", "label")
    else:
        os.kill(pid, getattr(signal, stop))
    end = time.monotonic() + 20
    while time.monotonic() < end and os.path.exists(f"/proc/{pid}") and "zombie" not in _state(pid):
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}") or "zombie" in _state(pid), "the labeller did not stop"
    if stop in ("SIGHUP", "SIGTERM"):  # a clean stop: the summary, and the shell's code for the signal
        tmux.wait(lambda s: f"EXIT={128 + getattr(signal, stop)}" in s, "the exit code")
        assert "3 of 8 labelled (stopped; run the same command again" in tmux.screen()
    assert labels.read_bytes().endswith(b"\n")
    assert live(labels) == answered


def _state(pid) -> str:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((line for line in f if line.startswith("State:")), "")
    except OSError:
        return ""

"""kill -9 in the middle of unattended labelling loses no confirmed label and leaves no torn row;
rerunning the same command finishes the budget without duplicates, with the labels a run that
was never interrupted gives."""

import os
import signal
import subprocess
import time

from test_label_cli import CLASSES, COLS, ROWS, make_scan, rows, truth_class

from al4dstem.labels import LabelStore

BUDGET = 24
# A custom sampler (the --sampler package.module:Class route), slowed so that a kill lands
# mid-run: one position per round in scan order, 30 ms to think.
SLOW_SAMPLER = '''
import time
import numpy as np
from al4dstem.base import Sampler


class SlowScanOrder(Sampler):
    def __init__(self, random_state=None):
        self.random_state = random_state

    def query(self, context, n):
        time.sleep(0.03)
        return np.arange(min(1, n, len(context.candidates)))
'''


def start(data, truth, labels, folder):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen(["al4dstem", "label", str(data), "--labels", str(labels), "--budget", str(BUDGET),
                             "--sampler", "slow_sampler:SlowScanOrder", "--truth", str(truth), "--seed", "0"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def data_lines(path):
    return max(0, len(path.read_bytes().splitlines()) - 1) if path.exists() else 0


def test_kill_9_mid_labelling_loses_nothing(tmp_path):
    data, truth = make_scan(tmp_path)
    (tmp_path / "slow_sampler.py").write_text(SLOW_SAMPLER)
    labels = tmp_path / "labels.csv"
    proc = start(data, truth, labels, tmp_path)
    end = time.monotonic() + 60
    while data_lines(labels) < 5 and proc.poll() is None and time.monotonic() < end:
        time.sleep(0.005)
    assert proc.poll() is None, proc.communicate()[1].decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert labels.read_bytes().endswith(b"\n")  # no torn row
    got = rows(labels)
    assert 5 <= len(got) < BUDGET
    assert all(len(r) == 7 and None not in r.values() and r["source"] == "truth" for r in got)
    assert {r["sampler"] for r in got} == {"slow_sampler:SlowScanOrder random_state=0"}  # how each was chosen
    assert all(r["label"] == CLASSES[truth_class(int(r["x"]), int(r["y"]))] for r in got)
    with LabelStore(labels, (ROWS, COLS)) as store:  # valid and complete: opens as it is
        assert len(store) == len(got)

    proc = start(data, truth, labels, tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()
    # the same labels as a run never interrupted: the first BUDGET positions in scan order
    expected = [(x, y, CLASSES[truth_class(x, y)]) for y in range(ROWS) for x in range(COLS)][:BUDGET]
    assert [(int(r["x"]), int(r["y"]), r["label"]) for r in rows(labels)] == expected

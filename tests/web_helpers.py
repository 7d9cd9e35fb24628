"""Shared by the browser-labeller tests: small simulated scans, the real `al4dstem label --ui
browser` process, and a plain HTTP client (urllib: real requests against the running server)."""

import csv
import json
import os
import queue
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from al4dstem.simulate import simulate_to_file

TOKEN_HEADER = "X-Al4dstem-Token"
# Generous waits for a loaded two-core CI machine; a hang still fails, with what the labeller said.
START_WAIT = 120  # seconds for the labeller to print its URL (imports, the first round)
EXIT_WAIT = 90  # seconds for it to end once it has been told to (it lets replies in flight finish first)
REQUEST_WAIT = 90  # seconds for one HTTP reply (the server bounds its own waits below this, but a long poll)
KEY_OF_CLASS = {"none": "n", "vertical": "v", "horizontal": "h"}


def make_scan(folder, nx=12, ny=8, detector=64, seed=0):
    """A small simulated scan (simulator defaults otherwise, e.g. the ghost strength) and its truth:
    ``(data.npy, {(x, y): class name})``."""
    data, truth = folder / "scan.npy", folder / "truth.csv"
    simulate_to_file(data, truth, nx=nx, ny=ny, detector=detector, seed=seed, threads=1)
    return data, {(int(r["x"]), int(r["y"])): r["label"] for r in read_rows(truth)}


def read_rows(path):
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def answered(path):
    """The label file's rows as ``(x, y, label)``, in order (undo rows included)."""
    return [(int(r["x"]), int(r["y"]), r["label"]) for r in read_rows(path)]


class Reply:
    def __init__(self, status, body: bytes, headers):
        self.status, self.raw, self.headers = status, body, headers

    def json(self):
        return json.loads(self.raw)


class Client:
    """Requests to the labelling server named by ``url`` (the URL the labeller printed)."""

    def __init__(self, url):
        parts = urlsplit(url)
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.netloc = parts.netloc
        self.token = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)["token"]

    def request(self, method, path, body=None, headers=None, token=True, raw=None, timeout=REQUEST_WAIT):
        sent = {TOKEN_HEADER: self.token} if token is True else ({TOKEN_HEADER: token} if token else {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as r:
                return Reply(r.status, r.read(), r.headers)
        except urllib.error.HTTPError as e:
            return Reply(e.code, e.read(), e.headers)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def state(self, since=None):
        reply = self.get("/api/state" + (f"?since={since}" if since is not None else ""))
        assert reply.status == 200, reply.raw
        return reply.json()

    def current(self, timeout_polls=5):
        """The position the session proposes now (waits through a round change)."""
        state = self.state()
        for _ in range(timeout_polls):
            if state["current"] is not None or state["stopped"]:
                break
            state = self.state(since=state["version"])
        return state["current"]


class LabelProcess:
    """``al4dstem label DATA --labels LABELS --budget N --ui browser --no-open --port 0``, running.

    ``url`` is the first line it prints on stdout. Use it as a context manager: on the way out it
    kills the process if it still runs, and when a test failed, prints what the process wrote on
    stderr (pytest shows it with the failure: a server-side traceback names the cause).
    """

    def __init__(self, data, labels, budget, *extra, timeout=START_WAIT):
        self.err = ""
        self.proc = subprocess.Popen(
            ["al4dstem", "label", str(data), "--labels", str(labels), "--budget", str(budget), "--ui", "browser",
             "--no-open", "--port", "0", *map(str, extra)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: lines.put(self.proc.stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            self.close()
            raise AssertionError(f"the labeller printed no URL in {timeout} s; stderr: {self.err}") from None
        if not line.startswith("http://"):
            out, err = self.proc.communicate(timeout=EXIT_WAIT)
            raise AssertionError(f"expected the URL on stdout, got {line!r}; stderr: {err}")
        self.url = line.strip()
        self.client = Client(self.url)

    def finish(self, timeout=EXIT_WAIT):
        """Wait for the process to end: ``(returncode, stdout, stderr)``."""
        out, self.err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out, self.err

    def close(self):
        if self.proc.returncode is None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.err = self.proc.communicate(timeout=EXIT_WAIT)[1]

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        self.close()
        if error is not None:
            print(f"--- stderr of the labeller (pid {self.proc.pid}, exit {self.proc.returncode}):\n{self.err}",
                  file=sys.stderr)

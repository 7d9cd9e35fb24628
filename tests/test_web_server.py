"""The browser labeller's server, through real HTTP: the token, cross-origin and foreign-Host
refusal, every malformed request (4xx, label file untouched, server still up), answers that are
on disk when acknowledged, the maps and the model's views, and the real `al4dstem label --ui
browser` process stopped by kill -9, SIGTERM and SIGHUP in the middle of a round."""

import os
import signal
import socket
import threading
import time

import numpy as np
import pytest
from web_helpers import TOKEN_HEADER, Client, LabelProcess, answered, make_scan

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from al4dstem.base import Answer, QuitLabelling  # noqa: E402
from al4dstem.data import open_dataset  # noqa: E402
from al4dstem.errors import Al4dstemError  # noqa: E402
from al4dstem.labels import CLASSES, LabelStore  # noqa: E402
from al4dstem.loop import drive  # noqa: E402
from al4dstem.session import LabellingSession  # noqa: E402
from al4dstem.strategies import get_sampler  # noqa: E402
from al4dstem.web import LabelServer  # noqa: E402

BUDGET = 12
LOOP_WAIT = 60  # seconds for the labelling loop to end once told to (generous: a loaded two-core machine)


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    return make_scan(tmp_path_factory.mktemp("scan"))


class Running:
    """A LabelServer with the labelling loop driving it in a thread (as the CLI does in its main one)."""

    def __init__(self, data, labels, budget=BUDGET, model=None):
        self.dataset = open_dataset(data)
        self.labels = labels
        self.store = LabelStore(labels, self.dataset.scan_shape)
        self.session = LabellingSession(self.dataset, self.store, get_sampler("random", random_state=0), budget,
                                        model=model, retrain=False)
        self.server = LabelServer(self.session)
        self.url = self.server.start()
        self.client = Client(self.url)
        self.result = None
        self.thread = threading.Thread(target=self._drive, daemon=True)
        self.thread.start()

    def _drive(self):
        self.result = drive(self.session, self.server.oracle())

    def close(self):
        self.server.stop()
        self.thread.join(timeout=LOOP_WAIT)
        self.store.close()


@pytest.fixture
def running(scan, tmp_path):
    run = Running(scan[0], tmp_path / "labels.csv")
    yield run
    run.close()


def unchanged(path, before):
    return (path.read_bytes() if path.exists() else b"") == before


def snapshot(path):
    return path.read_bytes() if path.exists() else b""


# ---------------------------------------------------------------- the token


def test_page_assets_and_api_need_the_token(running):
    c = running.client
    page = c.get(f"/?token={c.token}", token=None)
    assert page.status == 200 and b"static/app.js?token=" in page.raw
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    for asset in ("app.js", "style.css"):
        assert c.get(f"/static/{asset}?token={c.token}", token=None).status == 200
    assert c.get("/api/state").status == 200

    before = snapshot(running.labels)
    x, y = c.current()
    wrong = "x" + c.token[1:]
    refused = [
        c.get("/", token=None), c.get(f"/?token={wrong}", token=None), c.get("/?token=", token=None),
        c.get("/static/app.js", token=None), c.get(f"/static/app.js?token={wrong}", token=None),
        c.get("/api/state", token=None), c.get("/api/state", token=wrong),
        c.get(f"/api/state?token={c.token}", token=None),  # the API takes it as a header only
        c.get("/api/pattern?x=0&y=0", token=wrong),
        c.post("/api/answer", {"x": x, "y": y, "label": "h"}, token=None),
        c.post("/api/answer", {"x": x, "y": y, "label": "h"}, token=wrong),
        c.post("/api/undo", {}, token=None), c.post("/api/quit", {}, token=wrong),
    ]
    assert [r.status for r in refused] == [403] * len(refused)
    assert unchanged(running.labels, before)
    assert running.session.stopped is None


def test_every_server_has_its_own_token(scan, tmp_path, running):
    other = Running(scan[0], tmp_path / "other.csv")
    try:
        assert other.client.token != running.client.token and len(other.client.token) >= 24
        assert other.client.get("/api/state", token=running.client.token).status == 403
    finally:
        other.close()


# ---------------------------------------------------------------- other origins and hosts


def test_cross_origin_and_foreign_hosts_are_refused(running):
    c = running.client
    before = snapshot(running.labels)
    x, y = c.current()
    port = c.netloc.rsplit(":", 1)[1]
    answer = {"x": x, "y": y, "label": "v"}
    refused = [
        c.post("/api/answer", answer, headers={"Origin": "http://evil.example"}),
        c.post("/api/answer", answer, headers={"Origin": f"http://127.0.0.1:{int(port) + 1}"}),
        c.post("/api/answer", answer, headers={"Origin": "null"}),
        c.post("/api/answer", answer, headers={"Sec-Fetch-Site": "cross-site"}),
        c.get("/api/state", headers={"Origin": "https://evil.example"}),
        # DNS rebinding: a name the attacker controls, pointed at 127.0.0.1
        c.post("/api/answer", answer, headers={"Host": f"evil.example:{port}"}),
        c.get(f"/?token={c.token}", token=None, headers={"Host": f"evil.example:{port}"}),
        c.get("/api/state", headers={"Host": "127.0.0.1:1"}),
    ]
    assert [r.status for r in refused] == [403] * len(refused)
    assert unchanged(running.labels, before)
    # a link to the page from elsewhere (a notebook) opens it; the page's own requests are same-origin
    link = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    assert c.get(f"/?token={c.token}", token=None, headers=link).status == 200
    assert c.get("/api/state", headers=link).status == 403
    assert c.get(f"/static/app.js?token={c.token}", token=None, headers=link).status == 403
    # the server's own origin, under its loopback names, is fine
    assert c.get("/api/state", headers={"Origin": f"http://{c.netloc}"}).status == 200
    local = f"localhost:{port}"
    assert c.get("/api/state", headers={"Host": local, "Origin": f"http://{local}"}).status == 200


def test_a_non_loopback_host_gets_a_warning(running):
    assert running.server.warning is None
    for host in ("0.0.0.0", "::", "192.0.2.7", "example.org"):
        warning = LabelServer(running.session, host=host).warning
        assert warning and host in warning and "token" in warning
    for host in ("localhost", "127.0.0.1", "127.0.0.2", "::1"):
        assert LabelServer(running.session, host=host).warning is None


def test_a_busy_port_is_a_one_line_error(running):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        with pytest.raises(Al4dstemError, match=r"cannot serve on 127\.0\.0\.1:\d+ .*--port 0"):
            LabelServer(running.session, port=taken.getsockname()[1]).start()
    finally:
        taken.close()
    with pytest.raises(Al4dstemError, match="port"):
        LabelServer(running.session, port=70000).start()


# ---------------------------------------------------------------- malformed requests

BAD_ANSWERS = {
    "not JSON": ({"raw": b"{x: 1"}, 400),
    "JSON but not UTF-8": ({"raw": b'{"x": "\xff"}'}, 400),
    "a JSON list": ({"body": [1, 2, "h"]}, 422),
    "a JSON string": ({"body": "h"}, 422),
    "no x": ({"body": {"y": 0, "label": "h"}}, 422),
    "no label": ({"body": {"x": 0, "y": 0}}, 422),
    "x a float": ({"body": {"x": 1.5, "y": 0, "label": "h"}}, 422),
    "x a string": ({"body": {"x": "1", "y": 0, "label": "h"}}, 422),
    "x true": ({"body": {"x": True, "y": 0, "label": "h"}}, 422),
    "x null": ({"body": {"x": None, "y": 0, "label": "h"}}, 422),
    "x huge": ({"body": {"x": 10 ** 30, "y": 0, "label": "h"}}, 422),
    "x negative": ({"body": {"x": -1, "y": 0, "label": "h"}}, 422),
    "x past the scan": ({"body": {"x": 12, "y": 0, "label": "h"}}, 422),
    "y past the scan": ({"body": {"x": 0, "y": 8, "label": "h"}}, 422),
    "unknown label": ({"body": {"x": 0, "y": 0, "label": "maybe"}}, 422),
    "label undo": ({"body": {"x": 0, "y": 0, "label": "undo"}}, 422),
    "label a number past the classes": ({"body": {"x": 0, "y": 0, "label": 3}}, 422),
    "label null": ({"body": {"x": 0, "y": 0, "label": None}}, 422),
    "label a list": ({"body": {"x": 0, "y": 0, "label": ["h"]}}, 422),
    "a huge body": ({"body": {"x": 0, "y": 0, "label": "h", "pad": "x" * 100_000}}, 413),
    "not declared JSON": ({"raw": b'{"x": 0, "y": 0, "label": "h"}', "headers": {"Content-Type": "text/plain"}}, 415),
    "a form post": ({"raw": b"x=0&y=0&label=h",
                     "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 415),
}


@pytest.mark.parametrize("case", list(BAD_ANSWERS), ids=list(BAD_ANSWERS))
def test_bad_answers_are_refused_and_touch_nothing(running, case):
    c = running.client
    kwargs, status = BAD_ANSWERS[case]
    kwargs = dict(kwargs)
    headers = kwargs.pop("headers", {})
    if "raw" in kwargs:
        headers.setdefault("Content-Type", "application/json")
    before = snapshot(running.labels)
    reply = c.request("POST", "/api/answer", headers=headers, **kwargs)
    assert reply.status == status, reply.raw
    assert "error" in reply.json()
    assert unchanged(running.labels, before)
    assert c.get("/api/state").status == 200 and running.session.stopped is None


BAD_READS = {
    "pattern without y": "/api/pattern?x=0",
    "pattern x not a number": "/api/pattern?x=abc&y=0",
    "pattern x a float": "/api/pattern?x=0.5&y=0",
    "pattern outside": "/api/pattern?x=0&y=999",
    "pattern negative": "/api/pattern?x=-1&y=0",
    "pattern unknown kind": "/api/pattern?x=0&y=0&kind=evil",
    "pattern huge size": "/api/pattern?x=0&y=0&size=100000",
    "guess outside": "/api/guess?x=99&y=0",
    "state since text": "/api/state?since=soon",
    "a file outside static": "/static/..%2F..%2Fserver.py",
    "an unlisted static file": "/static/index.html",
    "no such route": "/api/nothing",
}


@pytest.mark.parametrize("case", list(BAD_READS), ids=list(BAD_READS))
def test_bad_reads_are_refused(running, case):
    c = running.client
    path = BAD_READS[case]
    if path.startswith("/static/"):
        path += f"?token={c.token}"
    before = snapshot(running.labels)
    reply = c.get(path)
    assert 400 <= reply.status < 500, reply.raw
    assert unchanged(running.labels, before)
    assert c.get("/api/state").status == 200


def test_answers_that_the_session_refuses_get_4xx_and_the_round_goes_on(running):
    c = running.client
    x, y = c.current()
    assert c.post("/api/answer", {"x": x, "y": y, "label": "h"}).status == 200
    before = snapshot(running.labels)
    again = c.post("/api/answer", {"x": x, "y": y, "label": "v"})
    assert again.status == 409 and "answered already" in again.json()["error"]
    assert unchanged(running.labels, before)
    x2, y2 = c.current()
    assert c.post("/api/answer", {"x": x2, "y": y2, "label": "v"}).status == 200
    assert answered(running.labels) == [(x, y, "horizontal"), (x2, y2, "vertical")]


# ---------------------------------------------------------------- answers are on disk when acknowledged


def test_acknowledged_answers_are_in_the_file(running):
    c = running.client
    state = c.state()
    assert state["budget"] == BUDGET and state["done"] == 0 and state["current"] is not None
    given = []
    for key, name in (("h", "horizontal"), ("vertical", "vertical"), (0, "none"), ("s", "skip")):
        x, y = c.current()
        reply = c.post("/api/answer", {"x": x, "y": y, "label": key})
        assert reply.status == 200
        given.append((x, y, name))
        assert answered(running.labels) == given  # on disk before the reply came
        assert reply.json()["current"] != [x, y]
    assert reply.json()["done"] == 3 and reply.json()["skips"] == 1

    # a position picked on the map, outside the round
    queue = {tuple(p) for p in c.state()["queue"]}
    rows, cols = c.state()["scan_shape"]
    picked = next((x, y) for y in range(rows) for x in range(cols)
                  if (x, y) not in queue and (x, y) not in {g[:2] for g in given})
    assert c.post("/api/answer", {"x": picked[0], "y": picked[1], "label": "n"}).status == 200
    given.append((*picked, "none"))
    assert answered(running.labels) == given

    undo = c.post("/api/undo", {})
    assert undo.status == 200 and undo.json()["done"] == 3
    assert answered(running.labels) == [*given, (*picked, "undo")]
    assert c.current() == list(picked)  # the retracted position is asked again first

    quit_ = c.post("/api/quit", {})
    assert quit_.status == 200 and quit_.json()["stopped"] == "quit"
    running.thread.join(timeout=LOOP_WAIT)
    assert not running.thread.is_alive(), "the labelling loop did not end after the quit"
    assert running.result.stopped == "quit" and running.result.labelled == 3
    assert c.post("/api/answer", {"x": picked[0], "y": picked[1], "label": "n"}).status == 409
    assert answered(running.labels) == [*given, (*picked, "undo")]


def test_undo_with_nothing_to_take_back_is_refused(running):
    before = snapshot(running.labels)
    reply = running.client.post("/api/undo", {})
    assert reply.status == 409 and unchanged(running.labels, before)


def test_the_budget_ends_the_session(scan, tmp_path):
    run = Running(scan[0], tmp_path / "l.csv", budget=2)
    try:
        c = run.client
        for _ in range(2):
            x, y = c.current()
            last = c.post("/api/answer", {"x": x, "y": y, "label": "n"})
        assert last.status == 200 and last.json()["stopped"] == "budget"
        run.thread.join(timeout=LOOP_WAIT)
        assert not run.thread.is_alive(), "the labelling loop did not end at the budget"
        assert run.result.stopped == "budget" and len(answered(run.labels)) == 2
    finally:
        run.close()


# ---------------------------------------------------------------- what the page shows


def test_pattern_survey_and_ghost_rings(running, scan):
    c = running.client
    _, truth = scan
    rows, cols = running.dataset.detector_shape
    raw = c.get("/api/pattern?x=3&y=2&kind=raw")
    assert raw.status == 200 and raw.headers["x-shape"] == f"{rows},{cols}"
    assert np.array_equal(np.frombuffer(raw.raw, "<f4").reshape(rows, cols), running.dataset.pattern(3, 2))
    enhanced = c.get("/api/pattern?x=3&y=2")
    assert len(enhanced.raw) == rows * cols * 4
    thumb = c.get("/api/pattern?x=3&y=2&size=16")
    assert thumb.headers["x-shape"] == "16,16" and len(thumb.raw) == 16 * 16 * 4

    survey = c.get("/api/survey?wait=1").json()
    assert survey["ready"] and survey["error"] is None
    ghosts = survey["overlay"]["ghosts"]
    assert len(ghosts["vertical"]) >= 4 and len(ghosts["horizontal"]) >= 4
    maps = {name: np.array(m, dtype=float) for name, m in survey["maps"].items()}
    assert maps["bright-field"].shape == running.dataset.scan_shape
    # the ghost dark field tells the domains apart without any model
    is_class = {name: np.zeros(running.dataset.scan_shape, bool) for name in CLASSES}
    for (x, y), name in truth.items():
        is_class[name][y, x] = True
    for name, other in (("vertical", "horizontal"), ("horizontal", "vertical")):
        df = maps[f"dark-field {name}"]
        assert df[is_class[name]].mean() > df[is_class[other]].mean() + 0.005


class StubModel:
    """A fitted scikit-learn-style model over positions: 'vertical' left of x = 6, else 'horizontal'."""

    classes_ = np.array([0, 1, 2])

    def predict_proba(self, X):
        X = np.asarray(X)
        p = np.zeros((len(X), 3))
        p[np.arange(len(X)), np.where(X[:, 0] < 6, 1, 2)] = 0.8
        p[:, 0] += 0.2
        return p

    def fit(self, X, y):
        return self


def test_prediction_map_and_guess(scan, tmp_path):
    run = Running(scan[0], tmp_path / "l.csv", model=StubModel())
    try:
        c = run.client
        assert c.state()["model"] is True
        assert c.get("/api/guess?x=2&y=1").json()["probs"] == pytest.approx([0.2, 0.8, 0])
        found = c.get("/api/prediction").json()
        end = time.monotonic() + LOOP_WAIT  # the prediction runs in a background thread
        while not found.get("fresh") and time.monotonic() < end:
            time.sleep(0.05)
            found = c.get("/api/prediction").json()
        assert found["fresh"] and found["model"]
        probs = np.array(found["probs"], dtype=float).reshape(*run.dataset.scan_shape, 3)
        assert np.allclose(probs[:, :6], [0.2, 0.8, 0]) and np.allclose(probs[:, 6:], [0.2, 0, 0.8])
    finally:
        run.close()


# ---------------------------------------------------------------- the real command, stopped mid-round

STOPS = {"kill -9": signal.SIGKILL, "SIGTERM": signal.SIGTERM, "SIGHUP": signal.SIGHUP}
EXIT_CODES = {"SIGTERM": 143, "SIGHUP": 129}  # the shell's codes for those signals


@pytest.mark.parametrize("how", list(STOPS))
def test_a_stopped_labeller_keeps_every_acknowledged_answer(scan, tmp_path, how):
    data, truth = scan
    labels = tmp_path / "labels.csv"
    with LabelProcess(data, labels, 20) as run:
        c = run.client
        acknowledged = []
        for _ in range(4):
            x, y = c.current()
            name = truth[(x, y)]
            reply = c.post("/api/answer", {"x": x, "y": y, "label": name})
            assert reply.status == 200, reply.raw
            acknowledged.append((x, y, name))
            assert answered(labels) == acknowledged
        os.kill(run.proc.pid, STOPS[how])
        code, out, err = run.finish()
        assert labels.read_bytes().endswith(b"\n")  # no torn row
        assert answered(labels) == acknowledged
        if how == "kill -9":
            assert code == -signal.SIGKILL
        else:  # a clean stop: the summary, no traceback, the shell's code for the signal
            assert "Traceback" not in err
            assert "4 of 20 labelled" in out and "run the same command again" in out, out
            assert code == EXIT_CODES[how]

    # the same command resumes where it stopped
    with LabelProcess(data, labels, 20) as again:
        state = again.client.state()
        assert state["done"] == 4 and tuple(state["current"]) not in {a[:2] for a in acknowledged}
        reply = again.client.post("/api/quit", {})  # the first request that warms patterns: nothing is ready
        assert reply.status == 200, reply.raw
        code, out, _ = again.finish()
        assert code == 0 and "4 of 20 labelled" in out, out


def test_closing_the_page_loses_nothing(scan, tmp_path):
    """The page holds no state: a client that goes away mid-session (closed tab) and a new one
    (reopened URL) see the same session, and nothing is lost or repeated."""
    data, truth = scan
    labels = tmp_path / "labels.csv"
    with LabelProcess(data, labels, 20) as run:
        first = run.client
        x, y = first.current()
        assert first.post("/api/answer", {"x": x, "y": y, "label": truth[(x, y)]}).status == 200
        waiting = threading.Thread(target=lambda: first.state(since=first.state()["version"]), daemon=True)
        waiting.start()  # a long poll left open, as a page has when it is closed
        reopened = Client(run.url)
        state = reopened.state()
        assert state["done"] == 1 and state["labels"] == [[x, y, CLASSES.index(truth[(x, y)])]]
        reply = reopened.post("/api/quit", {})
        assert reply.status == 200, reply.raw
        code, out, _ = run.finish()
        assert code == 0 and "1 of 20 labelled" in out, out
    assert answered(labels) == [(x, y, truth[(x, y)])]


def test_token_header_name_is_the_pages(running):
    """The page sends the token in this header (a cross-origin page cannot set it without CORS)."""
    assert TOKEN_HEADER.lower() == "x-al4dstem-token"
    js = running.client.get(f"/static/app.js?token={running.client.token}", token=None).raw.decode()
    assert '"X-Al4dstem-Token"' in js


# ---------------------------------------------------------------- the oracle's contract, step by step


def test_the_oracle_acknowledges_only_what_the_loop_recorded(scan, tmp_path):
    from al4dstem.base import UNDO
    from al4dstem.web.oracle import BrowserOracle, Posted

    dataset = open_dataset(scan[0])
    with LabelStore(tmp_path / "l.csv", dataset.scan_shape) as store:
        session = LabellingSession(dataset, store, get_sampler("random", random_state=0), 5)
        positions = session.next_round()
        oracle = BrowserOracle()
        answers = oracle.answers(positions, session)
        first = Posted("answer", *map(int, positions[0]), 2)
        oracle.post(first)
        answer = next(answers)
        assert (answer.x, answer.y, answer.label) == (*map(int, positions[0]), 2)
        assert not first.reply.done()  # not acknowledged before the loop has written it
        session.record(answer, source=oracle.source)
        assert not first.reply.done()

        outside = Posted("answer", 99, 0, 1)  # refused by the session: 422, and the oracle waits on
        undo = Posted("undo")
        oracle.post(outside)
        oracle.post(undo)
        assert next(answers).label == UNDO  # the loop asked for more: the first answer is safe
        assert first.reply.result()[0] == 200 and first.reply.result()[1]["done"] == 1
        assert outside.reply.result()[0] == 422
        session.record(Answer(0, 0, UNDO))
        answers.close()  # the loop ends the round after an undo ...
        assert not undo.reply.done()  # ... and the reply waits to name the next round's first position

        answers = oracle.answers(session.next_round(), session)
        lost = Posted("answer", *map(int, positions[1]), 0)
        oracle.post(lost)
        next(answers)
        status, state = undo.reply.result(timeout=0)
        assert status == 200 and state["done"] == 0 and state["current"] == list(map(int, positions[0]))
        answers.close()  # closed without recording (the loop failed to write): not acknowledged as saved
        assert lost.reply.result()[0] == 500

        oracle.post(Posted("quit"))
        with pytest.raises(QuitLabelling):
            next(oracle.answers(session.next_round(), session))
        oracle.close()
        assert oracle.post(Posted("answer", 0, 0, 0)).result()[0] == 409


def test_a_reply_decided_before_a_stop_is_still_sent(scan, tmp_path, monkeypatch):
    """The labeller may stop (a quit, the budget, a signal) while the server is still busy with a
    reply it has decided: it prepares the next patterns before sending a saved answer's reply.
    That reply still goes out as decided (here 200: saved), never as a 500 from pattern workers
    already shut down. (A real stop lands there by chance, under load; here it lands there always.)"""
    dataset = open_dataset(scan[0])
    with LabelStore(tmp_path / "l.csv", dataset.scan_shape) as store:
        session = LabellingSession(dataset, store, get_sampler("random", random_state=0), 5)
        x, y = map(int, session.next_round()[0])  # queued positions, none of them prepared yet
        server = LabelServer(session)
        client = Client(server.start())

        class StopsWhenRead(dict):
            def get(self, key, default=None):  # the server reads the reply to prepare what comes next...
                server.stop()  # ...and the labeller stops right then
                return super().get(key, default)

        def saved_at_once(request):  # the loop's side: the answer is saved, the reply decided
            request.resolve(200, StopsWhenRead(session.state()))
            return request.reply

        monkeypatch.setattr(server.oracle(), "post", saved_at_once)
        try:
            reply = client.post("/api/answer", {"x": x, "y": y, "label": "n"})
        finally:
            server.stop()
    assert reply.status == 200, reply.raw
    assert reply.json()["queue"][0] == [x, y]


@pytest.mark.parametrize("host", ["0.0.0.0", "::1"])
def test_other_binds_answer_to_their_own_addresses_only(running, host):
    if host == "::1" and not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    server = LabelServer(running.session, host=host)
    try:
        url = server.start()
    except Al4dstemError as e:
        pytest.skip(f"cannot bind {host} here: {e}")
    try:
        c = Client(url)
        port = server.port
        base = "http://127.0.0.1" if host == "0.0.0.0" else "http://[::1]"
        c.base = f"{base}:{port}"  # every request goes to this machine's loopback
        own = ["127.0.0.1", "localhost", socket.gethostname().lower()] if host == "0.0.0.0" else ["[::1]", "localhost"]
        for name in own:
            assert c.get("/api/state", headers={"Host": f"{name}:{port}"}).status == 200, name
        for name in ("evil.example", "127.0.0.1.nip.io"):
            assert c.get("/api/state", headers={"Host": f"{name}:{port}"}).status == 403, name
        assert (server.warning is None) == (host == "::1")
    finally:
        server.stop()

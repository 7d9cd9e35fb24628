"""``al4dstem.label`` from Python, as in a notebook: the browser page served in the background
while the caller carries on, answers posted over real HTTP, then ``wait()``; and blocking runs."""

import pytest
from test_label_cli import CLASSES, make_scan, truth_class
from web_helpers import Client

import al4dstem
from al4dstem.labels import read_labels


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    return make_scan(tmp_path_factory.mktemp("scan"))


def test_label_returns_at_once_and_labelling_goes_on_in_the_background(scan, tmp_path):
    data, _ = scan
    labels = tmp_path / "labels.csv"
    run = al4dstem.label(data, labels, budget=4, sampler="random", ui="browser", block=False,
                         open_browser=False)
    try:
        assert run.url.startswith("http://127.0.0.1:") and "token=" in run.url
        assert run.url in run._repr_html_()
        assert run.result is None  # returned before any answer
        client = Client(run.url)
        for done in range(4):
            x, y = client.current()
            reply = client.post("/api/answer", {"x": x, "y": y, "label": CLASSES[truth_class(x, y)]})
            assert reply.status == 200, reply.raw
            assert len(read_labels(labels)) == done + 1  # on disk when the reply comes
        result = run.wait(timeout=60)
    finally:
        run.stop()
    assert result is not None and result.stopped == "budget" and result.labelled == 4
    assert [(r.x, r.y, r.name) for r in read_labels(labels)] == [
        (r.x, r.y, CLASSES[truth_class(r.x, r.y)]) for r in read_labels(labels)]


def test_stop_ends_a_background_session_and_keeps_its_answers(scan, tmp_path):
    data, _ = scan
    labels = tmp_path / "labels.csv"
    run = al4dstem.label(data, labels, budget=10, ui="browser", block=False, open_browser=False)
    client = Client(run.url)
    x, y = client.current()
    assert client.post("/api/answer", {"x": x, "y": y, "label": "skip"}).status == 200
    result = run.stop()
    assert result.stopped == "quit" and result.skipped == 1
    assert [(r.x, r.y, r.name) for r in read_labels(labels)] == [(x, y, "skip")]
    # the label file is free again: the same call resumes
    again = al4dstem.label(data, labels, budget=10, ui="browser", block=False, open_browser=False)
    assert tuple(Client(again.url).current()) != (x, y)
    again.stop()


def test_a_blocking_call_with_a_truth_file_returns_the_result(scan, tmp_path):
    data, truth = scan
    result = al4dstem.label(data, tmp_path / "labels.csv", budget=8, truth=truth)
    assert result.stopped == "budget" and result.labelled == 8

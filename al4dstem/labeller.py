"""``al4dstem.label``: the labelling run behind ``al4dstem label``, callable from a notebook.

It opens the data and the label file, builds the sampler, the oracle and the model, and runs
the session in the chosen view: unattended from a truth file, at the terminal, or in a
browser page. In a notebook, ``label(..., ui="browser", block=False)`` serves the page and
returns at once with a handle (``url``, ``wait()``, ``stop()``, ``result``) while the person
labels on.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

from al4dstem.errors import Al4dstemError

UIS = ("terminal", "browser")
SIGNAL_EXIT = {"SIGINT": 130, "SIGHUP": 129, "SIGTERM": 143}


class Stopped(KeyboardInterrupt):
    """A stop signal (SIGTERM, SIGHUP) turned into an interrupt: the labeller stops like ``q``,
    with every confirmed answer kept, and exits with the shell's code for that signal."""

    def __init__(self, exit_code: int):
        super().__init__(f"stopped by a signal (exit {exit_code})")
        self.exit_code = exit_code


def label(data, labels, budget: int, sampler: str = "grid-midpoint", *, step: int | None = None,
          truth=None, fill: str = "skip", model=None, seed: int = 0, dataset: str | None = None,
          scan_shape=None, ui: str = "terminal", host: str = "127.0.0.1", port: int = 0, open_browser: bool = True,
          block: bool = True, console=None, progress=None, on_url=None):
    """Label ``budget`` patterns of ``data`` into the label file ``labels``.

    ``truth`` (a label file) answers unattended; otherwise a person answers at the terminal
    (``ui="terminal"``) or in a browser page (``ui="browser"``: ``on_url(url, warning)`` is called
    once the page is served). Returns the ``LabellingResult``; with ``ui="browser"`` and
    ``block=False``, a ``BrowserLabelling`` handle at once.
    """
    from al4dstem.data import open_dataset
    from al4dstem.labels import LabelStore

    if ui not in UIS:
        raise Al4dstemError(f"unknown --ui {ui!r} (one of {', '.join(UIS)})")
    if int(budget) <= 0:
        raise Al4dstemError(f"--budget must be a positive number of labels, got {budget}")
    if truth is None and ui == "terminal":
        from al4dstem.oracles.keys import require_terminal

        require_terminal()
    if hasattr(data, "scan_shape") and hasattr(data, "pattern"):
        ds = data  # a Dataset already open (a notebook)
    else:
        ds = open_dataset(data, dataset=dataset, scan_shape=scan_shape)
    check_step(step, ds.scan_shape)
    store = LabelStore(labels, ds.scan_shape)
    try:
        chosen = make_sampler(sampler, step, seed)
        oracle = make_oracle(truth, fill, ds.scan_shape, store, console) if truth is not None or ui == "terminal" \
            else None
        net = make_model(model, ds, seed, chosen, store)
        from al4dstem.session import LabellingSession

        person = truth is None
        session = LabellingSession(ds, store, chosen, budget, model=net, background_retrain=person)
        if ui == "browser" and truth is None:
            handle = BrowserLabelling(session, store, host=host, port=port, open_browser=open_browser,
                                      on_url=on_url)
            if not block:
                handle.start_thread()
                return handle
            return handle.run_here()
        from al4dstem.loop import drive

        with stop_signals():
            result = drive(session, oracle, progress)
    except BaseException:
        store.close()
        raise
    store.close()
    return result


class BrowserLabelling:
    """A labelling session served to a browser page: ``url``, ``wait()``, ``stop()``, ``result``."""

    def __init__(self, session, store, host="127.0.0.1", port=0, open_browser=True, on_url=None):
        from al4dstem.web import LabelServer

        self.session, self.store = session, store
        self.server = LabelServer(session, host=host, port=port)
        self.open_browser, self.on_url = open_browser, on_url
        self.result = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def _serve(self) -> None:
        url = self.server.start()
        if self.on_url is not None:
            self.on_url(url, getattr(self.server, "warning", None))
        if self.open_browser:
            import webbrowser

            webbrowser.open(url)

    def _drive(self):
        from al4dstem.loop import drive

        try:
            self.result = drive(self.session, self.server.oracle())
        finally:
            self.server.stop()
            self.store.close()
        return self.result

    def run_here(self):
        """Serve the page and label in this thread until the budget, a quit or a stop signal."""
        self._serve()
        with stop_signals():
            return self._drive()

    def start_thread(self) -> BrowserLabelling:
        """Serve the page and label in a background thread (a notebook carries on meanwhile)."""
        self._serve()
        self._thread = threading.Thread(target=self._drive, name="al4dstem-labelling", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None):
        """Block until labelling ends; returns the ``LabellingResult`` (None on timeout)."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.result

    def stop(self):
        """End the session now (every confirmed answer is already saved); returns the result."""
        self.session.stop("quit")
        self.server.stop()
        return self.wait()

    def _repr_html_(self) -> str:  # a clickable link in Jupyter
        return f'<a href="{self.url}" target="_blank">al4dstem labeller: {self.url}</a>'


@contextmanager
def stop_signals():
    """SIGTERM and SIGHUP stop the labeller like ``q`` (a closed terminal, a dropped ssh session,
    ``kill``): they raise ``Stopped`` in the main thread, which the loop turns into a clean stop."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def handler(signum, _frame):
        raise Stopped(SIGNAL_EXIT.get(signal.Signals(signum).name, 128 + signum))

    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signum = getattr(signal, name)
            previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def check_step(step: int | None, scan_shape) -> None:
    rows, cols = scan_shape
    if step is not None and not 1 <= step < max(rows, cols):
        raise Al4dstemError(f"--step {step} does not fit the {cols} x {rows} scan (cols x rows): "
                            f"use 1 to {max(rows, cols) - 1}")


def make_sampler(spec: str, step: int | None, seed: int):
    from al4dstem.strategies import get_sampler

    return get_sampler(spec, step=step, random_state=seed)


def make_oracle(truth, fill: str, scan_shape, store, console=None):
    """The terminal oracle, or a truth oracle checked to know at least one unanswered position."""
    if truth is None:
        from al4dstem.oracles import TerminalOracle

        return TerminalOracle(console=console)
    from al4dstem.oracles import TruthOracle
    from al4dstem.session import unanswered

    oracle = TruthOracle(truth, fill=fill)
    oracle.table(scan_shape)
    left = unanswered(scan_shape, store)
    if len(left) and not oracle.covers(left).any():
        rows, cols = scan_shape
        raise Al4dstemError(f"{truth}: no label for any of the {len(left)} positions still to label in the "
                            f"{cols} x {rows} scan (a truth file for another scan?)")
    return oracle


def make_model(path, ds, seed: int, sampler, store):
    """The model given, or a new one for a sampler that needs a model. A new file is fine: the
    sampler starts with a space-filling seed batch and the session trains the model as soon as
    the labels can train it (two classes, a few labels), then goes on model-driven."""
    if path is None and not getattr(sampler, "needs_model", False):
        return None
    from al4dstem.models import CNNClassifier

    if path is not None:
        if hasattr(path, "predict_proba"):
            return path
        if not Path(os.fspath(path)).is_file():
            raise Al4dstemError(f"{path}: no such model file")
        return CNNClassifier.load(path, dataset=ds)
    return CNNClassifier(dataset=ds, random_state=seed)

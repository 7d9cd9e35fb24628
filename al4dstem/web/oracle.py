"""The browser oracle: answers posted by the page, handed to the labelling loop one at a time.

The web server runs in its own thread; the loop runs ``BrowserOracle.answers`` in another (the
main thread, for the CLI). They meet in a queue of ``Posted`` requests: the server puts a request
and waits on its ``reply`` future; the oracle takes it, checks it, yields it to the loop, and
replies only once the loop has asked for the next answer, i.e. once the row is on disk. So a
200 reply to the page always means "saved".
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field

import numpy as np

from al4dstem.base import SKIP, UNDO, Answer, Oracle, QuitLabelling
from al4dstem.errors import Al4dstemError

WAIT_STEP = 0.1  # seconds per queue wait, so signals (Ctrl-C, SIGTERM) reach the main thread promptly
ROUND_GRACE = 1.0  # seconds the answer that ends a round waits to carry the next round's first position


@dataclass
class Posted:
    """One request from the page: ``kind`` is "answer", "undo" or "quit".

    ``reply`` gets ``(http_status, json_payload)``; the server cancels it when it stops waiting,
    and a cancelled request is dropped unanswered (never recorded).
    """

    kind: str
    x: int = 0
    y: int = 0
    label: int | str | None = None
    reply: Future = field(default_factory=Future)

    def resolve(self, status: int, payload: dict) -> None:
        try:
            self.reply.set_result((status, payload))
        except InvalidStateError:  # answered already, or the page stopped waiting
            pass


class BrowserOracle(Oracle):
    """Answers from the browser page served by ``LabelServer`` (``server.oracle()`` makes it).

    A round ends when every asked position has a live answer; the person may also answer
    positions picked on the scan map. ``undo`` yields ``UNDO``; ``quit`` raises ``QuitLabelling``,
    and so does a stopped server or session.
    """

    source = "browser"

    def __init__(self, server=None):
        self.server = server
        self._inbox: queue.Queue[Posted] = queue.Queue()
        self._closed = False
        self._held: tuple[Posted, dict] | None = None  # the answer that ended a round, and the state then

    # ------------------------------------------------------------ the server's side

    def post(self, request: Posted) -> Future:
        """Queue a request from the page; its ``reply`` resolves once it is handled."""
        if self._closed:
            request.resolve(409, {"error": "labelling has finished"})
        else:
            self._inbox.put(request)
        return request.reply

    def close(self) -> None:
        """No more answers: refuse what is queued and make a waiting ``answers`` quit."""
        self._closed = True
        self._release()
        while True:
            try:
                self._inbox.get_nowait().resolve(409, {"error": "labelling has finished"})
            except queue.Empty:
                return

    # ------------------------------------------------------------ the loop's side

    def answers(self, positions, session) -> Iterator[Answer]:
        asked = {(int(x), int(y)) for x, y in np.asarray(positions, dtype=np.int64).reshape(-1, 2)}
        self._release(session)  # a new round: the answer that ended the last one hears of it
        while not asked <= session.store.seen:
            request = self._next(session)
            if request.kind == "quit":
                request.resolve(200, {**session.state(), "stopped": "quit"})
                raise QuitLabelling()
            if request.kind == "undo":
                if not session.store.rows:
                    request.resolve(409, {"error": "nothing to undo"})
                    continue
                answer = Answer(0, 0, UNDO)
            else:
                position = (request.x, request.y)
                try:
                    session.check_answer(position, request.label)
                except Al4dstemError as e:
                    request.resolve(409 if position in session.store.seen else 422, {"error": str(e)})
                    continue
                answer = Answer(*position, request.label)
            written = len(session.store.history)
            try:
                yield answer
            finally:
                # Here the loop has recorded the answer (it asks for the next one only after the
                # row is fsynced), or closed this generator: after an undo, at the budget, or on an
                # error while recording, which the row count tells apart.
                if len(session.store.history) > written:
                    state = session.state()
                    if state["current"] is None and not session.finished:
                        self._hold(request, state)  # saved; the reply waits (briefly) for the next round
                    else:
                        request.resolve(200, state)
                else:
                    request.resolve(500, {"error": "the answer could not be saved; see the labeller's terminal"})

    def _hold(self, request: Posted, state: dict) -> None:
        """Reply to ``request`` once the next round starts (so the page can show its first pattern
        at once), or after ``ROUND_GRACE`` seconds with ``state`` (choosing may take long)."""
        self._release()
        self._held = (request, state)
        timer = threading.Timer(ROUND_GRACE, request.resolve, args=(200, state))
        timer.daemon = True
        timer.start()

    def _release(self, session=None) -> None:
        if self._held is not None:
            request, state = self._held
            self._held = None
            request.resolve(200, session.state() if session is not None else state)

    def _next(self, session) -> Posted:
        """The next live request; waits in short steps so signals get through."""
        while True:
            if self._closed or session.stopped is not None:
                raise QuitLabelling()
            try:
                request = self._inbox.get(timeout=WAIT_STEP)
            except queue.Empty:
                continue
            if request.reply.set_running_or_notify_cancel():  # False: the page stopped waiting
                return request


def parse_label(value) -> int | str:
    """A page's answer -> class index or ``SKIP``; accepts the keys and class names (h, vertical, 2...)."""
    from al4dstem.labels import ALIASES

    if isinstance(value, str):
        key = value.strip().lower()
        if key in ("s", SKIP):
            return SKIP
        if key in ALIASES:
            return ALIASES[key]
    elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 3:
        return value
    raise Al4dstemError(f"unknown label {value!r}: expected h, v, n, s or a class name")

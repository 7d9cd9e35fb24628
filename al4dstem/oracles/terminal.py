"""The terminal oracle: a person looks at each pattern and answers with one key."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from rich.console import Console

from al4dstem.base import SKIP, UNDO, Answer, Oracle, QuitLabelling
from al4dstem.oracles.keys import CTRL_C, CTRL_D, KeyReader
from al4dstem.oracles.render import ScreenState, color_system, labelling_screen

ANSWER_KEYS = {"h": 2, "v": 1, "n": 0, "s": SKIP, "u": UNDO}
QUIT_KEYS = {"q", CTRL_C, CTRL_D}
ZOOM_KEY = "z"


class TerminalOracle(Oracle):
    """Shows each pattern in the terminal and reads the person's answer as a single key.

    Keys: h horizontal, v vertical, n none, s skip, u undo, z zoom (toggle), q or Ctrl-C quit.
    The screen shows the pattern (log-scaled, percentile-stretched), the last labelled
    pattern of each class beside it, the scan overview with the labels so far, the progress
    and, when the loop has a model, the model's guess.

    Parameters
    ----------
    console : rich Console to draw on (None: standard error).
    keys : a context manager whose ``read()`` returns one key (None: ``KeyReader`` on stdin).
    zoom : start zoomed in on the central beam and its neighbouring disks.
    """

    source = "terminal"

    def __init__(self, console: Console | None = None, keys=None, zoom: bool = False):
        self.console = console
        self.keys = keys
        self.zoom = zoom

    def answers(self, positions, session) -> Iterator[Answer]:
        console = self.console or Console(stderr=True, color_system=color_system() or "auto")
        if getattr(self, "zoom_", None) is None:
            self.zoom_ = self.zoom
        if session._overview is None or session._lattice is None:
            with console.status("reading the scan for its overview and lattice"):
                session.overview()
                session.lattice()
        with (self.keys if self.keys is not None else KeyReader()) as keys:
            for x, y in np.asarray(positions, dtype=np.int64).reshape(-1, 2):
                position = (int(x), int(y))
                if position in session.store.seen:
                    continue  # answered meanwhile (e.g. from another view)
                yield Answer(*position, self._ask(session, position, keys, console))

    def _ask(self, session, position, keys, console: Console):
        """Draw, then read keys until one is an answer; q quits, Ctrl-C interrupts."""
        guess = session.guess(position)
        while True:
            examples = {c: session.examples(c, 1) for c in range(3)}
            state = ScreenState(
                position=position, pattern=session.pattern(position),
                done=session.done, budget=session.budget,
                overview=session.overview(), labels=session.labels,
                examples={c: (p[0], session.pattern(p[0])) for c, p in examples.items() if p},
                guess=guess, zoom=self.zoom_, message=session.message, lattice=session.lattice(),
            )
            console.clear()
            console.print(labelling_screen(state, console.size.width, console.size.height), crop=True)
            session.message = ""
            key = keys.read().lower()  # a signal from outside (kill, a closed terminal) propagates
            if key == CTRL_C:
                raise KeyboardInterrupt
            if key in QUIT_KEYS:
                raise QuitLabelling()
            if key == ZOOM_KEY:
                self.zoom_ = not self.zoom_
            elif key in ANSWER_KEYS:
                return ANSWER_KEYS[key]
            elif key:
                session.message = f"unknown key {key!r}: h, v, n, s, u, z or q"

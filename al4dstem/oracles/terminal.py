"""The terminal oracle: a person looks at each pattern and answers with one key."""

from __future__ import annotations

import numpy as np
from rich.console import Console

from al4dstem.base import SKIP, UNDO, Oracle, QueryContext, QuitLabelling
from al4dstem.oracles.keys import CTRL_C, CTRL_D, KeyReader
from al4dstem.oracles.render import ScreenState, labelling_screen

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

    def observe(self, context: QueryContext) -> None:
        self.context_ = context

    def label(self, positions, dataset) -> list:
        console = self.console or Console(stderr=True)
        if getattr(self, "zoom_", None) is None:
            self.zoom_, self.message_ = self.zoom, ""
        session = _Session(self, dataset, getattr(self, "context_", None), _overview(self, dataset, console))
        answers: list = []
        with (self.keys if self.keys is not None else KeyReader()) as keys:
            for x, y in np.asarray(positions, dtype=np.int64).reshape(-1, 2):
                answer = session.ask((int(x), int(y)), keys, console, answers)
                answers.append(answer)
                if answer == UNDO:
                    self.message_ = "took back the last answer"
                    break
        return answers


class _Session:
    """One ``label`` call: what the screen shows, updated as the person answers."""

    def __init__(self, oracle: TerminalOracle, dataset, context: QueryContext | None, overview: np.ndarray):
        self.oracle, self.dataset, self.context, self.overview = oracle, dataset, context, overview
        self.labels: dict = {}
        self.examples: dict = {}
        if context is not None:
            for (x, y), c in zip(context.labelled_positions.tolist(), context.labelled_classes.tolist(),
                                 strict=True):
                self.labels[(x, y)] = c
                self.examples[c] = (x, y)
        self.patterns: dict = {}

    def pattern(self, position):
        if position not in self.patterns:
            self.patterns[position] = self.dataset.pattern(*position)
        return self.patterns[position]

    def ask(self, position, keys, console: Console, answers: list):
        """Draw, then read keys until one is an answer; raises QuitLabelling on q / Ctrl-C."""
        guess = self.guess(position)
        while True:
            state = ScreenState(
                position=position, pattern=self.pattern(position),
                done=len(self.labels), budget=getattr(self.context, "budget", None),
                overview=self.overview, labels=self.labels,
                examples={c: (p, self.pattern(p)) for c, p in self.examples.items()},
                guess=guess, zoom=self.oracle.zoom_, message=self.oracle.message_,
            )
            console.clear()
            console.print(labelling_screen(state, console.size.width, console.size.height), crop=True)
            self.oracle.message_ = ""
            try:
                key = keys.read().lower()
            except KeyboardInterrupt:  # a SIGINT from outside the terminal
                key = CTRL_C
            if key in QUIT_KEYS:
                raise QuitLabelling(answers)
            if key == ZOOM_KEY:
                self.oracle.zoom_ = not self.oracle.zoom_
            elif key in ANSWER_KEYS:
                answer = ANSWER_KEYS[key]
                if not isinstance(answer, str):
                    self.labels[position] = answer
                    self.examples[answer] = position
                return answer
            elif key:
                self.oracle.message_ = f"unknown key {key!r}: h, v, n, s, u, z or q"

    def guess(self, position) -> np.ndarray | None:
        model = getattr(self.context, "model", None)
        if model is None or not hasattr(model, "classes_"):
            return None
        proba = np.asarray(model.predict_proba(np.array([position], dtype=np.int64)))[0]
        full = np.zeros(3)
        full[np.asarray(model.classes_, dtype=int)] = proba
        return full


def _overview(oracle: TerminalOracle, dataset, console: Console) -> np.ndarray:
    """The scan's virtual image, computed once per dataset (it streams the whole scan)."""
    cached = getattr(oracle, "overview_", None)
    if cached is None or cached[0] is not dataset:
        with console.status("reading the scan for its overview (virtual bright field)"):
            oracle.overview_ = (dataset, dataset.virtual_image())
    return oracle.overview_[1]

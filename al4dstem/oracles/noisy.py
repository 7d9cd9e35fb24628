"""A simulated, fallible oracle for robustness studies: a truth with label noise."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from al4dstem.base import Answer, Oracle
from al4dstem.errors import Al4dstemError
from al4dstem.labels import CLASSES
from al4dstem.oracles.truth import TruthOracle


class NoisyOracle(Oracle):
    """Another oracle's answers, each class replaced by one of the other classes with
    probability ``noise_rate``.

    The flip at a position depends only on ``random_state`` and the position, so a resumed
    run hears the same answers as an uninterrupted one. Flipped answers are recorded with
    the inner oracle's source plus ``-flipped``; SKIP passes through.

    Parameters
    ----------
    truth : an Oracle, or anything ``TruthOracle`` accepts (a label file, ``{(x, y): class}``).
    noise_rate : probability in [0, 1] that a class answer is wrong.
    random_state : int seed, or None for different noise in every oracle.
    """

    def __init__(self, truth, noise_rate: float = 0.1, random_state: int | None = None):
        self.truth = truth
        self.noise_rate = noise_rate
        self.random_state = random_state

    def inner(self) -> Oracle:
        """The oracle whose answers are perturbed."""
        if isinstance(self.truth, Oracle):
            return self.truth
        if getattr(self, "inner_", None) is None:
            self.inner_ = TruthOracle(self.truth)
        return self.inner_

    @property
    def source(self) -> str:
        return self.inner().source

    def answers(self, positions, session=None) -> Iterator[Answer]:
        if not 0 <= float(self.noise_rate) <= 1:
            raise Al4dstemError(f"noise rate must be within [0, 1], got {self.noise_rate}")
        seed = self._seed()
        for answer in self.inner().answers(positions, session):
            if isinstance(answer.label, str):  # SKIP or UNDO pass through
                yield answer
                continue
            rng = np.random.default_rng([seed, int(answer.x), int(answer.y)])
            if rng.random() < self.noise_rate:
                others = [c for c in range(len(CLASSES)) if c != int(answer.label)]
                flipped = others[int(rng.integers(len(others)))]
                answer = Answer(answer.x, answer.y, flipped, f"{answer.source or self.source}-flipped")
            yield answer

    def _seed(self) -> int:
        if self.random_state is not None:
            return int(self.random_state)
        if getattr(self, "seed_", None) is None:
            self.seed_ = int(np.random.SeedSequence().entropy % 2**63)
        return self.seed_

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


class HumanLikeOracle(Oracle):
    """A simulated person: wrong more often near domain walls and on faint patterns.

    A person labelling ghost disks by eye is sure in a domain's interior and on bright
    patterns, and hesitates where two polarizations mix (a wall) or the ghosts are barely
    above the noise. Each position gets a weight ``(1 + (wall_factor - 1) * exp(-d / wall_reach))
    * (1 + faint_factor * faintness)``, ``d`` the distance (scan pixels) to the nearest position
    of another class in the truth; its error probability is ``error_rate`` times its weight over
    the mean weight of all truth positions (capped at 0.5), so ``error_rate`` is the share of
    wrong answers over the whole scan. A wrong answer is the class across the nearest wall
    (what the person confused it with).

    Like ``NoisyOracle`` the outcome at a position depends only on ``random_state`` and the
    position (a resumed run hears the same answers); wrong answers are recorded with the
    source ``truth-flipped``; SKIP passes through.

    Parameters
    ----------
    truth : a label file or ``{(x, y): class}`` (a full map: the walls are found from it).
    error_rate : mean share of wrong answers over the truth's positions, in [0, 0.5].
    wall_factor : how many times likelier an error is on a wall than far from any (>= 1).
    wall_reach : scan pixels over which the wall effect decays (> 0).
    faintness : None, or a ``(rows, cols)`` array in [0, 1], 1 faintest (e.g. from the ghost signal).
    faint_factor : extra weight at faintness 1 (>= 0).
    random_state : int seed, or None for different errors in every oracle.
    """

    def __init__(self, truth, error_rate: float = 0.03, wall_factor: float = 8.0, wall_reach: float = 2.0,
                 faintness=None, faint_factor: float = 3.0, random_state: int | None = None):
        self.truth = truth
        self.error_rate = error_rate
        self.wall_factor = wall_factor
        self.wall_reach = wall_reach
        self.faintness = faintness
        self.faint_factor = faint_factor
        self.random_state = random_state

    source = "truth"

    def _fit(self) -> None:
        """Error probability and confusion class of every truth position (once)."""
        if getattr(self, "probability_", None) is not None:
            return
        from scipy.spatial import cKDTree

        checks = [(0 <= float(self.error_rate) <= 0.5, f"error rate must be within [0, 0.5], got {self.error_rate}"),
                  (float(self.wall_factor) >= 1, f"wall factor must be >= 1, got {self.wall_factor}"),
                  (float(self.wall_reach) > 0, f"wall reach must be > 0 scan pixels, got {self.wall_reach}"),
                  (float(self.faint_factor) >= 0, f"faint factor must be >= 0, got {self.faint_factor}")]
        for ok, message in checks:
            if not ok:
                raise Al4dstemError(message)
        self.inner_ = TruthOracle(self.truth)
        table = self.inner_.table()
        if not table:
            raise Al4dstemError("the truth holds no labels")
        keys = list(table)
        pos = np.array(keys, dtype=float)
        cls = np.array([table[k] for k in keys])
        dist = np.full(len(keys), np.inf)
        other = cls.copy()
        for c in np.unique(cls):
            here = cls == c
            if here.all():
                break
            d, i = cKDTree(pos[~here]).query(pos[here])
            dist[here], other[here] = d, cls[~here][i]
        weight = 1 + (float(self.wall_factor) - 1) * np.exp(-dist / float(self.wall_reach))
        if self.faintness is not None:
            faint = np.asarray(self.faintness, dtype=float)
            if faint.ndim != 2 or not np.all((faint >= 0) & (faint <= 1)):
                raise Al4dstemError("faintness must be a (rows, cols) map of values in [0, 1]")
            xy = pos.astype(int)
            if xy[:, 0].max() >= faint.shape[1] or xy[:, 1].max() >= faint.shape[0]:
                raise Al4dstemError(f"faintness map {faint.shape} is smaller than the truth's scan")
            weight = weight * (1 + float(self.faint_factor) * faint[xy[:, 1], xy[:, 0]])
        single = np.all(cls == cls[0])
        if single:  # one class: nothing to confuse it with but the others at random
            other = np.full(len(cls), -1)
        p = np.minimum(0.5, float(self.error_rate) * weight / weight.mean())
        self.probability_ = dict(zip(keys, p.tolist(), strict=True))
        self.confused_with_ = dict(zip(keys, other.tolist(), strict=True))

    def error_probability(self, positions) -> np.ndarray:
        """``(n,)`` probability that the answer at each ``(x, y)`` is wrong (0 where the truth lacks it)."""
        self._fit()
        return np.array([self.probability_.get((int(x), int(y)), 0.0) for x, y in np.asarray(positions).reshape(-1, 2)])

    def answers(self, positions, session=None) -> Iterator[Answer]:
        self._fit()
        seed = NoisyOracle._seed(self)
        for answer in self.inner_.answers(positions, session):
            if isinstance(answer.label, str):
                yield answer
                continue
            key = (int(answer.x), int(answer.y))
            rng = np.random.default_rng([seed, key[0], key[1]])
            if rng.random() < self.probability_.get(key, 0.0):
                wrong = self.confused_with_.get(key, -1)
                if wrong < 0 or wrong == int(answer.label):
                    others = [c for c in range(len(CLASSES)) if c != int(answer.label)]
                    wrong = others[int(rng.integers(len(others)))]
                answer = Answer(answer.x, answer.y, int(wrong), f"{answer.source or self.source}-flipped")
            yield answer

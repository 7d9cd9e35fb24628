"""The truth-file oracle: answers from known labels (a CSV or ghost-hunter YAML file, or a dict)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

import numpy as np

from al4dstem.base import SKIP, Answer, Oracle
from al4dstem.errors import Al4dstemError
from al4dstem.labels import CLASSES, confirmed, read_labels

FILLS = ("skip", "nearest")


class TruthOracle(Oracle):
    """Answers from known labels, as a person who already labelled the scan would.

    Parameters
    ----------
    truth : a label file (CSV or ghost-hunter YAML) or a mapping ``{(x, y): class}``.
    fill : what to do at positions the truth lacks: ``"skip"`` (answer SKIP, as a person
        who cannot tell), or ``"nearest"`` (the class of the nearest labelled position; those
        answers are recorded with source ``truth-nearest``).
    """

    source = "truth"

    def __init__(self, truth, fill: str = "skip"):
        self.truth = truth
        self.fill = fill

    def table(self, scan_shape=None) -> dict[tuple[int, int], int]:
        """The truth as ``{(x, y): class}``, read once; a file is validated against ``scan_shape``."""
        if getattr(self, "table_", None) is None:
            if self.fill not in FILLS:
                raise Al4dstemError(f"unknown fill {self.fill!r} (one of {', '.join(FILLS)})")
            if isinstance(self.truth, Mapping):
                self.table_ = {(int(x), int(y)): int(c) for (x, y), c in self.truth.items()}
            elif isinstance(self.truth, (str, os.PathLike)):
                self.table_ = confirmed(read_labels(self.truth, scan_shape))
            else:
                raise Al4dstemError(f"truth must be a label file or a {{(x, y): class}} mapping, "
                                    f"not a {type(self.truth).__name__}")
            bad = [c for c in self.table_.values() if not 0 <= c < len(CLASSES)]
            if bad:
                raise Al4dstemError(f"truth holds class {bad[0]} (classes are 0..{len(CLASSES) - 1})")
            self.tree_ = None
        return self.table_

    def covers(self, positions) -> np.ndarray:
        """``(n,)`` True where this oracle would answer with a class rather than SKIP."""
        table = self.table()
        if self.fill == "nearest" and table:
            return np.ones(len(positions), dtype=bool)
        return np.array([(int(x), int(y)) in table for x, y in positions], dtype=bool)

    def answer(self, position) -> Answer:
        """The answer at one position ``(x, y)``: its class, the nearest one, or SKIP."""
        table = self.table()
        key = (int(position[0]), int(position[1]))
        if key in table:
            return Answer(*key, table[key], self.source)
        if self.fill == "nearest" and table:
            return Answer(*key, self._nearest(key), f"{self.source}-nearest")
        return Answer(*key, SKIP, self.source)

    def answers(self, positions, session=None) -> Iterator[Answer]:
        for position in np.asarray(positions, dtype=np.int64).reshape(-1, 2):
            yield self.answer(position)

    def _nearest(self, position) -> int:
        from scipy.spatial import cKDTree

        if self.tree_ is None:
            self.tree_keys_ = list(self.table_)
            self.tree_ = cKDTree(np.array(self.tree_keys_, dtype=float))
        _, i = self.tree_.query(np.asarray(position, dtype=float))
        return self.table_[self.tree_keys_[int(i)]]

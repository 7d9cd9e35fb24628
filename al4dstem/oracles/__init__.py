"""Oracles answer which class a pattern shows: a person at a terminal, a truth file, or a
noisy copy of one (uniform, or human-like: wrong more often near walls and on faint patterns)
for robustness studies."""

from al4dstem.oracles.noisy import HumanLikeOracle, NoisyOracle
from al4dstem.oracles.terminal import TerminalOracle
from al4dstem.oracles.truth import TruthOracle

__all__ = ["HumanLikeOracle", "NoisyOracle", "TerminalOracle", "TruthOracle"]

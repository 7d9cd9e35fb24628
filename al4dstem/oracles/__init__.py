"""Oracles answer which class a pattern shows: a person at a terminal, a truth file, or a
noisy copy of one for robustness studies."""

from al4dstem.oracles.noisy import NoisyOracle
from al4dstem.oracles.terminal import TerminalOracle
from al4dstem.oracles.truth import TruthOracle

__all__ = ["NoisyOracle", "TerminalOracle", "TruthOracle"]

"""Range checks of numeric options, shared by the commands (one-line errors naming the option).

Typer checks that a value is an integer; these check that it makes sense, before any work:
a seed numpy and torch both accept, a count of threads or epochs that is at least one.
"""

from __future__ import annotations

from al4dstem.errors import Al4dstemError
from al4dstem.models.checkpoint import MAX_SEED


def check_seed(seed: int, option: str = "--seed") -> int:
    """A seed numpy's and torch's generators both take: 0 to 2**63 - 1."""
    if not 0 <= seed <= MAX_SEED:
        raise Al4dstemError(f"{option} must be between 0 and {MAX_SEED}, got {seed}")
    return seed


def check_at_least(value: int | None, low: int, option: str) -> int | None:
    """``value`` (None: the option was left out) is at least ``low``."""
    if value is not None and value < low:
        default = " (leave it out for the default)" if low == 1 else ""
        raise Al4dstemError(f"{option} must be at least {low}{default}, got {value}")
    return value

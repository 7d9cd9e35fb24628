"""The ``al4dstem`` command line: parse, call the library, print. No science lives here.

One module per group of commands; importing them registers their commands on ``app``, in the
order ``al4dstem --help`` lists them. Every mistake a user can make surfaces as
``Al4dstemError`` and leaves as one line on stderr (see ``app.main``).
"""

from al4dstem.cli import (  # noqa: F401  (registers)
    benchmark_commands,
    data_commands,
    label_commands,
    live_commands,
    model_commands,
    repair_commands,
)
from al4dstem.cli.app import app, main

__all__ = ["app", "main"]

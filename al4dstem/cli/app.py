"""The Typer app, the two consoles, and the entry point that turns user errors into one line.

Every mistake a user can make surfaces as ``Al4dstemError`` and leaves as one line on
stderr with exit code 2 (130 for Ctrl-C); tracebacks are kept for real bugs.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from al4dstem.errors import Al4dstemError

app = typer.Typer(
    name="al4dstem",
    help="Active-learning polarization domain maps from 4D-STEM scans.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)  # progress and chatter; results go to stdout
out = Console(soft_wrap=True)  # results: never wrapped, so a long path stays whole on its line


def main() -> None:
    """Console-script entry point: one clear line per user error, never a traceback."""
    try:
        code = app(standalone_mode=False)  # click returns a typer.Exit's code in this mode
        if isinstance(code, int) and code:
            sys.exit(code)
    except Al4dstemError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except (typer.Exit, SystemExit) as e:
        code = getattr(e, "exit_code", getattr(e, "code", 0))
        sys.exit(code)
    except Exception as e:
        # Usage errors arrive here in non-standalone mode. Typer >= 0.29 raises its vendored
        # copy of click's exceptions, so recognise them by shape rather than by class.
        if hasattr(e, "format_message") and isinstance(getattr(e, "exit_code", None), int):
            if e.format_message().strip():  # empty after `al4dstem` alone printed the help
                print(f"error: {e.format_message()}", file=sys.stderr)
            sys.exit(e.exit_code or 2)
        if type(e).__name__ == "Abort":  # click's Ctrl-C / EOF at a prompt
            print("interrupted", file=sys.stderr)
            sys.exit(130)
        raise

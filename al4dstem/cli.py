"""The ``al4dstem`` command line: parse, call the library, print. No science lives here.

Every mistake a user can make surfaces as ``Al4dstemError`` and leaves as one line on
stderr with exit code 2 (1 for Ctrl-C); tracebacks are kept for real bugs.
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
out = Console()


def main() -> None:
    """Console-script entry point: one clear line per user error, never a traceback."""
    try:
        app(standalone_mode=False)
    except Al4dstemError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except (typer.Exit, SystemExit) as e:
        code = getattr(e, "exit_code", getattr(e, "code", 0))
        sys.exit(code)
    except Exception as e:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(e, click.exceptions.ClickException):
            print(f"error: {e.format_message()}", file=sys.stderr)
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            print("aborted", file=sys.stderr)
            sys.exit(130)
        raise


# ============================================================ data: simulate, info
# (simulate and info commands go here)


# ============================================================ labelling: label, plot
# (label command and the sampling-pattern figure go here)


# ============================================================ model: train, predict, evaluate, demo
# (train, predict, evaluate and demo commands go here)


if __name__ == "__main__":
    main()

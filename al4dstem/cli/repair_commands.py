"""``al4dstem repair``: drop an incomplete last line of a label file, after keeping a backup."""

from __future__ import annotations

from pathlib import Path

import typer

from al4dstem.cli.app import app, out


@app.command()
def repair(
    labels: Path = typer.Argument(..., help="Label CSV whose last line was cut short (a crash, a full disk)."),
) -> None:
    """Drop an incomplete last line (no line break, not a valid row) of a label file.

    The file is first copied whole to a timestamped backup beside it; nothing else is ever
    removed, and a file a labeller holds open is refused.
    """
    from al4dstem.labels import repair_label_file

    done = repair_label_file(labels)
    if done.dropped is None:
        out.print(f"{labels}: nothing to repair; the file is unchanged", highlight=False, markup=False, soft_wrap=True)
        return
    out.print(f"{labels}: dropped incomplete line {done.line}: {done.dropped!r}; "
              f"the file as it was is kept in {done.backup}", highlight=False, markup=False, soft_wrap=True)

"""Rich progress bars on a terminal, nothing in a pipe (docs/design.md §2: long steps show progress)."""

from __future__ import annotations

from al4dstem.cli.app import console


def patterns_bar(label: str, total: int):
    """A rich progress bar on a terminal, nothing in a pipe: yields a ``progress(done, total)`` callback."""
    from contextlib import contextmanager, nullcontext

    if not console.is_terminal:
        return nullcontext(None)

    @contextmanager
    def bar():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=console, transient=True) as p:
            task = p.add_task(label, total=total)
            yield lambda done, _total: p.update(task, completed=done)

    return bar()


def epochs_bar():
    """A rich epoch bar on a terminal, nothing in a pipe: yields a ``progress(epoch, max, record)`` callback."""
    from contextlib import contextmanager, nullcontext

    if not console.is_terminal:
        return nullcontext(None)

    @contextmanager
    def bar():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                      TimeElapsedColumn(), console=console, transient=True) as p:
            task = p.add_task("", total=None)

            def update(epoch, total, record):
                stage = record.get("stage", "")  # e.g. "cross-validating default, fold 2/3": why auto takes longer
                scores = (f"val loss {record['val_loss']:.3f} acc {record['val_accuracy']:.2f}"
                          if "val_loss" in record and "val_accuracy" in record else "")
                p.update(task, completed=epoch, total=total, description="  ".join(t for t in (stage, scores) if t))

            yield update

    return bar()

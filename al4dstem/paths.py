"""Refuse, before any work, a command whose outputs would destroy its inputs or cannot be written.

Every command that writes files calls ``check_outputs`` first, with every path it will write
(or remove) and every path it reads, each under the name a user knows it by (``--out``, ``data
file``, ``--labels``...). A clash is one line naming both roles::

    --out s.npy would overwrite the data file s.npy

Paths are compared after resolving symbolic links (``os.path.realpath``), and existing files
also by identity (``os.path.samefile``: hard links, case-insensitive file systems). A write
inside a folder that is read (a folder of ``X_Y*.png`` patterns) counts as overwriting it: one
more file there changes the dataset. Two outputs that are the same file are refused too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from al4dstem.errors import Al4dstemError

PathLike = str | os.PathLike


@dataclass(frozen=True)
class Files:
    """Every file one option makes from the value a user gave (``--out s`` writes ``s.npy``, ...)."""

    given: PathLike
    paths: tuple[PathLike, ...]

    def __init__(self, given: PathLike, paths: Iterable[PathLike]):
        object.__setattr__(self, "given", given)
        object.__setattr__(self, "paths", tuple(paths))


PathSpec = PathLike | Files | Iterable[PathLike] | None  # one path, the files of one option, several, or nothing


def check_outputs(writes: Mapping[str, PathSpec], reads: Mapping[str, PathSpec] | None = None,
                  create_folders: bool = False) -> None:
    """Raise ``Al4dstemError`` if a path in ``writes`` would overwrite a path in ``reads`` (or
    another output), or cannot be written.

    ``writes`` and ``reads`` map a role (an option such as ``"--out"``, or ``"data file"``) to a
    path, to every file the option makes (a prediction prefix writes four), or to None (option
    not given); ``Files(prefix, paths)`` names the files an option makes from one value, so the
    message shows both. Inputs that do not exist are not compared (opening them fails with its own
    message). Outputs must be writable: not a folder, in an existing folder (or, with
    ``create_folders``, under an existing one) that the user may write, and not a read-only
    file.
    """
    outputs = [(role, Path(given), Path(p)) for role, given, p in _expand(writes)]
    inputs = [(role, Path(p)) for role, _, p in _expand(reads or {}) if os.path.lexists(p)]
    for role, given, path in outputs:
        for in_role, source in inputs:
            if _same(path, source):
                raise Al4dstemError(f"{_says(role, given, path)} would overwrite {_the(in_role)} {source}")
            if _inside(path, source):
                folder = _the(in_role.removesuffix(" file"))  # "data file" -> the data folder
                raise Al4dstemError(f"{_says(role, given, path)} would write inside {folder} folder {source}, "
                                    f"changing what is read: choose a path outside it")
    for i, (role, given, path) in enumerate(outputs):
        for other_role, other_given, other in outputs[i + 1:]:
            if role != other_role and _same(path, other):
                raise Al4dstemError(f"{_says(role, given, path)} and {_says(other_role, other_given, other)} "
                                    f"are the same file: give them different names")
    for role, given, path in outputs:
        _check_writable(_says(role, given, path), path, create_folders)


def _expand(spec: Mapping[str, PathSpec]):
    """``(role, given, path)`` for every path named."""
    for role, value in spec.items():
        if value is None:
            continue
        if isinstance(value, Files):
            yield from ((role, value.given, p) for p in value.paths)
        elif isinstance(value, (str, os.PathLike)):
            yield role, value, value
        else:
            yield from ((role, p, p) for p in value if p is not None)


def _says(role: str, given: Path, path: Path) -> str:
    """``--out s.npy``, or ``--out s (s_valid.npy)`` when the option names a prefix of the file."""
    return f"{role} {given}" if given == path else f"{role} {given} ({path})"


def _the(role: str) -> str:
    return role if role.startswith("-") or role.isupper() else f"the {role}"


def _resolved(path: Path) -> str:
    return os.path.normcase(os.path.realpath(path))


def _same(a: Path, b: Path) -> bool:
    if _resolved(a) == _resolved(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links, and names that differ only by case where that is one file
    except OSError:  # one of them does not exist (yet): then they are not one file
        return False


def _inside(path: Path, folder: Path) -> bool:
    if not folder.is_dir():
        return False
    f, p = _resolved(folder), _resolved(path)
    return p != f and os.path.commonpath([f, p]) == f


def _check_writable(name: str, path: Path, create_folders: bool) -> None:
    if path.is_dir():
        raise Al4dstemError(f"{name}: is a folder, expected a file name")
    parent = path.parent
    if not create_folders and not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        raise Al4dstemError(f"{name}: folder {parent} {what}")
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise Al4dstemError(f"{name}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise Al4dstemError(f"{name}: folder {existing} is not writable (permission denied)")
    if path.exists() and not os.access(path, os.W_OK):
        raise Al4dstemError(f"{name}: the file exists and is read-only (permission denied)")

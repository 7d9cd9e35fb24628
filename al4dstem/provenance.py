"""Where a model or a map came from: input files with fingerprints, labels, sampler, command line, versions.

``al4dstem train`` stores a ``provenance`` record in the checkpoint; ``al4dstem predict`` writes one
beside every map (``PREFIX.json``, and inside ``.hspy / .zspy / .emd`` maps), holding the model's
own record. ``al4dstem info model.pt`` shows it (``describe``).

A file's fingerprint is fast, not a full hash: BLAKE2b over its size and 16 samples of 64 KiB
spread over it (first and last included), so a multi-GB scan is fingerprinted in milliseconds and
a changed header, a cut file or another scan of the same size tells. Label files get a full
SHA-256 (they are small), plus a hash of the labels actually used (``rows_sha256``: sorted
``scan, x, y, class``), which stays the same when the file only gains skips or timestamps.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

SAMPLES = 16
SAMPLE_BYTES = 64 << 10
VERSIONED = ("al4dstem", "torch", "numpy", "rosettasciio", "py4DSTEM", "h5py", "dask")


def fingerprint(path) -> str:
    """``blake2b-sampled:<hex>`` of a file (size + 16 spread samples), or of a folder's files
    (names, sizes and the samples of each file, at most 256 files)."""
    path = Path(path)
    h = hashlib.blake2b(digest_size=16)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        h.update(f"folder:{len(files)}".encode())
        for p in files[:256]:
            h.update(str(p.relative_to(path)).encode())
            _sample(p, h)
        return f"blake2b-sampled:{h.hexdigest()}"
    _sample(path, h)
    return f"blake2b-sampled:{h.hexdigest()}"


def _sample(path: Path, h) -> None:
    size = path.stat().st_size
    h.update(size.to_bytes(8, "little"))
    with open(path, "rb") as f:
        if size <= SAMPLES * SAMPLE_BYTES:
            h.update(f.read())
            return
        last = size - SAMPLE_BYTES
        for i in range(SAMPLES):
            f.seek(last * i // (SAMPLES - 1))
            h.update(f.read(SAMPLE_BYTES))


def file_record(path) -> dict:
    """``path`` (absolute), ``size`` (bytes, or the folder's total), ``modified`` (UTC) and ``fingerprint``."""
    path = Path(path)
    if path.is_dir():
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    else:
        size = path.stat().st_size
    modified = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
    return {"path": str(path.resolve()), "size": int(size), "modified": modified, "fingerprint": fingerprint(path)}


def dataset_record(ds) -> dict:
    """What a ``Dataset`` is: its file record (when it has a file), format, shape, dtype and calibration."""
    record = file_record(ds.path) if getattr(ds, "path", None) and os.path.exists(ds.path) else {"path": ds.source}
    record.update(source=ds.source, format=ds.format, shape=list(ds.shape), dtype=ds.dtype.name,
                  calibration=ds.calibration.to_dict())
    if ds.notes:
        record["notes"] = list(ds.notes)
    return record


def describe_sampler(sampler) -> str:
    """One line naming a sampler and its settings, e.g. ``grid-midpoint random_state=0 step=8``.

    The label store stamps it on every answer, so a label file says how its positions were chosen.
    Built-ins go by their registry name, other classes by ``package.module:ClassName``; the settings
    are the ``__init__`` parameters the instance keeps as attributes (the scikit-learn habit).
    """
    import inspect

    inner = getattr(sampler, "_sampler", sampler)  # a wrapped duck-typed sampler
    cls = type(inner)
    text = f"{cls.__module__}:{cls.__qualname__}"
    if cls.__module__.startswith("al4dstem.strategies."):  # already imported: the lookup costs nothing
        from al4dstem.strategies.registry import SAMPLERS

        text = next((name for name, c in SAMPLERS.items() if c is cls), text)
    try:
        names = [n for n, p in inspect.signature(cls).parameters.items()
                 if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    except (TypeError, ValueError):
        names = []
    for name in sorted(names):
        if hasattr(inner, name):
            value = getattr(inner, name)
            shown = value if value is None or isinstance(value, (bool, int, float, str)) else type(value).__name__
            text += f" {name}={shown}"
    return " ".join(text.split())  # one line, whatever a value holds


def labels_record(path, used: list[tuple] | None = None, rows=None) -> dict:
    """A label file: its record with a full SHA-256, the row count, the hash of the labels ``used``
    (``(scan, x, y, class)`` tuples) and what its rows say about how they were chosen (the ``sampler``
    and ``source`` columns, counted)."""
    path = Path(path)
    record = file_record(path)
    record["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    if used is not None:
        text = "\n".join(",".join(str(v) for v in row) for row in sorted(used, key=lambda r: tuple(map(str, r))))
        record["rows_used"] = len(used)
        record["rows_sha256"] = hashlib.sha256(text.encode()).hexdigest()
    if rows is not None:
        record["rows"] = len(rows)
        for column in ("sampler", "source"):
            counts: dict[str, int] = {}
            for r in rows:
                value = r.extra.get(column)
                if value:
                    counts[value] = counts.get(value, 0) + 1
            if counts:
                record[column] = counts
    return record


def versions() -> dict:
    """Versions of al4dstem, Python and the libraries that read, train and write (installed ones)."""
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def command_line() -> str:
    """The command as typed (program name shortened to ``al4dstem`` when run as the console script)."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("al4dstem", "__main__.py"):
        argv[0] = "al4dstem"
    return shlex.join(argv)


def run_record() -> dict:
    """The command line, working folder, time, host and versions of this run."""
    return {"command": command_line(), "cwd": os.getcwd(),
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host": platform.node(),
            "versions": versions()}


def describe(record: dict, indent: str = "") -> list[tuple[str, str]]:
    """``(key, value)`` lines of a provenance record, for ``al4dstem info``."""
    lines: list[tuple[str, str]] = []
    data = record.get("data")
    for i, d in enumerate(data if isinstance(data, list) else [data] if data else []):
        key = "data" if not isinstance(data, list) or len(data) == 1 else f"data {i + 1}"
        lines.append((key, f"{d.get('path')} ({d.get('format', '?')}, shape {tuple(d.get('shape', ()))}, "
                           f"{_size(d.get('size'))}, {d.get('fingerprint', 'no fingerprint')})"))
        cal = d.get("calibration")
        if cal:
            from al4dstem.data.calibration import Calibration

            for k, v in Calibration.from_dict(cal).describe():
                lines.append((f"  {k}", v))
    labels = record.get("labels")
    if isinstance(labels, dict):
        used = f", {labels['rows_used']} labels used (rows sha256 {labels.get('rows_sha256', '')[:16]})" \
            if "rows_used" in labels else ""
        lines.append(("labels", f"{labels.get('path')} ({labels.get('rows', '?')} rows{used}; file sha256 "
                                f"{labels.get('sha256', '')[:16]})"))
    sampler = record.get("sampler")
    if sampler:
        lines.append(("sampler", _plain(sampler)))
    model = record.get("model")
    if isinstance(model, dict):
        lines.append(("model", f"{model.get('path')} ({model.get('fingerprint', '')})"))
    for key in ("command", "cwd", "time"):
        if record.get(key):
            lines.append((key, str(record[key])))
    if isinstance(record.get("versions"), dict):
        lines.append(("versions", ", ".join(f"{k} {v}" for k, v in record["versions"].items())))
    return [(indent + k, v) for k, v in lines]


def _plain(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_plain(v)}" for k, v in value.items())
    return str(value)


def _size(n) -> str:
    from al4dstem.data.preview import human_bytes

    return human_bytes(n) if isinstance(n, int) else "size unknown"

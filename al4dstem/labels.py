"""Class names, label files (CSV and ghost-hunter YAML) and the append-only label store.

One truth for classes: index 0 none, 1 vertical, 2 horizontal, everywhere (probability
arrays, RGB channels, model outputs). A label file is CSV with header ``x,y,label`` and any
extra columns; ``x`` is the scan column, ``y`` the scan row. A row whose label is ``skip``
records a position the oracle declined: it is remembered (not asked again) but not learned.
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from al4dstem.errors import Al4dstemError

CLASSES = ("none", "vertical", "horizontal")
SKIP = "skip"
ALIASES = {
    "none": 0, "n": 0, "na": 0, "no": 0, "out-of-plane": 0,
    "vertical": 1, "v": 1,
    "horizontal": 2, "h": 2,
}
STORE_COLUMNS = ("x", "y", "label", "round", "source", "time")
# Paper file names: "X_Y_boxsize5.png", "X_Y.png", ...
POSITION_NAME = re.compile(r"^(\d+)_(\d+)(?:_.*)?\.[A-Za-z0-9]+$")


def parse_label(value: str, where: str = "") -> int:
    """Class index of a label or alias (case-insensitive); the error names value and place."""
    key = str(value).strip().lower()
    if key in ALIASES:
        return ALIASES[key]
    at = f"{where}: " if where else ""
    raise Al4dstemError(
        f"{at}unknown label {value!r} (expected one of {', '.join(CLASSES)} or n/na/no/v/h)"
    )


def position_from_name(name: str) -> tuple[int, int]:
    """``(x, y)`` from a paper-style file name ``X_Y*.ext``; used only at the edges."""
    m = POSITION_NAME.match(Path(name).name)
    if not m:
        raise Al4dstemError(f"{name}: file name does not start with X_Y (scan column_row)")
    return int(m.group(1)), int(m.group(2))


@dataclass
class Label:
    """One row of a label file. ``label`` is a class index, or None for a skipped position."""

    x: int
    y: int
    label: int | None
    extra: dict[str, str] = field(default_factory=dict)
    line: int = 0

    @property
    def position(self) -> tuple[int, int]:
        return (self.x, self.y)

    @property
    def name(self) -> str:
        return SKIP if self.label is None else CLASSES[self.label]


# ---------------------------------------------------------------- reading and validation


def read_labels(path: str | os.PathLike, scan_shape: Sequence[int] | None = None) -> list[Label]:
    """Read a CSV or ghost-hunter YAML label file, validated.

    ``scan_shape`` is ``(rows, cols)``; when given, positions outside it are errors. Identical
    duplicates are merged (first kept), conflicting ones are errors naming both lines; a skip
    row followed by a label for the same position keeps the label.
    """
    path = Path(path)
    if not path.exists():
        raise Al4dstemError(f"{path}: no such label file")
    if path.suffix.lower() in (".yaml", ".yml"):
        rows = _read_yaml(path)
    else:
        rows = _read_csv(path)
    return validate_labels(rows, path, scan_shape)


def _read_text(path: Path) -> str:
    """The text of a label file; a byte-order mark (Excel's CSV) is dropped."""
    return _decode(path, _read_bytes(path))


def _read_bytes(path: Path) -> bytes:
    if path.is_dir():
        raise Al4dstemError(f"{path}: is a folder, not a label file")
    try:
        return path.read_bytes()
    except OSError as e:
        raise Al4dstemError(f"{path}: cannot read the label file ({e.strerror or e})") from None


def _decode(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise Al4dstemError(f"{path}: not a text label file (byte {e.start} is not UTF-8)") from None


def _read_csv(path: Path, text: str | None = None) -> list[Label]:
    text = _read_text(path) if text is None else text
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    if not {"x", "y", "label"} <= set(header):
        raise Al4dstemError(f"{path}: header must contain x,y,label (found {','.join(header) or 'nothing'})")
    rows = []
    for i, raw in enumerate(reader, start=2):
        raw = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        where = f"{path}:{i}"
        try:
            x, y = int(raw["x"]), int(raw["y"])
        except ValueError:
            raise Al4dstemError(f"{where}: x and y must be integers (got {raw['x']!r}, {raw['y']!r})") from None
        label = None if raw["label"].lower() == SKIP else parse_label(raw["label"], where)
        extra = {k: v for k, v in raw.items() if k not in ("x", "y", "label")}
        rows.append(Label(x, y, label, extra, i))
    return rows


def _read_yaml(path: Path) -> list[Label]:
    import yaml

    try:
        doc = yaml.safe_load(_read_text(path))
    except yaml.YAMLError as e:
        raise Al4dstemError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    entries = doc.get("labels") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise Al4dstemError(f"{path}: expected a 'labels:' list of {{file, label}} entries")
    rows = []
    for i, entry in enumerate(entries, start=1):
        where = f"{path}: entry {i}"
        if not isinstance(entry, dict) or "file" not in entry or "label" not in entry:
            raise Al4dstemError(f"{where}: expected keys 'file' and 'label'")
        try:
            x, y = position_from_name(str(entry["file"]))
        except Al4dstemError as e:
            raise Al4dstemError(f"{where}: {e}") from None
        rows.append(Label(x, y, parse_label(entry["label"], where), {"file": str(entry["file"])}, i))
    return rows


def validate_labels(rows: Iterable[Label], path, scan_shape=None) -> list[Label]:
    """Check bounds and conflicts; return rows with duplicates merged, in file order."""
    kept: dict[tuple[int, int], Label] = {}
    for row in rows:
        if row.x < 0 or row.y < 0 or (
            scan_shape is not None and (row.y >= scan_shape[0] or row.x >= scan_shape[1])
        ):
            shape = f" {scan_shape[1]} x {scan_shape[0]} (cols x rows)" if scan_shape is not None else ""
            raise Al4dstemError(
                f"{path}:{row.line}: position x={row.x}, y={row.y} is outside the scan{shape}"
            )
        old = kept.get(row.position)
        if old is None or old.label is None:
            kept[row.position] = row
        elif row.label is not None and row.label != old.label:
            raise Al4dstemError(
                f"{path}:{row.line}: position x={row.x}, y={row.y} is labelled {row.name} here "
                f"but {old.name} at line {old.line}"
            )
    return list(kept.values())


def confirmed(rows: Iterable[Label]) -> dict[tuple[int, int], int]:
    """``{(x, y): class}`` of the labelled (not skipped) rows."""
    return {r.position: r.label for r in rows if r.label is not None}


def as_arrays(rows: Iterable[Label]) -> tuple[np.ndarray, np.ndarray]:
    """Positions ``(n, 2)`` as (x, y) and classes ``(n,)`` of the labelled rows."""
    lab = confirmed(rows)
    pos = np.array(list(lab.keys()), dtype=np.int64).reshape(-1, 2)
    return pos, np.array(list(lab.values()), dtype=np.int64)


def write_labels(path: str | os.PathLike, rows: Iterable[Label], columns: Sequence[str] = ("x", "y", "label")):
    """Write a label file atomically (temporary file, fsync, rename)."""
    rows = list(rows)
    extra_cols = [c for r in rows for c in r.extra if c not in columns]
    columns = list(columns) + list(dict.fromkeys(extra_cols))
    _atomic_write(Path(path), _csv_text(columns, rows))


def _csv_text(columns: Sequence[str], rows: Iterable[Label]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow(_row_values(columns, r))
    return buf.getvalue()


def _row_values(columns: Sequence[str], r: Label) -> list:
    base = {"x": r.x, "y": r.y, "label": r.name}
    return [base[c] if c in base else r.extra.get(c, "") for c in columns]


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# ---------------------------------------------------------------- the append-only store


def _complete_last_row(text: str) -> bool:
    """Whether the line after the last newline is a whole row: every column, a valid label."""
    lines = text.lstrip("\ufeff").splitlines()
    if len(lines) == 1:  # a header and no rows yet
        return {"x", "y", "label"} <= {h.strip() for h in next(csv.reader(lines))}
    header = next(csv.reader([lines[0]]))
    last = next(csv.reader([lines[-1]]), [])
    if len(last) != len(header):
        return False
    try:
        _read_csv(Path("-"), lines[0] + "\n" + lines[-1] + "\n")
    except Al4dstemError:
        return False
    return True


class LabelStore:
    """Append-only CSV of confirmed labels: one row per answer, flushed and fsynced.

    A crash or Ctrl-C loses nothing that was confirmed; opening the same file again resumes.
    A final line cut short by a crash (no newline, columns missing or an incomplete label) was
    never confirmed and is dropped; a complete last row without a newline (a file edited by
    hand) is kept.
    Opening validates before writing anything, and a new file is only created by the first
    ``append``: a command that fails on bad input leaves the label file as it was.
    """

    def __init__(self, path: str | os.PathLike, scan_shape: Sequence[int] | None = None):
        self.path = Path(path)
        self.scan_shape = scan_shape
        self.rows: list[Label] = []
        self.repaired = False
        self.columns = list(STORE_COLUMNS)
        self._newline_first = False
        data = _read_bytes(self.path) if self.path.exists() else b""
        cut = data.rfind(b"\n") + 1
        # a torn write may end inside a character: judge the tail leniently, the rest strictly
        tail = data[cut:].decode("utf-8", errors="replace")
        text = _decode(self.path, data[:cut]) + tail
        if tail.strip() and "\ufffd" not in tail and _complete_last_row(text):
            cut = len(data)  # a file written by hand without a final newline: its last row counts
            self._newline_first = True
        elif not cut and data.strip():
            raise Al4dstemError(f"{self.path}: not a label CSV (no complete line with header x,y,label)")
        if cut:
            text = _decode(self.path, data[:cut])
            self.rows = _read_csv(self.path, text)
            validate_labels(self.rows, self.path, scan_shape)
            self.columns = [c.strip() for c in next(csv.reader(io.StringIO(text)))]
        if cut < len(data):
            self._truncate(cut)  # a line cut short by a crash: never confirmed

    def _truncate(self, cut: int) -> None:
        with open(self.path, "r+b") as f:
            f.truncate(cut)
            os.fsync(f.fileno())
        self.repaired = True

    @property
    def labels(self) -> dict[tuple[int, int], int]:
        """Confirmed labels ``{(x, y): class}`` (skips left out; a later label wins)."""
        return confirmed(self.rows)

    @property
    def seen(self) -> set[tuple[int, int]]:
        """Every position answered, labelled or skipped: the sampler must not propose these."""
        return {r.position for r in self.rows}

    def append(self, x: int, y: int, label: int | None, **extra) -> Label:
        """Record one answer durably (``label=None`` records a skip)."""
        row = Label(int(x), int(y), label, {k: str(v) for k, v in extra.items()}, len(self.rows) + 2)
        validate_labels([*self.rows, row], self.path, self.scan_shape)
        line = io.StringIO()
        csv.writer(line, lineterminator="\n").writerow(_row_values(self.columns, row))
        if not self.path.exists() or self.path.stat().st_size == 0:
            _atomic_write(self.path, _csv_text(self.columns, []))
        with open(self.path, "a", newline="") as f:
            f.write(("\n" if self._newline_first else "") + line.getvalue())
            f.flush()
            os.fsync(f.fileno())
        self._newline_first = False
        self.rows.append(row)
        return row

    def undo(self) -> Label | None:
        """Remove the last answer (rewrites the file atomically); returns it, or None if empty."""
        if not self.rows:
            return None
        last = self.rows.pop()
        _atomic_write(self.path, _csv_text(self.columns, self.rows))
        self._newline_first = False
        return last

    def __len__(self) -> int:
        return len(self.rows)

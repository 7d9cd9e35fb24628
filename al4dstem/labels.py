"""Class names, label files (CSV and ghost-hunter YAML) and the append-only label store.

One truth for classes: index 0 none, 1 vertical, 2 horizontal, everywhere (probability
arrays, RGB channels, model outputs). A label file is CSV with header ``x,y,label`` and any
extra columns; ``x`` is the scan column, ``y`` the scan row. A row whose label is ``skip``
records a position the oracle declined: it is remembered (not asked again) but not learned.
A row whose label is ``undo`` retracts the most recent live answer at its position.

What the label store (``LabelStore``) promises:

- append-only: every answer, and every retraction of one (an ``undo`` row), is one new row at
  the end of the file; rows already written, their times and rounds, never change;
- durable: each row is written, flushed and fsynced before ``append``/``retract`` returns, so
  a crash or Ctrl-C loses nothing that was confirmed and rerunning the same command resumes;
- one writer: the store holds an exclusive lock (``flock``) on the file for its whole life; a
  second store on the same file fails at once, naming the PID that holds it;
- never rewritten: opening a file only reads it. A bad row anywhere is refused with its
  ``path:line``, a last line cut short included; only ``al4dstem repair`` (which first copies
  the file to a backup beside it) ever removes anything, and only such a last line;
- plain files only: symlinks are followed; devices, FIFOs, sockets and folders are refused
  before they are opened.
"""

from __future__ import annotations

import csv
import fcntl
import io
import os
import re
import stat
import tempfile
import time
import weakref
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from al4dstem.errors import Al4dstemError

CLASSES = ("none", "vertical", "horizontal")
SKIP = "skip"
UNDO = "undo"
ALIASES = {
    "none": 0, "n": 0, "na": 0, "no": 0, "out-of-plane": 0,
    "vertical": 1, "v": 1,
    "horizontal": 2, "h": 2,
}
STORE_COLUMNS = ("x", "y", "label", "round", "source", "time", "sampler")
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
    """One row of a label file. ``label`` is a class index, or None for a skipped position;
    an ``undo`` row (a retraction) has ``label`` None and ``undo`` True."""

    x: int
    y: int
    label: int | None
    extra: dict[str, str] = field(default_factory=dict)
    line: int = 0
    undo: bool = False

    @property
    def position(self) -> tuple[int, int]:
        return (self.x, self.y)

    @property
    def name(self) -> str:
        if self.undo:
            return UNDO
        return SKIP if self.label is None else CLASSES[self.label]


# ---------------------------------------------------------------- reading and validation


def read_labels(path: str | os.PathLike, scan_shape: Sequence[int] | None = None) -> list[Label]:
    """Read a CSV or ghost-hunter YAML label file, validated, retractions applied.

    ``scan_shape`` is ``(rows, cols)``; when given, positions outside it are errors. Identical
    duplicates are merged (first kept), conflicting ones are errors naming both lines; a skip
    row followed by a label for the same position keeps the label. Only regular files (or
    symlinks to them) are read: a FIFO or a device is refused without opening it.
    """
    path = Path(path)
    return validate_labels(read_label_rows(path), path, scan_shape)


def read_label_rows(path: str | os.PathLike) -> list[Label]:
    """Every row of a CSV or YAML label file in file order, parsed but not validated against a scan.

    Undo rows and skips are kept, duplicates are not merged: for callers that group rows first
    (by their ``scan`` column, say) and then validate each group with ``validate_labels``.
    """
    path = Path(path)
    data = _read_regular(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        return _read_yaml(path, data)
    parsed = _parse_csv(path, data)
    if parsed.columns is None:
        raise Al4dstemError(f"{path}: not a label CSV: header must contain x,y,label (found nothing)")
    return parsed.rows


def _check_regular(path: Path, must_exist: bool = True) -> os.stat_result | None:
    """``os.stat`` of a label file (symlinks followed), refusing anything but a regular file.

    ``stat`` never blocks, even on a FIFO without a writer, which ``open`` would.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if must_exist:
            raise Al4dstemError(f"{path}: no such label file") from None
        return None
    except OSError as e:
        raise Al4dstemError(f"{path}: cannot open the label file ({e.strerror or e})") from None
    _refuse_special(path, st.st_mode)
    return st


def _refuse_special(path: Path, mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise Al4dstemError(f"{path}: is a folder, not a label file")
    if not stat.S_ISREG(mode):
        kinds = [(stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                 (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket")]
        kind = next((name for test, name in kinds if test(mode)), "a special file")
        raise Al4dstemError(f"{path}: is {kind}, not a regular file; label files must be plain files")


def _read_regular(path: Path) -> bytes:
    _check_regular(path)
    try:
        # O_NONBLOCK: should the path turn into a FIFO after the check, open must not hang
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise Al4dstemError(f"{path}: no such label file") from None
    except OSError as e:
        raise Al4dstemError(f"{path}: cannot read the label file ({e.strerror or e})") from None
    try:
        _refuse_special(path, os.fstat(fd).st_mode)
        return _read_all(path, fd)
    finally:
        os.close(fd)


def _read_all(path: Path, fd: int) -> bytes:
    chunks, offset = [], 0
    try:
        while chunk := os.pread(fd, 1 << 20, offset):
            chunks.append(chunk)
            offset += len(chunk)
    except OSError as e:
        raise Al4dstemError(f"{path}: cannot read the label file ({e.strerror or e})") from None
    return b"".join(chunks)


def _decode(path: Path, data: bytes, first: bool = True) -> str:
    try:
        return data.decode("utf-8-sig" if first else "utf-8")
    except UnicodeDecodeError as e:
        raise Al4dstemError(f"{path}: not a text label file (byte {e.start} is not UTF-8)") from None


class _TornLastLine(Al4dstemError):
    """The last line has no line break and is not a valid row: what a write cut short leaves."""


@dataclass
class _ParsedCsv:
    columns: list[str] | None  # None for an empty file
    rows: list[Label]  # every row in file order, undo rows included (not yet replayed)
    lines: int  # physical lines
    open_end: bool  # the file does not end with a line break


def _line_breaks(text: str) -> int:
    """Physical lines as the csv module counts them: \\n, \\r\\n and a lone \\r (old Macs) each end one."""
    return sum(1 for _ in io.StringIO(text, newline=""))


def _parse_csv(path: Path, data: bytes) -> _ParsedCsv:
    """Rows of a label CSV, each checked on its own; errors name ``path:line``."""
    if not data:
        return _ParsedCsv(None, [], 0, False)
    cut = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
    if cut == 0:
        body, tail, tail_text_ok = "", _decode(path, data), True
    else:
        body = _decode(path, data[:cut])
        try:
            tail, tail_text_ok = data[cut:].decode("utf-8"), True
        except UnicodeDecodeError:  # a write cut inside a character
            tail, tail_text_ok = data[cut:].decode("utf-8", errors="replace"), False
    body_lines = _line_breaks(body)
    lines = body_lines + (1 if tail else 0)
    reader = csv.reader(io.StringIO(body + tail, newline=""))
    columns: list[str] | None = None
    rows: list[Label] = []
    start = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            _row_error(path, start, f"not a readable CSV row ({e})", reader.line_num > body_lines and tail.strip())
        in_tail = reader.line_num > body_lines and bool(tail.strip())
        line, start = start, reader.line_num + 1
        if not any(f.strip() for f in fields):
            continue  # blank lines, as editors leave them
        if columns is None:
            columns = [f.strip() for f in fields]
            xy, row_col = {"x", "y"} <= set(columns), {"row", "col"} <= set(columns)
            if xy and row_col:
                raise Al4dstemError(f"{path}: the header has both x,y and row,col: give either x,y or row,col")
            if "label" not in columns or not (xy or row_col):
                raise Al4dstemError(
                    f"{path}: not a label CSV: header must contain x,y,label or row,col,label "
                    f"(found {','.join(columns)})")
            continue
        if in_tail and not tail_text_ok:
            _row_error(path, line, "the line is cut inside a character", True)
        try:
            rows.append(_row_label(columns, fields, f"{path}:{line}", line))
        except Al4dstemError as e:
            _row_error(path, line, str(e), in_tail, prefixed=True)
    if columns is None:
        raise Al4dstemError(f"{path}: not a label CSV: header must contain x,y,label (found nothing)")
    return _ParsedCsv(columns, rows, lines, data[-1:] not in (b"\n", b"\r"))


def _row_error(path: Path, line: int, problem: str, last_open_line, prefixed: bool = False):
    message = problem if prefixed else f"{path}:{line}: {problem}"
    if last_open_line:
        raise _TornLastLine(
            f"{message} (the last line, without a line break: cut short? fix it by hand, or run "
            f"'al4dstem repair {path}', which keeps a backup)")
    raise Al4dstemError(message)


def _row_label(columns: list[str], fields: list[str], where: str, line: int) -> Label:
    raw = {c: v.strip() for c, v in zip(columns, fields, strict=False)}  # short rows: hand-typed
    if "x" not in columns and "col" in columns:  # row,col files: col is the scan column x, row the scan row y
        raw = {({"col": "x", "row": "y"}.get(k, k)): v for k, v in raw.items()}
    missing = [c for c in ("x", "y", "label") if c not in raw]
    if missing:
        raise Al4dstemError(f"{where}: incomplete row ({len(fields)} of {len(columns)} columns, no {missing[0]})")
    try:
        x, y = int(raw["x"]), int(raw["y"])
    except ValueError:
        raise Al4dstemError(f"{where}: x and y must be integers (got {raw['x']!r}, {raw['y']!r})") from None
    key = raw["label"].lower()
    extra = {k: v for k, v in raw.items() if k not in ("x", "y", "label")}
    if key == UNDO:
        return Label(x, y, None, extra, line, undo=True)
    return Label(x, y, None if key == SKIP else parse_label(raw["label"], where), extra, line)


def _read_yaml(path: Path, data: bytes) -> list[Label]:
    import yaml

    try:
        doc = yaml.safe_load(_decode(path, data))
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


class _Answers:
    """Rows replayed in file order: bounds, conflicts and retractions checked as they come."""

    def __init__(self, path, scan_shape=None):
        self.path, self.scan_shape = path, scan_shape
        self.history: list[Label] = []
        self._live: dict[tuple[int, int], list[int]] = defaultdict(list)  # position -> indices, oldest first
        self._retracted: set[int] = set()

    def check(self, row: Label) -> None:
        shape = self.scan_shape
        if row.x < 0 or row.y < 0 or (shape is not None and (row.y >= shape[0] or row.x >= shape[1])):
            within = f" {shape[1]} x {shape[0]} (cols x rows)" if shape is not None else ""
            raise Al4dstemError(f"{self.path}:{row.line}: position x={row.x}, y={row.y} is outside the scan{within}")
        live = [self.history[i] for i in self._live.get(row.position, [])]
        if row.undo:
            if not live:
                raise Al4dstemError(f"{self.path}:{row.line}: undo at x={row.x}, y={row.y}, "
                                    "but that position has no answer to take back")
            return
        old = next((r for r in live if r.label is not None), None)
        if row.label is not None and old is not None and old.label != row.label:
            raise Al4dstemError(
                f"{self.path}:{row.line}: position x={row.x}, y={row.y} is labelled {row.name} here "
                f"but {old.name} at line {old.line}")

    def add(self, row: Label) -> Label | None:
        """Record ``row``; for an undo row, return the answer it takes back."""
        self.check(row)
        self.history.append(row)
        stack = self._live[row.position]
        if not row.undo:
            stack.append(len(self.history) - 1)
            return None
        taken = stack.pop()
        if not stack:
            del self._live[row.position]
        self._retracted.add(taken)
        return self.history[taken]

    @property
    def rows(self) -> list[Label]:
        """Live answers in the order given: retracted rows and undo rows left out."""
        return [r for i, r in enumerate(self.history) if not r.undo and i not in self._retracted]


def validate_labels(rows: Iterable[Label], path, scan_shape=None) -> list[Label]:
    """Check bounds, conflicts and retractions; return the live rows with duplicates merged, in file order."""
    answers = _Answers(path, scan_shape)
    for row in rows:
        answers.add(row)
    kept: dict[tuple[int, int], Label] = {}
    for row in answers.rows:
        old = kept.get(row.position)
        if old is None or old.label is None:
            kept[row.position] = row
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


def _csv_text(columns: Sequence[str], rows: Iterable[Label], header: bool = True) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if header:
        w.writerow(columns)
    for r in rows:
        w.writerow(_row_values(columns, r))
    return buf.getvalue()


def _row_values(columns: Sequence[str], r: Label) -> list:
    base = {"x": r.x, "y": r.y, "label": r.name}
    if "x" not in columns:  # a row,col file
        base.update(col=r.x, row=r.y)
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


# ---------------------------------------------------------------- the lock


def _lock_note(target: Path) -> Path:
    """The sidecar naming who holds the lock; informational only, the lock is the flock."""
    return target.with_name(f".{target.name}.lock")


class _LockedFile:
    """A label file opened read-write under an exclusive ``flock`` held until ``release``.

    The file is opened in place (``O_CREAT``, never truncated or renamed); after locking, the
    path must still name the inode locked, or the open is retried: a store that created the
    file and leaves it unused unlinks it, and whoever opened it meanwhile must not keep
    writing into that orphan.
    """

    def __init__(self, path: Path, create: bool):
        self.path = path
        # symlinks are followed: the target is locked, written and, if created here, removed
        self.target = Path(os.path.realpath(path))
        self.pid = os.getpid()
        self.fd: int | None = None
        self.created = False  # the file was missing and its header is ours
        self.appended = False
        self.header_size = 0
        for _ in range(100):
            fd, existed = self._open(create)
            try:
                _refuse_special(path, os.fstat(fd).st_mode)
                self._lock(fd)
                if self._names(fd):
                    self.fd, self.created = fd, not existed
                    break
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        else:
            raise Al4dstemError(f"{path}: the file keeps being replaced while it is opened")
        self._write_note()

    def _open(self, create: bool) -> tuple[int, bool]:
        existed = _check_regular(self.path, must_exist=not create) is not None
        flags = os.O_RDWR | os.O_APPEND | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            if not existed:
                self.target.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.target, flags | (os.O_CREAT if create else 0), 0o666), existed
        except FileNotFoundError:
            raise Al4dstemError(f"{self.path}: no such label file") from None
        except OSError as e:
            verb = "write" if existed else "create"
            raise Al4dstemError(f"{self.path}: cannot {verb} the label file ({e.strerror or e})") from None

    def _lock(self, fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Al4dstemError(f"{self.path}: {self._holder()} (another al4dstem label?)") from None
        except OSError as e:
            raise Al4dstemError(f"{self.path}: cannot lock the label file ({e.strerror or e})") from None

    def _names(self, fd: int) -> bool:
        """Whether the path still names the inode ``fd`` has open."""
        try:
            now = os.stat(self.target)
        except OSError:
            return False
        held = os.fstat(fd)
        return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)

    def _holder(self) -> str:
        # the holder writes its note just after locking: give a fresh one a moment to appear
        deadline = time.monotonic() + 0.25
        while True:
            try:
                pid, since = _lock_note(self.target).read_text().split()
                return f"in use by PID {int(pid)} since {since}"
            except (OSError, ValueError, UnicodeDecodeError):
                if time.monotonic() > deadline:
                    return "in use by another process"
                time.sleep(0.01)

    def _write_note(self) -> None:
        since = datetime.now().astimezone().isoformat(timespec="seconds")
        try:
            fd = os.open(_lock_note(self.target), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o644)
        except OSError:
            return  # a read-only folder: the lock still holds, only the note is missing
        with os.fdopen(fd, "w") as f:
            f.write(f"{self.pid} {since}\n")

    def read(self) -> bytes:
        return _read_all(self.path, self.fd)

    def append(self, data: bytes) -> None:
        """Write ``data`` at the end and fsync; on failure cut the file back to where it was."""
        size = os.fstat(self.fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
            os.fsync(self.fd)
        except OSError as e:
            try:
                os.ftruncate(self.fd, size)  # our own unconfirmed bytes, never anything older
            except OSError:
                pass
            raise Al4dstemError(f"{self.path}: cannot write the label file ({e.strerror or e})") from None

    def truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)
        os.fsync(self.fd)

    def write_header(self, text: str) -> None:
        self.append(text.encode())
        self.header_size = len(text.encode())
        if self.created:  # make the new name durable too
            try:
                dir_fd = os.open(self.target.parent, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
            except OSError:
                pass

    def release(self) -> None:
        """Unlock; first remove the note and, if this store made the file and wrote no row, the file."""
        if self.fd is None:
            return
        fd, self.fd = self.fd, None
        try:
            if os.getpid() == self.pid:  # not in a forked child, which shares the lock
                unused = self.created and not self.appended and os.fstat(fd).st_size == self.header_size
                if unused and self._names(fd):
                    os.unlink(self.target)
                try:
                    os.unlink(_lock_note(self.target))
                except OSError:
                    pass
        finally:
            os.close(fd)  # the lock goes last: whoever gets it next finds a settled file


# ---------------------------------------------------------------- the append-only store


class LabelStore:
    """Append-only CSV of answers: one row each, written, flushed and fsynced; one writer.

    Opening takes an exclusive lock on the file until ``close`` (use it as a context manager)
    and validates every row; it never changes what is there. A new file gets the header
    ``x,y,label,round,source,time,sampler``; if no answer was recorded by ``close``, it is removed
    again. ``retract`` appends an ``undo`` row that takes back the last live answer.

    ``history`` holds every row in file order (undo rows included), ``rows`` the live answers
    in the order given, ``labels`` the live confirmed classes and ``seen`` every position with
    a live answer (labelled or skipped).
    """

    def __init__(self, path: str | os.PathLike, scan_shape: Sequence[int] | None = None):
        self.path = Path(path)
        self.scan_shape = scan_shape
        self._file = _LockedFile(self.path, create=True)
        self._release = weakref.finalize(self, self._file.release)
        try:
            self._answers = _Answers(self.path, scan_shape)
            data = self._file.read()
            if not data:
                self.columns = list(STORE_COLUMNS)
                self._file.write_header(",".join(self.columns) + "\n")
                self._open_end, self._next_line = False, 2
            else:
                self._file.created = False  # rows someone else wrote: never ours to remove
                parsed = _parse_csv(self.path, data)
                for row in parsed.rows:
                    self._answers.add(row)
                self.columns = parsed.columns
                # a last row without a line break (typed by hand) counts; the next row starts a line first
                self._open_end, self._next_line = parsed.open_end, parsed.lines + 1
        except BaseException:
            self.close()
            raise

    @property
    def history(self) -> list[Label]:
        return self._answers.history

    @property
    def rows(self) -> list[Label]:
        return self._answers.rows

    @property
    def labels(self) -> dict[tuple[int, int], int]:
        """Live confirmed labels ``{(x, y): class}`` (skips left out)."""
        return confirmed(self.rows)

    @property
    def seen(self) -> set[tuple[int, int]]:
        """Every position with a live answer, labelled or skipped: the sampler must not propose these."""
        return {r.position for r in self.rows}

    def append(self, x: int, y: int, label: int | None, **extra) -> Label:
        """Record one answer durably (``label=None`` records a skip)."""
        if label is not None and label not in range(len(CLASSES)):
            raise ValueError(f"label must be a class index 0..{len(CLASSES) - 1} or None, got {label!r}")
        label = None if label is None else int(label)
        row = Label(int(x), int(y), label, {k: str(v) for k, v in extra.items()}, self._next_line)
        self._write(row)
        return row

    def retract(self, **extra) -> Label | None:
        """Append an undo row for the last live answer and return that answer; None if there is none."""
        rows = self.rows
        if not rows:
            return None
        last = rows[-1]
        self._write(Label(last.x, last.y, None, {k: str(v) for k, v in extra.items()}, self._next_line, undo=True))
        return last

    def _write(self, row: Label) -> None:
        if self._file.fd is None:
            raise ValueError(f"{self.path}: the label store is closed")
        self._answers.check(row)  # before writing: a refused answer leaves the file as it was
        text = ("\n" if self._open_end else "") + _csv_text(self.columns, [row], header=False)
        self._file.append(text.encode())
        self._file.appended = True
        self._open_end = False
        self._answers.add(row)
        # an open last line is closed by the leading line break: this row starts at row.line still
        self._next_line = row.line + _line_breaks(text.removeprefix("\n"))

    def close(self) -> None:
        """Release the lock (idempotent). A file this store created and never wrote a row to is removed."""
        self._release()

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.rows)


# ---------------------------------------------------------------- repair


@dataclass
class Repair:
    """What ``repair_label_file`` did: ``dropped`` is None when there was nothing to repair."""

    path: Path
    dropped: str | None = None
    line: int = 0
    backup: Path | None = None


def repair_label_file(path: str | os.PathLike) -> Repair:
    """Drop an incomplete last line (no line break, not a valid row) of a label CSV, after a backup.

    The file is first copied whole to ``NAME.YYYYmmdd-HHMMSS.bak`` beside it (never over an
    existing file). Nothing else is ever removed: any other problem is refused, to be fixed by
    hand. Refused while a labeller holds the file.
    """
    path = Path(path)
    locked = _LockedFile(path, create=False)
    try:
        data = locked.read()
        try:
            validate_labels(_parse_csv(path, data).rows, path)
            return Repair(path)
        except _TornLastLine:
            pass
        except Al4dstemError as e:
            raise Al4dstemError(f"{e} (repair only drops an incomplete last line: fix this by hand)") from None
        cut = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
        try:
            parsed = _parse_csv(path, data[:cut])
            validate_labels(parsed.rows, path)
        except Al4dstemError as e:
            raise Al4dstemError(f"{e} (repair only drops an incomplete last line: fix this by hand)") from None
        backup = _backup(locked.target, data)
        locked.truncate(cut)
        return Repair(path, data[cut:].decode("utf-8", errors="replace"), parsed.lines + 1, backup)
    finally:
        locked.release()


def _backup(target: Path, data: bytes) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    mode = os.stat(target).st_mode & 0o777
    for n in range(1, 1000):
        backup = target.with_name(f"{target.name}.{stamp}{'' if n == 1 else f'-{n}'}.bak")
        try:
            fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
        except FileExistsError:
            continue
        except OSError as e:
            raise Al4dstemError(f"{backup}: cannot write the backup ({e.strerror or e}); nothing changed") from None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise Al4dstemError(f"{backup}: cannot write the backup ({e.strerror or e}); nothing changed") from None
        return backup
    raise Al4dstemError(f"{target}: too many backups named {target.name}.{stamp}*.bak; nothing changed")

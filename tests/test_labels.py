"""Label parsing, validation, file round trips and the append-only store."""

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error, run
from hypothesis import given, settings
from hypothesis import strategies as st

from al4dstem.errors import Al4dstemError
from al4dstem.labels import (
    CLASSES,
    Label,
    LabelStore,
    Repair,
    as_arrays,
    confirmed,
    parse_label,
    position_from_name,
    read_labels,
    repair_label_file,
    write_labels,
)


@pytest.mark.parametrize(
    "alias, index",
    [("none", 0), ("N", 0), ("na", 0), ("no", 0), ("out-of-plane", 0), ("v", 1), ("Vertical", 1),
     ("h", 2), (" horizontal ", 2)],
)
def test_aliases(alias, index):
    assert parse_label(alias) == index


def test_unknown_label_names_value_and_place():
    with pytest.raises(Al4dstemError, match=r"f\.csv:3: unknown label 'diagonal'"):
        parse_label("diagonal", "f.csv:3")


def test_csv_error_names_file_and_line(tmp_path):
    p = tmp_path / "l.csv"
    p.write_text("x,y,label\n0,0,h\n1,0,sideways\n")
    with pytest.raises(Al4dstemError, match=r"l\.csv:3: unknown label 'sideways'"):
        read_labels(p)


def test_out_of_scan_position_is_reported(tmp_path):
    p = tmp_path / "l.csv"
    p.write_text("x,y,label\n0,0,h\n10,2,v\n")
    with pytest.raises(Al4dstemError, match=r"l\.csv:3: position x=10, y=2 is outside the scan"):
        read_labels(p, scan_shape=(4, 10))
    assert len(read_labels(p, scan_shape=(4, 11))) == 2


def test_conflict_names_both_lines_and_duplicates_merge(tmp_path):
    p = tmp_path / "l.csv"
    p.write_text("x,y,label\n1,2,h\n1,2,horizontal\n3,3,v\n1,2,v\n")
    with pytest.raises(Al4dstemError, match=r"l\.csv:5: .*labelled vertical here but horizontal at line 2"):
        read_labels(p)
    p.write_text("x,y,label\n1,2,h\n1,2,horizontal\n3,3,skip\n3,3,v\n")
    rows = read_labels(p)
    assert confirmed(rows) == {(1, 2): 2, (3, 3): 1}


def test_header_must_have_xy_label(tmp_path):
    p = tmp_path / "l.csv"
    p.write_text("col,row,class\n0,0,h\n")
    with pytest.raises(Al4dstemError, match="header must contain x,y,label"):
        read_labels(p)


def test_ghost_hunter_yaml_positions_are_x_then_y(tmp_path):
    p = tmp_path / "g.yaml"
    p.write_text("labels:\n- file: 120_17_boxsize5.png\n  label: na\n- file: 51_12_boxsize5.png\n  label: vertical\n")
    rows = read_labels(p, scan_shape=(34, 206))
    assert confirmed(rows) == {(120, 17): 0, (51, 12): 1}
    pos, cls = as_arrays(rows)
    assert pos.tolist() == [[120, 17], [51, 12]] and cls.tolist() == [0, 1]


def test_position_from_name_rejects_other_names():
    assert position_from_name("/a/b/3_4.png") == (3, 4)
    with pytest.raises(Al4dstemError):
        position_from_name("pattern_a.png")


rows_strategy = st.lists(
    st.tuples(st.integers(0, 50), st.integers(0, 50), st.sampled_from([None, 0, 1, 2]),
              st.text(alphabet="abc ,\"", max_size=5)),
    max_size=30,
    unique_by=lambda r: (r[0], r[1]),
)


@settings(max_examples=60, deadline=None)
@given(rows=rows_strategy)
def test_label_file_round_trip_keeps_extra_columns(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("rt") / "labels.csv"
    labels = [Label(x, y, c, {"note": note}) for x, y, c, note in rows]
    write_labels(path, labels)
    back = read_labels(path)
    assert [(r.x, r.y, r.label, r.extra["note"].strip()) for r in back] == [
        (x, y, c, note.strip()) for x, y, c, note in rows
    ]


def test_store_appends_durably_and_resumes(tmp_path):
    path = tmp_path / "labels.csv"
    with LabelStore(path, scan_shape=(5, 5)) as store:
        store.append(0, 0, 2, round=0, source="truth")
        store.append(1, 0, None, round=0, source="truth")
        store.append(2, 0, 1, round=1, source="truth")
    assert path.read_text().splitlines()[0] == "x,y,label,round,source,time,sampler"
    with LabelStore(path, scan_shape=(5, 5)) as again:
        assert again.labels == {(0, 0): 2, (2, 0): 1}
        assert again.seen == {(0, 0), (1, 0), (2, 0)}
        assert again.retract(round=1).position == (2, 0)
    with LabelStore(path) as again:
        assert again.labels == {(0, 0): 2} and again.seen == {(0, 0), (1, 0)}


def test_store_rejects_conflict_without_touching_file(tmp_path):
    path = tmp_path / "labels.csv"
    with LabelStore(path) as store:
        store.append(0, 0, 2)
        before = path.read_bytes()
        with pytest.raises(Al4dstemError, match=r"labels\.csv:3: .*labelled vertical here but horizontal at line 2"):
            store.append(0, 0, 1)
        assert path.read_bytes() == before and store.labels == {(0, 0): 2}
    with LabelStore(path, scan_shape=(1, 1)) as store, pytest.raises(Al4dstemError, match="outside the scan"):
        store.append(3, 3, 0)
    assert path.read_bytes() == before


STORE_ROWS = "x,y,label,round,source,time\n0,0,vertical,0,truth,2024-01-01T00:00:00\n1,0,skip,0,truth,t\n"


@pytest.mark.parametrize("text, labels", [
    (STORE_ROWS + "5,3,vertical", {(0, 0): 1, (5, 3): 1}),  # typed by hand after the store wrote rows
    (STORE_ROWS + "5,3,h,1", {(0, 0): 1, (5, 3): 2}),
    ("x,y,label\n0,0,v\n1,0,h", {(0, 0): 1, (1, 0): 2}),  # no final newline, as editors and exports leave it
    ("x,y,label", {}),  # a header alone
    ("x,y,label\n0,0,v\n\n  ", {(0, 0): 1}),  # blank lines
    ("x,y,label\r0,0,v\r1,0,h\r", {(0, 0): 1, (1, 0): 2}),  # old Mac line endings
    ("x,y,label\r0,0,v\r1,0,h", {(0, 0): 1, (1, 0): 2}),
    ("x,y,label\r\n0,0,v\r\n", {(0, 0): 1}),
])
def test_store_keeps_every_valid_row_and_never_changes_the_file_when_opening(tmp_path, text, labels):
    path = tmp_path / "labels.csv"
    path.write_bytes(text.encode())
    with LabelStore(path, (6, 6)) as store:
        assert store.labels == labels
        assert path.read_bytes() == text.encode()  # opening reads only
        row = store.append(4, 4, 0)
        assert path.read_bytes().startswith(text.encode())  # appending adds, never rewrites
    again = read_labels(path, (6, 6))
    assert confirmed(again) == {**labels, (4, 4): 0}
    assert [r.line for r in again if r.position == (4, 4)] == [row.line]


@pytest.mark.parametrize("tail, line, problem", [
    ("5,3,verticle", 4, "unknown label 'verticle'"),  # a typo in a row typed by hand
    ("2,0,horiz", 4, "unknown label 'horiz'"),  # a write cut short
    ("2,0", 4, "no label"),
    ("2", 4, "no y"),
    ("2,0,\"hori", 4, "unknown label 'hori'"),  # cut inside a quoted field
    ("2,0,h,1,caf\u00e9", 4, "cut inside a character"),
])
def test_store_refuses_an_incomplete_last_line_with_its_number_and_leaves_the_file(tmp_path, tail, line, problem):
    path = tmp_path / "labels.csv"
    data = STORE_ROWS.encode() + tail.encode()
    if "\u00e9" in tail:
        data = data[:-1]  # cut inside the last character
    path.write_bytes(data)
    for open_it in (LabelStore, read_labels):
        with pytest.raises(Al4dstemError) as err:
            open_it(path)
        message = str(err.value)
        assert "\n" not in message and message.startswith(f"{path}:{line}: ") and problem in message
        assert f"al4dstem repair {path}" in message and "backup" in message
    assert path.read_bytes() == data
    assert os.listdir(tmp_path) == ["labels.csv"]  # no lock note, no temporary left behind


@pytest.mark.parametrize("text, line", [
    ("x,y,label\n0,0,v\nfoo,0,h\n1,1,v\n", 3),
    ("x,y,label\n0,0,v\n1,0,sideways\n1,1,v", 3),
    ("x,y,label\n0,0,v\n0,0,h\n", 3),
    ("x,y,label\n0,0,undo\n", 2),
    ("x,y,label\r0,0,v\r1,0,bad\r2,2,v\r", 3),
    ("x,y,label,note\n0,0,v,ok\n1,0,h," + "a" * 200_000 + "\n2,0,v,ok\n", 3),  # over csv's field size limit
    ("x,y,label\n0,0,v\n1,0,h\n0,0,h", 4),  # a valid row, without newline, that conflicts
], ids=["not-integer", "unknown-label", "conflict", "undo-without-answer", "cr-only", "huge-field",
        "conflict-last"])
def test_a_bad_row_anywhere_is_refused_with_path_and_line(tmp_path, text, line):
    path = tmp_path / "labels.csv"
    path.write_bytes(text.encode())
    for open_it in (LabelStore, read_labels):
        with pytest.raises(Al4dstemError, match=rf"^{path}:{line}: ") as err:
            open_it(path)
        assert "\n" not in str(err.value) and "repair" not in str(err.value)
    assert path.read_bytes() == text.encode()


def test_store_appends_a_newline_first_after_a_last_row_without_one(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text(STORE_ROWS + "5,3,vertical")
    with LabelStore(path, (6, 6)) as store:
        store.append(2, 2, 0, round=3)
    assert path.read_text() == STORE_ROWS + "5,3,vertical\n2,2,none,3,,\n"


def test_store_refuses_a_file_that_is_not_a_label_csv_and_leaves_it(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_bytes(b"\xff\xfe bad")
    with pytest.raises(Al4dstemError, match="labels.csv"):
        LabelStore(path)
    assert path.read_bytes() == b"\xff\xfe bad"
    path.write_text("no header here")
    with pytest.raises(Al4dstemError, match="not a label CSV"):
        LabelStore(path)
    assert path.read_text() == "no header here"


def test_unreadable_label_files_are_clear_errors(tmp_path):
    (tmp_path / "latin1.csv").write_bytes("x,y,label\n0,0,h\xe9\n".encode("latin-1"))
    with pytest.raises(Al4dstemError, match="latin1.csv: not a text label file"):
        read_labels(tmp_path / "latin1.csv")
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(Al4dstemError, match="folder.csv: is a folder"):
        read_labels(tmp_path / "folder.csv")
    with pytest.raises(Al4dstemError, match="folder.csv: is a folder"):
        LabelStore(tmp_path / "folder.csv")


def test_excel_byte_order_mark_is_ignored(tmp_path):
    (tmp_path / "excel.csv").write_bytes("x,y,label\r\n3,1,vertical\r\n".encode("utf-8-sig"))
    assert [(r.position, r.label) for r in read_labels(tmp_path / "excel.csv")] == [((3, 1), 1)]


def test_classes_order_is_fixed():
    assert CLASSES == ("none", "vertical", "horizontal")
    assert [parse_label(c) for c in CLASSES] == [0, 1, 2]


def test_atomic_write_leaves_no_temporaries(tmp_path):
    write_labels(tmp_path / "a.csv", [Label(0, 0, 1)])
    assert os.listdir(tmp_path) == ["a.csv"]


# ---------------------------------------------------------------- one writer: the lock


def test_a_second_store_is_refused_at_once_while_the_first_is_open(tmp_path):
    path = tmp_path / "labels.csv"
    note = tmp_path / ".labels.csv.lock"
    with LabelStore(path) as first:
        first.append(0, 0, 1)
        assert note.read_text().split()[0] == str(os.getpid())
        with pytest.raises(Al4dstemError) as err:
            LabelStore(path)
        assert re.fullmatch(rf"{path}: in use by PID {os.getpid()} since \S+ \(another al4dstem label\?\)",
                            str(err.value))
        note.write_text("garbled")  # the note is informational only: the lock holds without it
        with pytest.raises(Al4dstemError, match=r"labels\.csv: in use by another process"):
            LabelStore(path)
        first.append(1, 0, 2)
    assert not note.exists()
    with LabelStore(path) as again:  # closed: free again
        assert again.labels == {(0, 0): 1, (1, 0): 2}


def test_a_store_left_unclosed_is_released_when_collected(tmp_path):
    path = tmp_path / "labels.csv"
    store = LabelStore(path)
    store.append(0, 0, 1)
    del store
    with LabelStore(path) as again:
        assert again.labels == {(0, 0): 1}


def test_a_new_file_is_made_in_place_and_removed_if_no_answer_was_recorded(tmp_path):
    path = tmp_path / "sub" / "labels.csv"
    with LabelStore(path):
        assert path.read_text() == "x,y,label,round,source,time,sampler\n"  # made at once, under the lock
    assert not path.exists()
    with pytest.raises(KeyboardInterrupt), LabelStore(path):
        raise KeyboardInterrupt  # a failed command leaves no new file behind
    assert not path.exists()
    with LabelStore(path) as store:
        store.append(0, 0, 1)
        store.retract()
    with LabelStore(path) as again:  # answered, then taken back: kept
        assert [r.name for r in again.history] == ["vertical", "undo"]
    (tmp_path / "empty.csv").touch()  # a file that was there is never removed
    LabelStore(tmp_path / "empty.csv").close()
    assert (tmp_path / "empty.csv").read_text() == "x,y,label,round,source,time,sampler\n"


def test_the_store_writes_in_place_never_through_a_rename(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("x,y,label\n0,0,v\n")
    inode = path.stat().st_ino
    with LabelStore(path) as store:
        store.append(1, 0, 2)
        store.retract()
        store.append(1, 0, 0)
    assert path.stat().st_ino == inode and os.listdir(tmp_path) == ["labels.csv"]


# ---------------------------------------------------------------- undo appends a retraction


def test_retract_appends_an_undo_row_and_never_changes_earlier_rows(tmp_path):
    path = tmp_path / "labels.csv"
    with LabelStore(path, (4, 4)) as store:
        store.append(0, 0, 1, round=0, source="person", time="t0")
        store.append(1, 0, None, round=0, source="person", time="t1")
        store.append(2, 0, 2, round=1, source="person", time="t2")
        before = path.read_bytes()
        taken = store.retract(round=1, source="person", time="t3")
        assert (taken.position, taken.label) == ((2, 0), 2)
        assert path.read_bytes() == before + b"2,0,undo,1,person,t3,\n"
        assert store.labels == {(0, 0): 1} and store.seen == {(0, 0), (1, 0)}
        assert store.retract().position == (1, 0)  # the skip, next
        store.append(2, 0, 0)  # a retracted position takes any new answer
        assert [r.name for r in store.history] == ["vertical", "skip", "horizontal", "undo", "undo", "none"]
        assert [r.position for r in store.rows] == [(0, 0), (2, 0)]
    with LabelStore(path, (4, 4)) as again:
        assert again.labels == {(0, 0): 1, (2, 0): 0} and again.seen == {(0, 0), (2, 0)}
        assert [r.extra["time"] for r in again.history[:3]] == ["t0", "t1", "t2"]  # times never change


def test_retract_with_nothing_to_take_back_writes_nothing(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("x,y,label\n0,0,v\n0,0,undo\n")
    with LabelStore(path) as store:
        assert store.retract() is None and store.labels == {}
    assert path.read_text() == "x,y,label\n0,0,v\n0,0,undo\n"


def test_an_undo_row_takes_back_the_latest_live_answer_at_its_position(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("x,y,label\n1,1,skip\n2,2,h\n1,1,v\n1,1,undo\n1,1,undo\n1,1,h\n")
    assert [(r.position, r.name, r.line) for r in read_labels(path)] == [((2, 2), "horizontal", 3),
                                                                         ((1, 1), "horizontal", 7)]


operations = st.lists(
    st.one_of(st.tuples(st.just("append"), st.integers(0, 3), st.integers(0, 2), st.sampled_from([None, 0, 1, 2])),
              st.tuples(st.just("retract"))),
    max_size=25,
)


@settings(max_examples=40, deadline=None)
@given(ops=operations)
def test_any_appends_and_retractions_read_back_as_replayed_in_memory(tmp_path_factory, ops):
    path = tmp_path_factory.mktemp("ops") / "labels.csv"
    live = []  # the model: answers still standing, in the order given
    with LabelStore(path, (3, 4)) as store:
        for op in ops:
            if op[0] == "retract":
                taken = store.retract(source="test")
                if live:
                    want = live.pop()
                    assert (taken.position, taken.label, taken.line) == (want.position, want.label, want.line)
                else:
                    assert taken is None
                continue
            _, x, y, label = op
            clash = label is not None and any(r.position == (x, y) and r.label not in (None, label) for r in live)
            if clash:
                before = path.read_bytes()
                with pytest.raises(Al4dstemError, match="labelled"):
                    store.append(x, y, label)
                assert path.read_bytes() == before
            else:
                live.append(store.append(x, y, label, source="test"))
        expected = [(r.position, r.label) for r in live]
        assert [(r.position, r.label) for r in store.rows] == expected
        history = [(r.position, r.name, r.line) for r in store.history]
    if not history:  # nothing recorded: the new file went away again
        assert not path.exists()
        return
    with LabelStore(path, (3, 4)) as again:  # reopening gives the same state, line numbers included
        assert [(r.position, r.label) for r in again.rows] == expected
        assert [(r.position, r.name, r.line) for r in again.history] == history
    assert confirmed(read_labels(path, (3, 4))) == confirmed(live)
    assert {r.position for r in read_labels(path)} == {r.position for r in live}


# ---------------------------------------------------------------- repair: only an incomplete last line, after a backup


@pytest.mark.parametrize("tail", [b"2,0,horiz", b"2,0", b"2,0,h,1,caf\xc3", b"5,3,verticle"])
def test_repair_drops_only_an_incomplete_last_line_after_a_backup(tmp_path, tail):
    path = tmp_path / "labels.csv"
    data = STORE_ROWS.encode() + tail
    path.write_bytes(data)
    done = repair_label_file(path)
    assert done.line == 4 and done.dropped == tail.decode(errors="replace")
    assert done.backup.parent == tmp_path and done.backup.read_bytes() == data
    assert path.read_bytes() == STORE_ROWS.encode()
    with LabelStore(path) as store:
        assert store.labels == {(0, 0): 1} and store.seen == {(0, 0), (1, 0)}
    assert repair_label_file(path).dropped is None  # then nothing is left to repair


@pytest.mark.parametrize("text", [
    STORE_ROWS, STORE_ROWS + "5,3,vertical", "x,y,label", "",
])
def test_repair_with_nothing_to_repair_changes_nothing(tmp_path, text):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    assert repair_label_file(path) == Repair(path)
    assert path.read_text() == text and os.listdir(tmp_path) == ["labels.csv"]


@pytest.mark.parametrize("text, line", [
    ("x,y,label\n0,0,v\nfoo,0,h\n1,1,v\n", 3),
    ("x,y,label\n0,0,v\nfoo,0,h\n1,1,vert", 3),  # a bad row before the torn one: nothing is dropped
    ("x,y,label\n0,0,v\n1,0,h\n0,0,h", 4),  # a complete row that conflicts: for a person to decide
])
def test_repair_refuses_anything_but_an_incomplete_last_line(tmp_path, text, line):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(Al4dstemError, match=rf"^{path}:{line}: .*fix this by hand"):
        repair_label_file(path)
    assert path.read_text() == text and os.listdir(tmp_path) == ["labels.csv"]


def test_repair_never_overwrites_an_existing_file(tmp_path, monkeypatch):
    monkeypatch.setattr("al4dstem.labels.time.strftime", lambda fmt: "20250101-120000")
    path = tmp_path / "labels.csv"
    mine = tmp_path / "labels.csv.20250101-120000.bak"
    mine.write_text("someone's file")
    path.write_text("x,y,label\n0,0,v\n1,0,ho")
    assert repair_label_file(path).backup == tmp_path / "labels.csv.20250101-120000-2.bak"
    assert mine.read_text() == "someone's file"
    assert (tmp_path / "labels.csv.20250101-120000-2.bak").read_text() == "x,y,label\n0,0,v\n1,0,ho"


def test_repair_is_refused_while_a_labeller_holds_the_file(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("x,y,label\n0,0,v\n")
    with LabelStore(path) as store:
        os.write(os.open(path, os.O_WRONLY | os.O_APPEND), b"1,0,ho")  # as if torn, under a live labeller
        with pytest.raises(Al4dstemError, match=r"labels\.csv: in use by PID"):
            repair_label_file(path)
        assert store.labels == {(0, 0): 1}
    assert path.read_text() == "x,y,label\n0,0,v\n1,0,ho" and os.listdir(tmp_path) == ["labels.csv"]


def test_repair_command(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("x,y,label\n0,0,v\n1,0,ho")
    p = run("repair", path, timeout=60)
    assert p.returncode == 0, p.stderr
    backup = next(tmp_path.glob("labels.csv.*.bak"))
    assert p.stdout == f"{path}: dropped incomplete line 3: '1,0,ho'; the file as it was is kept in {backup}\n"
    assert path.read_text() == "x,y,label\n0,0,v\n"
    p = run("repair", path, timeout=60)
    assert p.returncode == 0 and p.stdout == f"{path}: nothing to repair; the file is unchanged\n"
    with LabelStore(path):
        assert_one_line_error(run("repair", path, timeout=60), f"{path}: in use by PID {os.getpid()} since")
    assert_one_line_error(run("repair", tmp_path / "missing.csv", timeout=60), "missing.csv: no such label file")


# ---------------------------------------------------------------- only plain files


def _in_child(code: str, *args) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with a timeout: a label file that hangs must fail the test, not block it."""
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=30)


OPEN_BOTH = """
import sys
from al4dstem.errors import Al4dstemError
from al4dstem.labels import LabelStore, read_labels
for open_it in (LabelStore, read_labels):
    try:
        open_it(sys.argv[1])
    except Al4dstemError as e:
        print(e)
"""


def test_a_fifo_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "labels.csv"
    os.mkfifo(fifo)  # no writer: opening it to read would wait forever
    p = _in_child(OPEN_BOTH, fifo)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [f"{fifo}: is a FIFO (named pipe), not a regular file; label files must be "
                                     "plain files"] * 2
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and os.listdir(tmp_path) == ["labels.csv"]


def test_a_symlink_to_a_device_is_refused_and_the_device_untouched(tmp_path):
    link = tmp_path / "labels.csv"
    link.symlink_to("/dev/null")
    device = os.stat("/dev/null")
    for open_it in (LabelStore, read_labels):
        with pytest.raises(Al4dstemError, match=r"labels\.csv: is a character device, not a regular file"):
            open_it(link)
    now = os.stat("/dev/null")
    assert stat.S_ISCHR(now.st_mode) and (now.st_ino, now.st_rdev) == (device.st_ino, device.st_rdev)
    assert os.readlink(link) == "/dev/null" and os.listdir(tmp_path) == ["labels.csv"]


def test_a_socket_is_refused(tmp_path):
    import socket
    import tempfile

    folder = tempfile.mkdtemp(dir="/tmp")  # a short path: socket names are limited to ~100 bytes
    try:
        path = os.path.join(folder, "l.csv")
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(path)
            for open_it in (LabelStore, read_labels):
                with pytest.raises(Al4dstemError, match=r"l\.csv: is a socket, not a regular file"):
                    open_it(path)
    finally:
        for name in os.listdir(folder):
            os.unlink(os.path.join(folder, name))
        os.rmdir(folder)


def test_symlinks_are_followed_and_the_target_written(tmp_path):
    target = tmp_path / "real.csv"
    target.touch()
    link = tmp_path / "labels.csv"
    link.symlink_to(target)
    with LabelStore(link) as store:
        store.append(1, 2, 1)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "x,y,label,round,source,time,sampler\n1,2,vertical,,,,\n"
    assert confirmed(read_labels(link)) == {(1, 2): 1}
    dangling = tmp_path / "dangling.csv"
    dangling.symlink_to(tmp_path / "later.csv")
    LabelStore(dangling).close()  # nothing recorded: the file it made goes away, the link stays
    assert dangling.is_symlink() and not (tmp_path / "later.csv").exists()
    with LabelStore(dangling) as store:
        store.append(0, 0, 0)
    assert confirmed(read_labels(tmp_path / "later.csv")) == {(0, 0): 0}


# ---------------------------------------------------------------- files the store cannot write


def test_a_file_the_store_cannot_write_fails_at_open(tmp_path, monkeypatch):
    path = tmp_path / "labels.csv"
    path.write_text("x,y,label\n0,0,v\n")
    real_open = os.open

    def read_only(file, flags, *args, **kwargs):
        if flags & (os.O_RDWR | os.O_WRONLY | os.O_CREAT):
            raise PermissionError(13, "Permission denied")
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(Al4dstemError, match=r"^\S+labels\.csv: cannot write the label file \(Permission denied\)$"):
        LabelStore(path)
    with pytest.raises(Al4dstemError, match=r"new\.csv: cannot create the label file \(Permission denied\)$"):
        LabelStore(tmp_path / "new.csv")
    assert confirmed(read_labels(path)) == {(0, 0): 1}  # reading still works


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_a_read_only_file_or_folder_fails_at_open_for_an_unprivileged_user():
    import tempfile

    folder = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's tmp_path is private to root
    try:
        folder.chmod(0o755)
        path = folder / "labels.csv"
        path.write_text("x,y,label\n0,0,v\n")
        path.chmod(0o644)
        p = subprocess.run([*NOBODY, sys.executable, "-c", OPEN_BOTH.replace("read_labels)", ")"), path],
                           capture_output=True, text=True, timeout=60)
        assert p.stdout == f"{path}: cannot write the label file (Permission denied)\n", p.stderr
        p = subprocess.run([*NOBODY, sys.executable, "-c", OPEN_BOTH.replace("read_labels)", ")"),
                            folder / "new.csv"], capture_output=True, text=True, timeout=60)
        assert p.stdout == f"{folder / 'new.csv'}: cannot create the label file (Permission denied)\n", p.stderr
        assert sorted(os.listdir(folder)) == ["labels.csv"] and path.read_text() == "x,y,label\n0,0,v\n"
    finally:
        shutil.rmtree(folder)


def test_row_col_files_are_read_and_appended_in_their_own_columns(tmp_path):
    path = tmp_path / "rc.csv"
    path.write_text("row,col,label,note\n3,5,v,hand\n0,1,h,\n")
    assert [(r.x, r.y, r.name, r.extra) for r in read_labels(path, (4, 6))] == [
        (5, 3, "vertical", {"note": "hand"}), (1, 0, "horizontal", {"note": ""})]
    with LabelStore(path, (4, 6)) as store:
        store.append(2, 1, 0)
    assert path.read_text().splitlines()[-1] == "1,2,none,"
    both = tmp_path / "both.csv"
    both.write_text("x,y,row,col,label\n1,1,1,1,v\n")
    with pytest.raises(Al4dstemError, match="either x,y or row,col"):
        read_labels(both)

"""Label parsing, validation, file round trips and the append-only store."""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from al4dstem.errors import Al4dstemError
from al4dstem.labels import (
    CLASSES,
    Label,
    LabelStore,
    as_arrays,
    confirmed,
    parse_label,
    position_from_name,
    read_labels,
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
    store = LabelStore(path, scan_shape=(5, 5))
    store.append(0, 0, 2, round=0, source="truth")
    store.append(1, 0, None, round=0, source="truth")
    store.append(2, 0, 1, round=1, source="truth")
    assert path.read_text().splitlines()[0] == "x,y,label,round,source,time"
    again = LabelStore(path, scan_shape=(5, 5))
    assert again.labels == {(0, 0): 2, (2, 0): 1}
    assert again.seen == {(0, 0), (1, 0), (2, 0)}
    assert again.undo().position == (2, 0)
    assert LabelStore(path).labels == {(0, 0): 2}


def test_store_rejects_conflict_without_touching_file(tmp_path):
    path = tmp_path / "labels.csv"
    store = LabelStore(path)
    store.append(0, 0, 2)
    before = path.read_bytes()
    with pytest.raises(Al4dstemError):
        store.append(0, 0, 1)
    with pytest.raises(Al4dstemError):
        LabelStore(path, scan_shape=(1, 1)).append(3, 3, 0)
    assert path.read_bytes() == before


def test_store_drops_torn_last_line(tmp_path):
    path = tmp_path / "labels.csv"
    store = LabelStore(path)
    store.append(0, 0, 2)
    store.append(1, 0, 1)
    with open(path, "ab") as f:  # a crash mid-write leaves a partial row
        f.write(b"2,0,horiz")
    again = LabelStore(path)
    assert again.repaired and again.labels == {(0, 0): 2, (1, 0): 1}
    assert path.read_text().endswith("\n")


def test_store_keeps_a_complete_last_row_written_by_hand(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("x,y,label\n0,0,v\n1,0,h")  # no final newline, as editors and exports leave it
    store = LabelStore(path, (4, 4))
    assert not store.repaired and store.labels == {(0, 0): 1, (1, 0): 2}
    store.append(2, 0, 0)
    assert [(r.position, r.label) for r in read_labels(path)] == [((0, 0), 1), ((1, 0), 2), ((2, 0), 0)]
    path.write_text("x,y,label")  # a header alone
    store = LabelStore(path, (4, 4))
    assert not store.repaired and store.labels == {}
    store.append(3, 1, 2)
    assert [(r.position, r.label) for r in read_labels(path)] == [((3, 1), 2)]


def test_store_drops_a_tail_torn_inside_a_character(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_bytes("x,y,label,note\n0,0,v,ok\n1,0,h,caf\u00e9".encode()[:-1])  # cut inside the last character
    store = LabelStore(path)
    assert store.repaired and store.labels == {(0, 0): 1}
    assert path.read_text() == "x,y,label,note\n0,0,v,ok\n"


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

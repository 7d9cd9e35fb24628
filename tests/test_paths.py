"""``al4dstem.paths.check_outputs``: outputs never overwrite inputs, however the paths are spelled."""

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from al4dstem.errors import Al4dstemError
from al4dstem.paths import Files, check_outputs


def test_an_output_that_is_an_input_names_both_roles(tmp_path):
    (tmp_path / "s.npy").write_bytes(b"data")
    with pytest.raises(Al4dstemError, match=r"^--out .*s.npy would overwrite the data file .*s.npy$"):
        check_outputs(writes={"--out": tmp_path / "s.npy"}, reads={"data file": tmp_path / "s.npy"})


def test_a_prefix_names_the_file_it_would_write(tmp_path):
    (tmp_path / "m_valid.npy").write_bytes(b"model")
    files = Files(tmp_path / "m", [tmp_path / "m.npy", tmp_path / "m_valid.npy"])
    with pytest.raises(Al4dstemError, match=r"--out \S+/m \(\S+/m_valid.npy\) would overwrite --model"):
        check_outputs(writes={"--out": files}, reads={"--model": tmp_path / "m_valid.npy"})


def test_links_and_spellings_are_seen_through(tmp_path):
    data = tmp_path / "s.npy"
    data.write_bytes(b"data")
    (tmp_path / "sub").mkdir()
    os.symlink(data, tmp_path / "soft.npy")
    os.link(data, tmp_path / "hard.npy")
    os.symlink(tmp_path, tmp_path / "sub" / "up")
    for spelling in ("soft.npy", "hard.npy", "sub/../s.npy", "./s.npy", "sub/up/s.npy"):
        with pytest.raises(Al4dstemError, match="would overwrite the data file"):
            check_outputs(writes={"--out": tmp_path / spelling}, reads={"data file": data})
        with pytest.raises(Al4dstemError, match="would overwrite the data file"):  # either side may be the link
            check_outputs(writes={"--out": data}, reads={"data file": tmp_path / spelling})


def test_writing_inside_a_folder_that_is_read_is_refused(tmp_path):
    (tmp_path / "pngs").mkdir()
    (tmp_path / "pngs" / "0_0.png").write_bytes(b"png")
    with pytest.raises(Al4dstemError, match=r"would write inside the data folder"):
        check_outputs(writes={"--out": tmp_path / "pngs" / "map.png"}, reads={"data file": tmp_path / "pngs"})
    check_outputs(writes={"--out": tmp_path / "pngs.png"}, reads={"data file": tmp_path / "pngs"})  # beside: fine


def test_two_outputs_that_are_one_file_are_refused(tmp_path):
    with pytest.raises(Al4dstemError, match=r"^OUT \S+x.npy and --truth \S+x.npy are the same file"):
        check_outputs(writes={"OUT": tmp_path / "x.npy", "--truth": tmp_path / "x.npy"})


def test_distinct_paths_missing_inputs_and_absent_options_pass(tmp_path):
    (tmp_path / "s.npy").write_bytes(b"data")
    check_outputs(writes={"--out": tmp_path / "m.pt", "--plot": None},
                  reads={"data file": tmp_path / "s.npy", "--labels": None, "--truth": tmp_path / "gone.csv"})
    # a missing input is not compared: opening it fails later with its own message
    check_outputs(writes={"--out": tmp_path / "gone.csv"}, reads={"--truth": tmp_path / "gone.csv"})


def test_unwritable_outputs_are_refused_before_any_work(tmp_path, monkeypatch):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(Al4dstemError, match=r"--out \S+: is a folder"):
        check_outputs(writes={"--out": tmp_path})
    with pytest.raises(Al4dstemError, match=r"folder \S+nowhere does not exist"):
        check_outputs(writes={"--out": tmp_path / "nowhere" / "m.pt"})
    with pytest.raises(Al4dstemError, match=r"a_file is not a folder"):
        check_outputs(writes={"--out": tmp_path / "a_file" / "m.pt"})
    with pytest.raises(Al4dstemError, match=r"a_file is a file, not a folder"):
        check_outputs(writes={"OUT": tmp_path / "a_file" / "sub" / "x.npy"}, create_folders=True)
    check_outputs(writes={"OUT": tmp_path / "new" / "sub" / "x.npy"}, create_folders=True)
    assert not (tmp_path / "new").exists()  # checking creates nothing

    # as root, permissions do not stop writes: ask what an ordinary user would be told
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p).name != "ro" and real_access(p, mode))
    (tmp_path / "ro").mkdir()
    with pytest.raises(Al4dstemError, match=r"^--out \S+/ro/m.pt: folder \S+/ro is not writable"):
        check_outputs(writes={"--out": tmp_path / "ro" / "m.pt"})
    (tmp_path / "ro.pt").write_text("x")
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p).name != "ro.pt" and real_access(p, mode))
    with pytest.raises(Al4dstemError, match=r"read-only"):
        check_outputs(writes={"--out": tmp_path / "ro.pt"})


# Property: check_outputs refuses exactly when the output is the same file as the input, judged by an
# independent oracle (device and inode), for names spelled through links, '..', '.' and hard links.
SPELLINGS = ["f0", "f1", "./f0", "d/../f0", "d/f2", "d/../d/f2", "soft0", "d/soft1", "hard0", "dlink/f2",
             "dlink/../f1", "new", "d/new"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("tree")
    (root / "d").mkdir()
    for name in ("f0", "f1", "d/f2"):
        (root / name).write_text(name)
    os.symlink("f0", root / "soft0")
    os.symlink("../f1", root / "d" / "soft1")
    os.link(root / "f0", root / "hard0")
    os.symlink("d", root / "dlink")
    return root


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(out=st.sampled_from(SPELLINGS), source=st.sampled_from(SPELLINGS))
def test_refused_exactly_when_the_output_is_the_input(tree, out, source):
    out_path, in_path = tree / out, tree / source
    same = in_path.exists() and out_path.exists() and os.stat(out_path).st_ino == os.stat(in_path).st_ino
    if not in_path.exists():  # not an input: nothing to protect
        same = False
    elif not out_path.exists():  # a new file is another file, unless both spell one new path
        same = os.path.realpath(out_path) == os.path.realpath(in_path)
    try:
        check_outputs(writes={"--out": out_path}, reads={"data file": in_path})
        refused = False
    except Al4dstemError as e:
        assert "would overwrite the data file" in str(e)
        refused = True
    assert refused == same

"""Running the real `al4dstem` command from tests, and checking its one-line errors."""

import subprocess


def run(*args, timeout=300) -> subprocess.CompletedProcess:
    """`al4dstem ARGS...` as a user would run it (the console script on PATH, see conftest.py)."""
    return subprocess.run(["al4dstem", *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def assert_one_line_error(p: subprocess.CompletedProcess, *words: str) -> None:
    """A user error: non-zero exit, exactly one stderr line holding every one of ``words``, no traceback."""
    lines = [s for s in p.stderr.splitlines() if s.strip()]
    assert p.returncode != 0, p.stdout
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    for w in words:
        assert w in lines[0], lines[0]

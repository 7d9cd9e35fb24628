"""README's Quick start and CI must not drift apart: CI runs README's test command."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands():
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Quick start\n(.*?)(?=^## )", text + "\n## end", re.S | re.M).group(1)
    return re.findall(r"```bash\n(.*?)\n```", section, re.S)


def test_quick_start_has_two_commands_and_ci_runs_the_test_one():
    commands = quick_start_commands()
    assert len(commands) == 2, commands
    demo, tests = commands
    assert "al4dstem demo" in demo and "pytest" in tests
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()

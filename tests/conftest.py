"""Shared test set-up.

Tests drive the real ``al4dstem`` command; put the running interpreter's scripts folder
first on PATH so the venv's console script is found even when the venv is not activated.
"""

import os
import sys
from pathlib import Path

os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
# Tests run on small data with two cores; keep torch and BLAS from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "2")

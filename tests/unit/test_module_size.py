"""Module size: one concept per module, small enough to read in one sitting (STYLE.md)."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 400


def test_no_python_module_is_over_400_lines() -> None:
    """Every *.py git tracks (so never .venv, node_modules or .local) has at most 400 lines."""
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "*.py"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    paths = [ROOT / name for name in tracked.split("\0") if name]
    assert paths, "git lists no Python file: not a checkout?"
    too_long = {
        str(path.relative_to(ROOT)): count
        for path in paths
        if path.is_file() and (count := len(path.read_bytes().splitlines())) > LIMIT
    }
    assert too_long == {}, f"over {LIMIT} lines (split along a seam): {too_long}"

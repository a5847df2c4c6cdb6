"""The checkout passes ruff with the project's configuration (pyproject.toml: line length 120, pycodestyle,
pyflakes, isort, pyupgrade, bugbear). The suite runs it so that style is checked where the tests are."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", "--no-cache", "."],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert "No module named ruff" not in result.stderr, "ruff is a test requirement (requirements/tests.txt)"
    assert result.returncode == 0, f"ruff check . (run `ruff check --fix .` for the fixable ones):\n{result.stdout}"

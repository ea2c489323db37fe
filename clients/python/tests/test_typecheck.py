"""mypy --strict on the installed package (its generated stubs excepted,
see pyproject.toml)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent


def test_mypy_strict_passes_on_the_package(tmp_path: Path) -> None:
    cache = Path(sys.prefix) / "mypy-cache"
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(PROJECT / "pyproject.toml"),
         "--cache-dir", str(cache), "-p", "sessionbridge"],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # the installed package, not the source tree
        env={**os.environ, "MYPY_FORCE_COLOR": "0"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout

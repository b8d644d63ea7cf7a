"""Static checks run with the suite: ruff on the tree, mypy --strict on src/ (STYLE tooling)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *cmd], cwd=REPO, capture_output=True, text=True,
                          timeout=600, check=False)


def test_lint_ruff_is_clean():
    done = run("ruff", "check", "src", "tests", "bench")
    assert done.returncode == 0, done.stdout + done.stderr


def test_lint_mypy_strict_is_clean():
    done = run("mypy")
    assert done.returncode == 0, done.stdout + done.stderr

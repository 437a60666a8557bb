"""The code passes the project's linter (ruff, the version in uv.lock, the rules in
pyproject.toml): what `make lint` runs, so a finding fails `make test` too."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    ruff = Path(sys.executable).parent / "ruff"
    done = subprocess.run(
        [str(ruff), "check", "--no-cache", "--output-format", "concise",
         "shared", "services", "tests", "bench"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr

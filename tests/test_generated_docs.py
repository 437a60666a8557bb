"""The committed OpenAPI documents are generated from the code: `make docs` refreshes them.
(The AsyncAPI document has its own check in shared/tests/test_asyncapi.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_committed_openapi_documents_match_the_services():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "export_openapi.py"), "--check"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr


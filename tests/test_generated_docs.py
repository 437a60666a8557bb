"""The committed API documents are generated from the code: `make docs` refreshes them."""

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


def test_committed_asyncapi_document_matches_the_events():
    from pathways_shared.asyncapi import render

    assert (ROOT / "docs" / "asyncapi.json").read_text() == render(), "run `make docs`"

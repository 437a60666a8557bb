"""The committed OpenAPI documents are generated from the code: `make docs` refreshes them.
(The AsyncAPI document has its own check in shared/tests/test_asyncapi.py.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pathways_shared.harness import SERVICES

ROOT = Path(__file__).resolve().parents[1]


def test_committed_openapi_documents_match_the_services():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "export_openapi.py"), "--check"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr



def test_every_published_document_is_valid_openapi():
    """openapi-spec-validator over each service's partner document (the committed copy, which
    the test above holds equal to the live one) and the operator document."""
    import json

    from openapi_spec_validator import validate

    documents = sorted((ROOT / "docs" / "openapi").glob("*.json"))
    assert [path.stem for path in documents] == sorted(SERVICES)
    for path in documents:
        validate(json.loads(path.read_text()))
    operator = subprocess.run(
        [sys.executable, "-c", OPERATOR_DOCUMENT], cwd=ROOT, capture_output=True, text=True,
        timeout=120, check=True,
    )
    validate(json.loads(operator.stdout))


OPERATOR_DOCUMENT = """
import json
from referrals.app import create_app
from referrals.config import ReferralsSettings
app = create_app(ReferralsSettings(jwt_secret="openapi-export", environment="development"))
print(json.dumps(app.state.operator_openapi()))
"""

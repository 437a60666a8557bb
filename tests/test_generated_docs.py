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
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
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


def _operations():
    import json

    for path in sorted((ROOT / "docs" / "openapi").glob("*.json")):
        doc = json.loads(path.read_text())
        for route, item in doc["paths"].items():
            for method, op in item.items():
                yield path.stem, method, route, op


def test_operation_ids_are_descriptive_and_unique():
    """A generated client's method names: a verb and a noun (`acceptReferral`, not `accept`)."""
    import re

    seen: dict[str, set[str]] = {}
    for service, method, route, op in _operations():
        op_id = op["operationId"]
        assert re.fullmatch(r"[a-z]+(?:[A-Z][a-z0-9]*)+", op_id), (service, method, route, op_id)
        assert op_id not in seen.setdefault(service, set()), (service, op_id)
        seen[service].add(op_id)


def test_every_created_answer_documents_its_location():
    created = [(s, m, r, op) for s, m, r, op in _operations() if "201" in op["responses"]]
    assert len(created) >= 7
    for service, method, route, op in created:
        assert "Location" in op["responses"]["201"].get("headers", {}), (service, method, route)


def test_request_schemas_say_what_the_server_enforces():
    import json

    def schemas(service: str) -> dict:
        return json.loads((ROOT / "docs" / "openapi" / f"{service}.json").read_text())["components"]["schemas"]

    referrals, providers, cohorts = schemas("referrals"), schemas("providers"), schemas("cohorts")
    person = referrals["PersonIn"]["properties"]
    assert person["crn"]["pattern"] == "^[A-Z][0-9]{6}$"
    assert person["noms_number"]["anyOf"][0]["pattern"] == "^[A-Z][0-9]{4}[A-Z]{2}$"
    assert person["pnc_number"]["anyOf"][0]["pattern"] == "^[0-9]{4}/[0-9]{7}[A-Z]$"
    for area in (referrals["ReferralCreate"]["properties"]["area"],
                 providers["EligibilityRequest"]["properties"]["area"],
                 cohorts["NominalUpsert"]["properties"]["area"],
                 cohorts["SelectionRunCreate"]["properties"]["area"]):
        assert "E08000029" in area["enum"]
    for model, reason in ((referrals["WithdrawalCreate"], "reason_code"),
                          (providers["DeclineRequest"], "reason_code")):
        assert model["if"]["properties"][reason] == {"const": "other"}
        assert model["then"]["required"] == ["comments"]
        assert "other" in json.dumps(model["properties"][reason]) or "$ref" in json.dumps(model["properties"][reason])
    assert "other" in providers["DeclineRequest"]["properties"]["reason_code"]["enum"]
    assert "achieved" in providers["CompleteRequest"]["properties"]["outcome"]["enum"]
    assert referrals["ReferralPublic"]["properties"]["submitted_at"]["format"] == "date-time"
    member = cohorts["MemberPublic"]["properties"]
    assert member["adopted_at"] == {**member["adopted_at"], "type": "string", "format": "date-time"}
    for service in ("cohorts", "notifications"):
        for name, model in schemas(service).items():
            for field, prop in model.get("properties", {}).items():
                assert {"type", "$ref", "anyOf", "allOf", "enum"} & set(prop), (service, name, field)

"""The published documents as a partner's tools take them (issue 15), every tool installed by
`make install` from the locks and run offline:
- each OpenAPI document (the five partner documents and the operator one) linted by Redocly
  CLI with `redocly.yaml` (its strict set: any finding is an error) — zero problems;
- the AsyncAPI document parsed by the AsyncAPI parser — zero errors;
- a client generated from each partner document by openapi-python-client with no warning, and
  a typed model for every response with a body.

The committed documents are the ones checked: tests/test_generated_docs.py and
test_asyncapi.py hold them equal to what the code serves."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SERVICES = ["referrals", "providers", "cohorts", "notifications", "insights"]
NODE_BIN = ROOT / "node_modules" / ".bin"
# No telemetry, no update check: nothing leaves the machine.
OFFLINE = {**os.environ, "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true",
           "NO_UPDATE_NOTIFIER": "1", "CI": "true"}

OPERATOR_DOCUMENT = """
import json
from referrals.app import create_app
from referrals.config import ReferralsSettings
app = create_app(ReferralsSettings(jwt_secret="openapi-export", environment="development"))
print(json.dumps(app.state.operator_openapi()))
"""


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=OFFLINE, check=False, **kwargs)


def _lint(documents: list[str], config: Path) -> None:
    done = _run([str(NODE_BIN / "redocly"), "lint", "--config", str(config), "--format", "stylish",
                 *documents])
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    # a finding is a `line:column  error|warning  rule  message` line (Node's own deprecation
    # notice about Node 20 is no finding)
    findings = re.findall(r"^\s*\d+:\d+\s+(?:error|warning)\s.*$", report, re.MULTILINE)
    assert re.search(r"API descriptions? (?:is|are) valid", report) and not findings, report


def test_every_openapi_document_lints_clean(tmp_path):
    _lint([str(DOCS / "openapi" / f"{s}.json") for s in SERVICES], ROOT / "redocly.yaml")


def test_the_operator_document_lints_clean(tmp_path):
    operator = _run([sys.executable, "-c", OPERATOR_DOCUMENT])
    assert operator.returncode == 0, operator.stderr
    (tmp_path / "operator.json").write_text(operator.stdout)
    # health and metrics take no input and need no token: they have no 4xx to document
    config = tmp_path / "redocly.yaml"
    config.write_text((ROOT / "redocly.yaml").read_text() + "  operation-4xx-response: off\n")
    _lint([str(tmp_path / "operator.json")], config)


def test_the_asyncapi_document_parses_without_errors():
    done = _run(["node", str(ROOT / "scripts" / "validate-asyncapi.mjs"), str(DOCS / "asyncapi.json")])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "parsed, 0 errors" in done.stdout, done.stdout


# A partner's generator config: no formatter hooks; the CSV import body taken as bytes (the
# generator has no text/csv body type; application/octet-stream is its type for raw bytes).
GENERATOR_CONFIG = "post_hooks: []\ncontent_type_overrides:\n  text/csv: application/octet-stream\n"


@pytest.mark.parametrize("service", SERVICES)
def test_a_typed_client_generates_from_each_document(service, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(GENERATOR_CONFIG)
    out = tmp_path / "client"
    done = _run([str(Path(sys.executable).parent / "openapi-python-client"), "generate",
                 "--path", str(DOCS / "openapi" / f"{service}.json"), "--meta", "none",
                 "--config", str(config), "--output-path", str(out)])
    report = done.stdout + done.stderr
    assert done.returncode == 0, report
    assert "Warning" not in report and "WARNING" not in report, report

    document = json.loads((DOCS / "openapi" / f"{service}.json").read_text())
    with_body = {op["operationId"] for item in document["paths"].values() for op in item.values()
                 if any(status.startswith("2") and answer.get("content")
                        for status, answer in op["responses"].items())}
    modules = {re.sub(r"(?<!^)(?=[A-Z])", "_", op_id).lower(): op_id for op_id in with_body}
    generated = {path.stem: path.read_text() for path in (out / "api").rglob("*.py")}
    assert set(modules) <= set(generated), set(modules) - set(generated)
    for module, op_id in modules.items():
        answer = re.search(r"def sync_detailed\(.*?\) -> Response\[(.*?)\]:", generated[module], re.DOTALL)
        assert answer, op_id
        assert "Any" not in answer.group(1), (op_id, answer.group(1))

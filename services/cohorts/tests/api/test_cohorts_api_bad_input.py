"""Bad input anywhere is a 4xx problem+json naming what is wrong, never a 500."""

from typing import Any

import httpx

from pathways_shared.testing import auth

SOLIHULL = "E08000029"
HEADERS = auth(["admin", "iom_panel", "police", "service"])

CASES: list[tuple[str, str, Any]] = [
    ("PUT", "/nominals/X600001", "not json"),
    ("PUT", "/nominals/X600001", []),
    ("PUT", "/nominals/X600001", {"area": 7, "date_of_birth": 1, "supervision_status": None}),
    (
        "PUT",
        "/nominals/X600001",
        {"area": SOLIHULL, "date_of_birth": "0001-01-01", "supervision_status": "licence"},
    ),
    ("PUT", "/nominals/%00", {}),
    ("POST", "/nominals/X600001/offences", {"offences": "many"}),
    ("POST", "/nominals/X600001/offences", {"offences": [{"offence_date": "x"}]}),
    ("POST", "/nominals/X600001/offences", {"offences": [{}] * 1001}),
    ("GET", "/nominals/X600001/offences?limit=0", None),
    ("GET", "/nominals/X600001/offences?limit=201", None),
    ("GET", "/nominals/X600001/assessment?as_of=1899-12-31", None),
    ("PUT", f"/policies/{SOLIHULL}", {"score": {"recency_bands": [{"max_days": "x"}]}}),
    ("PUT", f"/policies/{SOLIHULL}", {"prolific_bands": [{"min_age": 10**40, "min_offences": 1}]}),
    ("PUT", f"/policies/{SOLIHULL}", {"score": {"gravity_weights": {"sexual": 10**40}}}),
    ("PUT", f"/policies/{SOLIHULL}", {"capacities": {"fixed": 10**40}}),
    ("PUT", f"/policies/{SOLIHULL}", {"version": "latest"}),
    ("PUT", f"/policies/{SOLIHULL}", {"version": 5}),
    ("PUT", "/policies/nowhere", {}),
    ("POST", "/selection-runs", {"area": SOLIHULL, "as_of": "9999-12-31"}),
    ("POST", "/selection-runs", {"area": None, "as_of": None}),
    ("GET", "/selection-runs/does-not-exist", None),
    ("GET", "/selection-runs?limit=-1", None),
    (
        "POST",
        f"/cohorts/{SOLIHULL}/members",
        {"crn": "X600001", "cohort": "fixed", "decided_by": "a" * 201, "rationale": "b"},
    ),
    (
        "POST",
        f"/cohorts/{SOLIHULL}/members",
        {"crn": "X600099", "cohort": "fixed", "decided_by": "a", "rationale": "b"},
    ),
    (
        "POST",
        "/cohorts/nowhere/members",
        {"crn": "X600001", "cohort": "fixed", "decided_by": "a", "rationale": "b"},
    ),
    (
        "POST",
        f"/cohorts/{SOLIHULL}/members/X600001/deselect",
        {"reason": "desisted", "decided_by": "a"},
    ),
    (
        "POST",
        f"/cohorts/{SOLIHULL}/members/bad/move",
        {"cohort": "flex", "decided_by": "a", "rationale": "b"},
    ),
    ("GET", f"/cohorts/{SOLIHULL}/members?status=gone", None),
    ("GET", f"/cohorts/{SOLIHULL}/members?cohort=vip", None),
    ("GET", "/offence-imports/nope", None),
    ("GET", "/subject-access-requests?crn=", None),
]


async def test_bad_input_is_a_problem_not_a_crash(client: httpx.AsyncClient, seed: Any) -> None:
    # One app for every case (starting one per case would triple the suite's time).
    await seed("X600001")
    for method, path, body in CASES:
        kwargs: dict[str, Any] = {"headers": HEADERS}
        if isinstance(body, str):
            kwargs["content"] = body
            kwargs["headers"] = {**HEADERS, "Content-Type": "application/json"}
        elif body is not None:
            kwargs["json"] = body
        answer = await client.request(method, path, **kwargs)
        case = (method, path, answer.status_code, answer.text[:300])
        assert 400 <= answer.status_code < 500, case
        assert answer.headers["content-type"].startswith("application/problem+json"), case
        problem = answer.json()
        assert problem["status"] == answer.status_code and problem["title"], case
        if answer.status_code == 422:
            assert problem["errors"] and all(e["field"] for e in problem["errors"]), case


async def test_an_identifier_with_a_trailing_newline_is_refused(
    client: httpx.AsyncClient, seed: Any
) -> None:
    """`$` matches before a trailing newline: "S391957\\n" must not be a second nominal."""
    await seed("S391957")
    body = {"area": SOLIHULL, "date_of_birth": "1990-01-01", "supervision_status": "licence"}
    for path in ("/nominals/S391957%0A", "/nominals/S391957%0A/offences"):
        answer = await client.request(
            "PUT" if path.count("/") == 2 else "GET", path, headers=HEADERS,
            json=body if path.count("/") == 2 else None,
        )
        assert answer.status_code == 422, (path, answer.text)
        assert answer.json()["errors"][0]["field"] == "crn"
    pnc = {**body, "pnc_number": "2001/0000001A\n"}
    answer = await client.put("/nominals/S391957", headers=HEADERS, json=pnc)
    assert answer.status_code == 422, answer.text


async def test_a_path_parameter_that_does_not_match_is_a_422_naming_it(
    client: httpx.AsyncClient,
) -> None:
    """What the document says of `{crn}`, `{area}` and the ids, the server checks first."""
    cases = [
        ("GET", "/nominals/x123456", "crn"),
        ("GET", "/nominals/X1234567", "crn"),
        ("GET", "/nominals/X123456%0A/assessment", "crn"),
        ("GET", "/policies/nowhere", "area"),
        ("GET", "/policies/E08000029%0A", "area"),
        ("GET", f"/cohorts/{SOLIHULL}/members/X12", "crn"),
        ("GET", "/cohorts/E99999999/deselection-suggestions", "area"),
        ("GET", "/selection-runs/does-not-exist", "run_id"),
        ("GET", "/offence-imports/nope", "import_id"),
        ("GET", "/selection-runs?area=nowhere", "area"),
        ("GET", "/subject-access-requests?crn=X123456%0A", "crn"),
        # a number is not a date (lax parsing made `as_of=0` the 1st of January 1970)
        ("GET", "/nominals/X123456/assessment?as_of=0", "as_of"),
    ]
    for method, path, field in cases:
        answer = await client.request(method, path, headers=HEADERS)
        assert answer.status_code == 422, (path, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json"), path
        assert [e["field"] for e in answer.json()["errors"]] == [field], (path, answer.text)

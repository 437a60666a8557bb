from typing import Any

import httpx

SOLIHULL = "E08000029"


async def test_a_subject_access_request_answers_all_held_and_is_logged(
    client: httpx.AsyncClient, seed: Any, panel: dict, admin: dict, days_ago: Any
) -> None:
    await seed("X500001", dob="2004-01-01", offences=[(10, "burglary_domestic")] * 8)
    await client.post(
        f"/cohorts/{SOLIHULL}/members",
        json={"crn": "X500001", "cohort": "fixed", "decided_by": "Panel", "rationale": "Prolific"},
        headers=panel,
    )
    run = await client.post(
        "/selection-runs", json={"area": SOLIHULL, "as_of": days_ago(0)}, headers=panel
    )
    assert [c["crn"] for c in run.json()["candidates"]] == ["X500001"], run.text
    answer = await client.get("/subject-access-requests", params={"crn": "X500001"}, headers=admin)
    assert answer.status_code == 200, answer.text
    sar = answer.json()
    assert sar["nominal"]["crn"] == "X500001"
    assert len(sar["offences"]) == 8
    assert [m["cohort"] for m in sar["memberships"]] == ["fixed"]
    assert [r["candidate"][0]["cohort"] for r in sar["selection_runs"]] == ["fixed"]
    actions = [(e["action"], e["resource"]) for e in sar["access_log"]]
    assert ("collection", "/nominals/X500001") in actions
    assert ("alteration", f"/cohorts/{SOLIHULL}/members/X500001") in actions
    assert ("combination", f"/selection-runs/{run.json()['id']}") in actions

    again = (
        await client.get("/subject-access-requests", params={"crn": "X500001"}, headers=admin)
    ).json()
    assert ("disclosure", "/subject-access-requests?crn=X500001") in [
        (e["action"], e["resource"]) for e in again["access_log"]
    ]


async def test_only_admin_may_ask(client: httpx.AsyncClient, panel: dict, admin: dict) -> None:
    refused = await client.get("/subject-access-requests", params={"crn": "X500001"}, headers=panel)
    assert refused.status_code == 403
    bad = await client.get("/subject-access-requests", params={"crn": "nope"}, headers=admin)
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == ["crn"]
    missing = await client.get("/subject-access-requests", headers=admin)
    assert missing.status_code == 422

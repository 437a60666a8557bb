from typing import Any

import httpx

from pathways_shared.testing import auth, stream_events

SOLIHULL = "E08000029"
BIRMINGHAM = "E08000025"


async def test_a_run_ranks_candidates_and_lists_exclusions(
    client: httpx.AsyncClient, seed: Any, panel: dict, days_ago: Any
) -> None:
    await seed("A000001", dob="2004-01-01", offences=[(10, "burglary_domestic")] * 9)  # fixed 78
    await seed("A000002", offences=[(20, "drugs_supply")] * 6)  # flex, 30+12+18=60
    await seed("A000003", status="non_statutory", offences=[(5, "shoplifting")] * 5)  # free 30+10+5
    await seed("A000004", offences=[(400, "shoplifting")])  # score 2: nobody
    await seed("A000005", dob=days_ago(17 * 365), offences=[(3, "robbery_personal")] * 8)
    await seed("A000006", mappa=3, offences=[(3, "robbery_personal")] * 8)
    await seed("A000007", offences=[(10, "burglary_domestic")] * 9)  # same score, not prolific
    await seed("B000001", area=BIRMINGHAM, offences=[(1, "robbery_personal")] * 10)

    answer = await client.post(
        "/selection-runs", json={"area": SOLIHULL, "as_of": days_ago(0)}, headers=panel
    )
    assert answer.status_code == 201, answer.text
    run = answer.json()
    assert answer.headers["location"] == f"/selection-runs/{run['id']}"
    assert run["area"] == SOLIHULL and run["policy_version"] == 0
    assert [(c["crn"], c["cohort"], c["score"]) for c in run["candidates"]] == [
        ("A000001", "fixed", 78),
        ("A000007", "fixed", 78),
        ("A000002", "flex", 60),
        ("A000003", "free", 45),
    ]
    first = run["candidates"][0]
    assert (first["recency"], first["frequency"], first["gravity"]) == (30, 18, 30)
    assert first["prolific"] is True and first["within_capacity"] is True
    assert first["last_offence_date"] == days_ago(10)
    assert first["reasons"][0] == "candidate for fixed"
    assert [(e["crn"], e["reason"]) for e in run["excluded"]] == [
        ("A000005", "under_18"),
        ("A000006", "managed_under_mappa"),
    ]

    again = await client.get(
        f"/selection-runs/{run['id']}", headers=auth("police", areas=[SOLIHULL])
    )
    assert again.status_code == 200
    assert again.json()["candidates"] == run["candidates"]


async def test_the_same_date_gives_the_same_run(
    client: httpx.AsyncClient, seed: Any, panel: dict, days_ago: Any
) -> None:
    for i in range(6):
        await seed(f"C00000{i}", offences=[(10 + i, "theft_from_person")] * (i + 4))
    body = {"area": SOLIHULL, "as_of": days_ago(2)}
    first = (await client.post("/selection-runs", json=body, headers=panel)).json()
    second = (await client.post("/selection-runs", json=body, headers=panel)).json()
    assert first["id"] != second["id"]
    assert first["candidates"] == second["candidates"]
    assert first["excluded"] == second["excluded"]


async def test_capacity_comes_from_the_area_policy_and_the_run_records_its_version(
    client: httpx.AsyncClient, seed: Any, panel: dict, admin: dict, days_ago: Any
) -> None:
    for i in range(3):
        await seed(f"D00000{i}", offences=[(5, "burglary_domestic")] * (8 + i))
    put = await client.put(
        f"/policies/{SOLIHULL}", json={"capacities": {"fixed": 2}}, headers=admin
    )
    assert put.status_code == 200, put.text
    run = (
        await client.post(
            "/selection-runs", json={"area": SOLIHULL, "as_of": days_ago(0)}, headers=panel
        )
    ).json()
    assert run["policy_version"] == 1
    assert [(c["crn"], c["within_capacity"]) for c in run["candidates"]] == [
        ("D000002", True),
        ("D000001", True),
        ("D000000", False),
    ]
    assert run["counts"]["fixed"] == {"candidates": 3, "within_capacity": 2}


async def test_a_run_publishes_its_completion(
    client: httpx.AsyncClient, seed: Any, panel: dict, days_ago: Any, nc: Any, subject_prefix: str
) -> None:
    await seed("E000001", offences=[(5, "burglary_domestic")] * 8)
    run = (
        await client.post(
            "/selection-runs", json={"area": SOLIHULL, "as_of": days_ago(0)}, headers=panel
        )
    ).json()
    events = await stream_events(nc.jetstream(), "COHORTS", subject_prefix, expect=1)
    (event,) = [e for e in events if e.event_type == "cohorts.selection-run.completed"]
    assert event.additional_information["runId"] == run["id"]
    assert event.additional_information["candidates"] == {"fixed": 1, "flex": 0, "free": 0}
    assert event.detail_url.endswith(f"/selection-runs/{run['id']}")


async def test_runs_are_scoped_to_the_callers_areas(
    client: httpx.AsyncClient, seed: Any, panel: dict, days_ago: Any
) -> None:
    body = {"area": BIRMINGHAM, "as_of": days_ago(0)}
    refused = await client.post("/selection-runs", json=body, headers=panel)
    assert refused.status_code == 403
    assert refused.headers["content-type"].startswith("application/problem+json")
    run = (
        await client.post(
            "/selection-runs", json={"area": SOLIHULL, "as_of": days_ago(0)}, headers=panel
        )
    ).json()
    other = auth("police", areas=[BIRMINGHAM])
    assert (await client.get(f"/selection-runs/{run['id']}", headers=other)).status_code == 404
    national = auth("police")
    assert (await client.get(f"/selection-runs/{run['id']}", headers=national)).status_code == 200


async def test_only_the_panel_runs_a_selection(
    client: httpx.AsyncClient, police: dict, days_ago: Any
) -> None:
    body = {"area": SOLIHULL, "as_of": days_ago(0)}
    assert (await client.post("/selection-runs", json=body, headers=police)).status_code == 403
    assert (await client.post("/selection-runs", json=body)).status_code == 401


async def test_bad_run_requests_name_the_field(
    client: httpx.AsyncClient, panel: dict, days_ago: Any
) -> None:
    cases = [
        ({"area": SOLIHULL, "as_of": days_ago(-1)}, "as_of"),
        ({"area": SOLIHULL, "as_of": "24/11/2026"}, "as_of"),
        ({"area": SOLIHULL, "as_of": "0001-01-01"}, "as_of"),
        ({"area": "E99999999", "as_of": days_ago(0)}, "area"),
        ({"area": SOLIHULL}, "as_of"),
        ({"area": SOLIHULL, "as_of": days_ago(0), "colour": "red"}, "colour"),
    ]
    for body, field in cases:
        answer = await client.post("/selection-runs", json=body, headers=panel)
        assert answer.status_code == 422, (body, answer.text)
        assert field in [e["field"] for e in answer.json()["errors"]], answer.json()


async def test_a_number_is_not_an_as_of_date(client: httpx.AsyncClient, panel: dict) -> None:
    r = await client.post("/selection-runs", json={"area": SOLIHULL, "as_of": 0}, headers=panel)
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["as_of"]

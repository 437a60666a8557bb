from datetime import datetime, timedelta
from typing import Any

import httpx

from pathways_shared.testing import auth, stream_events

SOLIHULL = "E08000029"
BIRMINGHAM = "E08000025"
PERSONAL_KEYS = {"dateOfBirth", "date_of_birth", "name", "givenName", "familyName", "email"}


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def adopt(
    client: httpx.AsyncClient, headers: dict, crn: str, cohort: str = "fixed"
) -> httpx.Response:
    return await client.post(
        f"/cohorts/{SOLIHULL}/members",
        json={
            "crn": crn,
            "cohort": cohort,
            "decided_by": "DS Example",
            "rationale": "Panel 12 Nov",
        },
        headers=headers,
    )


async def test_adoption_records_the_decision_and_the_review_date(
    client: httpx.AsyncClient, seed: Any, panel: dict
) -> None:
    await seed("X000001", dob="2004-01-01", offences=[(10, "burglary_domestic")] * 8)
    answer = await adopt(client, panel, "X000001")
    assert answer.status_code == 201, answer.text
    assert answer.headers["location"] == f"/cohorts/{SOLIHULL}/members/X000001"
    member = answer.json()
    assert (member["crn"], member["cohort"], member["status"]) == ("X000001", "fixed", "active")
    assert (member["adopted_by"], member["rationale"]) == ("DS Example", "Panel 12 Nov")
    assert member["met_criteria"] is True
    assert member["adopted_at"].endswith("Z") and member["review_due_at"].endswith("Z")
    assert when(member["review_due_at"]) - when(member["adopted_at"]) == timedelta(weeks=12)


async def test_the_panel_may_adopt_someone_who_does_not_meet_the_criteria(
    client: httpx.AsyncClient, seed: Any, panel: dict
) -> None:
    await seed("X000002", status="non_statutory", offences=[(400, "shoplifting")])
    member = (await adopt(client, panel, "X000002", "free")).json()
    assert member["met_criteria"] is False
    assert member["criteria_reasons"]


async def test_adoption_publishes_a_selected_event_without_personal_data(
    client: httpx.AsyncClient, seed: Any, panel: dict, nc: Any, subject_prefix: str
) -> None:
    await seed("X000003", dob="2004-01-01", offences=[(10, "burglary_domestic")] * 8)
    member = (await adopt(client, panel, "X000003")).json()
    events = await stream_events(nc.jetstream(), "COHORTS", subject_prefix, expect=1)
    (event,) = events
    assert event.event_type == "cohorts.member.selected"
    assert event.crn == "X000003"
    info = event.additional_information
    assert info["area"] == SOLIHULL and info["cohort"] == "fixed"
    assert info["reviewDueAt"] == member["review_due_at"].replace("+00:00", "Z")
    assert isinstance(info["score"], int)
    assert not PERSONAL_KEYS & set(info)


async def test_a_member_cannot_be_adopted_twice(
    client: httpx.AsyncClient, seed: Any, panel: dict
) -> None:
    await seed("X000004", offences=[(10, "burglary_domestic")] * 8)
    assert (await adopt(client, panel, "X000004")).status_code == 201
    again = await adopt(client, panel, "X000004", "flex")
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")


async def test_deselection_and_moves(
    client: httpx.AsyncClient, seed: Any, panel: dict, nc: Any, subject_prefix: str
) -> None:
    await seed("X000005", offences=[(10, "burglary_domestic")] * 8 + [(12, "drugs_supply")])
    await adopt(client, panel, "X000005")
    moved = await client.post(
        f"/cohorts/{SOLIHULL}/members/X000005/move",
        json={"cohort": "flex", "decided_by": "Panel", "rationale": "Now supplying"},
        headers=panel,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["cohort"] == "flex"
    listed = (await client.get(f"/cohorts/{SOLIHULL}/members", headers=panel)).json()
    assert [(m["crn"], m["cohort"]) for m in listed["data"]] == [("X000005", "flex")]
    everyone = await client.get(
        f"/cohorts/{SOLIHULL}/members", params={"status": "all"}, headers=panel
    )
    assert [m["status"] for m in everyone.json()["data"]] == ["deselected", "active"]

    gone = await client.post(
        f"/cohorts/{SOLIHULL}/members/X000005/deselect",
        json={"reason": "moved_out_of_area", "decided_by": "Panel"},
        headers=panel,
    )
    assert gone.status_code == 200, gone.text
    assert (gone.json()["status"], gone.json()["deselection_reason"]) == (
        "deselected",
        "moved_out_of_area",
    )
    again = await client.post(
        f"/cohorts/{SOLIHULL}/members/X000005/deselect",
        json={"reason": "desisted", "decided_by": "Panel"},
        headers=panel,
    )
    assert again.status_code == 404
    events = await stream_events(nc.jetstream(), "COHORTS", subject_prefix, expect=4)
    assert [(e.event_type, e.additional_information.get("reason")) for e in events] == [
        ("cohorts.member.selected", None),
        ("cohorts.member.deselected", "panel_decision"),
        ("cohorts.member.selected", None),
        ("cohorts.member.deselected", "moved_out_of_area"),
    ]


async def test_members_list_by_cohort(
    client: httpx.AsyncClient, seed: Any, panel: dict, police: dict
) -> None:
    for crn, cohort in [("X000011", "fixed"), ("X000012", "flex"), ("X000013", "fixed")]:
        await seed(crn)
        assert (await adopt(client, panel, crn, cohort)).status_code == 201
    fixed = await client.get(
        f"/cohorts/{SOLIHULL}/members", params={"cohort": "fixed"}, headers=police
    )
    assert [m["crn"] for m in fixed.json()["data"]] == ["X000011", "X000013"]
    page = await client.get(f"/cohorts/{SOLIHULL}/members", params={"limit": 2}, headers=police)
    assert len(page.json()["data"]) == 2 and page.json()["next_cursor"]
    rest = await client.get(
        f"/cohorts/{SOLIHULL}/members",
        params={"limit": 2, "cursor": page.json()["next_cursor"]},
        headers=police,
    )
    assert [m["crn"] for m in rest.json()["data"]] == ["X000013"]
    assert rest.json()["next_cursor"] is None


async def test_members_are_scoped_to_the_callers_areas(
    client: httpx.AsyncClient, seed: Any, panel: dict
) -> None:
    await seed("X000021")
    outsider = auth("iom_panel", areas=[BIRMINGHAM])
    assert (await adopt(client, outsider, "X000021")).status_code == 403
    assert (
        await client.get(f"/cohorts/{SOLIHULL}/members", headers=auth("police", areas=[BIRMINGHAM]))
    ).status_code == 403
    assert (await adopt(client, auth("police", areas=[SOLIHULL]), "X000021")).status_code == 403


async def test_bad_decisions_name_the_field(
    client: httpx.AsyncClient, seed: Any, panel: dict
) -> None:
    await seed("X000031")
    cases = [
        ({"crn": "X000031", "cohort": "vip", "decided_by": "a", "rationale": "b"}, "cohort"),
        ({"crn": "bad", "cohort": "fixed", "decided_by": "a", "rationale": "b"}, "crn"),
        ({"crn": "X000031", "cohort": "fixed", "decided_by": " ", "rationale": "b"}, "decided_by"),
        ({"crn": "X000031", "cohort": "fixed", "decided_by": "a"}, "rationale"),
        ({"crn": "X999999", "cohort": "fixed", "decided_by": "a", "rationale": "b"}, "crn"),
    ]
    for body, field in cases:
        answer = await client.post(f"/cohorts/{SOLIHULL}/members", json=body, headers=panel)
        assert answer.status_code == 422, (body, answer.text)
        assert field in [e["field"] for e in answer.json()["errors"]], answer.json()
    await adopt(client, panel, "X000031")
    bad = await client.post(
        f"/cohorts/{SOLIHULL}/members/X000031/deselect",
        json={"reason": "bored", "decided_by": "a"},
        headers=panel,
    )
    assert bad.status_code == 422
    assert [e["field"] for e in bad.json()["errors"]] == ["reason"]


async def test_an_under_18_cannot_be_adopted(
    client: httpx.AsyncClient, seed: Any, panel: dict, days_ago: Any
) -> None:
    await seed("X000041", dob=days_ago(16 * 365))
    answer = await adopt(client, panel, "X000041")
    assert answer.status_code == 422
    assert [e["field"] for e in answer.json()["errors"]] == ["crn"]


async def test_concurrent_adoptions_adopt_once(
    client: httpx.AsyncClient, seed: Any, panel: dict
) -> None:
    import asyncio

    await seed("X000051")
    answers = await asyncio.gather(*(adopt(client, panel, "X000051") for _ in range(5)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201, 409, 409, 409, 409], statuses


async def test_a_forged_cursor_is_a_422_on_cursor(client: httpx.AsyncClient, panel: dict) -> None:
    from pathways_shared.pagination import encode_cursor

    for cursor in ("!!!", encode_cursor(["X000001", "not a time", "id"]), encode_cursor([1])):
        answer = await client.get(
            f"/cohorts/{SOLIHULL}/members", params={"cursor": cursor}, headers=panel
        )
        assert answer.status_code == 422, answer.text
        assert [e["field"] for e in answer.json()["errors"]] == ["cursor"]
    runs = await client.get(
        "/selection-runs", params={"cursor": encode_cursor(["yesterday", "x"])}, headers=panel
    )
    assert runs.status_code == 422


async def test_a_nominal_of_another_area_is_answered_as_absent(
    client: httpx.AsyncClient, seed: Any
) -> None:
    """Adopting another area's nominal must not say that it exists, nor where."""
    await seed("X000777", area=BIRMINGHAM)
    panel = auth("iom_panel", areas=[SOLIHULL])
    hidden = await adopt(client, panel, "X000777")
    absent = await adopt(client, panel, "X000778")
    assert hidden.status_code == absent.status_code == 422, hidden.text
    assert BIRMINGHAM not in hidden.text
    assert hidden.json()["detail"].replace("X000777", "X") == absent.json()["detail"].replace(
        "X000778", "X"
    )

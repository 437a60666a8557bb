"""The review scheduler: each member's review comes every 12 weeks after adoption, with a
deselection suggestion when they have no recorded offence in 12 months."""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import update

from cohorts import service
from cohorts.app import create_app
from cohorts.models import MembershipRecord
from pathways_shared.db import transaction
from pathways_shared.testing import running, stream_events, wait_until

SOLIHULL = "E08000029"


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def adopt(client: httpx.AsyncClient, panel: dict, crn: str) -> dict:
    answer = await client.post(
        f"/cohorts/{SOLIHULL}/members",
        json={"crn": crn, "cohort": "free", "decided_by": "Panel", "rationale": "Nominated"},
        headers=panel,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


async def test_reviews_come_due_on_the_cycle_with_suggestions(
    app: Any,
    client: httpx.AsyncClient,
    seed: Any,
    panel: dict,
    nc: Any,
    subject_prefix: str,
) -> None:
    await seed("X400001", offences=[(10, "shoplifting")])
    await seed("X400002", offences=[(500, "shoplifting")])
    await seed("X400003")
    members = [await adopt(client, panel, crn) for crn in ("X400001", "X400002", "X400003")]
    due = parse(members[0]["review_due_at"])
    base_url = app.state.settings.base_url

    async with transaction(app.state.sessionmaker) as session:
        early = await service.review_due_members(
            session, now=due - timedelta(minutes=5), base_url=base_url
        )
    assert early == 0
    async with transaction(app.state.sessionmaker) as session:
        assert (
            await service.review_due_members(
                session, now=due + timedelta(seconds=1), base_url=base_url
            )
            == 3
        )
    async with transaction(app.state.sessionmaker) as session:
        assert (
            await service.review_due_members(
                session, now=due + timedelta(seconds=2), base_url=base_url
            )
            == 0
        )

    events = await stream_events(nc.jetstream(), "COHORTS", subject_prefix, expect=6)
    reviews = {
        e.crn: e.additional_information
        for e in events
        if e.event_type == "cohorts.member.review-due"
    }
    assert {crn: info["suggestDeselection"] for crn, info in reviews.items()} == {
        "X400001": False,
        "X400002": True,
        "X400003": True,
    }
    assert all(
        set(info) == {"area", "cohort", "reviewDueAt", "suggestDeselection"}
        for info in reviews.values()
    )
    listed = (await client.get(f"/cohorts/{SOLIHULL}/members", headers=panel)).json()["data"]
    for member in listed:
        assert parse(member["review_due_at"]) - parse(member["adopted_at"]) == timedelta(weeks=24)


async def test_deselection_suggestions_on_demand(
    client: httpx.AsyncClient, seed: Any, panel: dict
) -> None:
    await seed("X400011", offences=[(10, "shoplifting")])
    await seed("X400012", offences=[(400, "shoplifting")])
    for crn in ("X400011", "X400012"):
        await adopt(client, panel, crn)
    answer = await client.get(f"/cohorts/{SOLIHULL}/deselection-suggestions", headers=panel)
    assert answer.status_code == 200, answer.text
    assert [s["crn"] for s in answer.json()["data"]] == ["X400012"]


async def test_the_scheduler_publishes_reviews_as_they_come(
    settings: Any,
    client: httpx.AsyncClient,
    sessionmaker: Any,
    seed: Any,
    panel: dict,
    nc: Any,
    subject_prefix: str,
) -> None:
    await seed("X400021", offences=[(10, "shoplifting")])
    await adopt(client, panel, "X400021")
    async with transaction(sessionmaker) as session:
        await session.exec(
            update(MembershipRecord)
            .where(MembershipRecord.crn == "X400021")
            .values(review_due_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    eager = create_app(settings.model_copy(update={"review_scan_seconds": 0.1}))
    async with running(eager):

        async def reviewed() -> list[Any]:
            events = await stream_events(nc.jetstream(), "COHORTS", subject_prefix)
            return [e for e in events if e.event_type == "cohorts.member.review-due"]

        (event,) = await wait_until(reviewed)
    assert event.crn == "X400021"
    assert event.additional_information["suggestDeselection"] is False

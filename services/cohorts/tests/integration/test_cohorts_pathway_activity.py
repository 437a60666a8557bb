"""Referral and provider events about a current member's needs become
`cohorts.member.pathway-activity` (pathway, status, programme only); nobody else's do."""

import uuid
from typing import Any

import httpx
from sqlalchemy import func, select

from cohorts.models import ReferralNeedRecord
from pathways_shared.events import make_event, subject_for
from pathways_shared.infra_models import DeadLetter, ProcessedEvent
from pathways_shared.testing import stream_events, wait_until

SOLIHULL = "E08000029"


async def publish(nc: Any, prefix: str, event: Any) -> None:
    await nc.jetstream().publish(
        subject_for(event.event_type, prefix),
        event.to_json(),
        headers={"Nats-Msg-Id": str(event.id)},
    )


def submitted(crn: str, need_id: str, pathway: str = "accommodation") -> Any:
    return make_event(
        "referrals.referral.submitted",
        {
            "referralId": str(uuid.uuid4()),
            "area": SOLIHULL,
            "needs": [{"needId": need_id, "pathway": pathway, "complexity": "medium", "flags": []}],
            "sex": "male",
            "ageOnSubmission": 30,
            "supervisionStatus": "licence",
            "rosh": "medium",
            "mappaLevel": None,
        },
        crn=crn,
    )


def allocated(crn: str, need_id: str) -> Any:
    return make_event(
        "providers.referral.allocated",
        {
            "referralId": str(uuid.uuid4()),
            "needId": need_id,
            "providerReferralId": str(uuid.uuid4()),
            "serviceCode": "CRS-ACC-M",
            "providerCode": "NACRO",
            "programme": "CRS",
            "acknowledgeBy": "2026-11-26T23:59:59Z",
            "respondBy": "2026-12-01T23:59:59Z",
        },
        crn=crn,
    )


async def count(app: Any, model: Any) -> int:
    async with app.state.sessionmaker() as session:
        return int((await session.exec(select(func.count()).select_from(model))).one()[0])


async def test_only_members_pathway_activity_is_published(
    app: Any, client: httpx.AsyncClient, seed: Any, panel: dict, nc: Any, subject_prefix: str
) -> None:
    await seed("X300001")
    await seed("X300002")
    adopted = await client.post(
        f"/cohorts/{SOLIHULL}/members",
        json={"crn": "X300001", "cohort": "free", "decided_by": "Panel", "rationale": "Nominated"},
        headers=panel,
    )
    assert adopted.status_code == 201
    member_need, other_need = str(uuid.uuid4()), str(uuid.uuid4())
    first = submitted("X300001", member_need)
    await publish(nc, subject_prefix, first)
    await publish(nc, subject_prefix, submitted("X300002", other_need, "health"))
    await publish(nc, subject_prefix, allocated("X300001", member_need))
    await publish(nc, subject_prefix, allocated("X300002", other_need))
    # The same event again, past the stream's de-duplication: the consumer ignores it.
    await nc.jetstream().publish(subject_for(first.event_type, subject_prefix), first.to_json())
    # A marker behind it on the same stream: once it is processed, the repeat has been too.
    await publish(nc, subject_prefix, submitted("X300002", str(uuid.uuid4()), "health"))

    async def activity() -> list[Any]:
        events = await stream_events(nc.jetstream(), "COHORTS", subject_prefix)
        found = [e for e in events if e.event_type == "cohorts.member.pathway-activity"]
        return found if len(found) >= 2 else []

    found = await wait_until(activity)
    await wait_until(lambda: _processed_at_least(app, 5))  # the repeat adds no row
    events = await stream_events(nc.jetstream(), "COHORTS", subject_prefix)
    found = [e for e in events if e.event_type == "cohorts.member.pathway-activity"]
    assert [(e.crn, e.additional_information) for e in found] == [
        (
            "X300001",
            {
                "area": SOLIHULL,
                "cohort": "free",
                "pathway": "accommodation",
                "status": "submitted",
                "programme": None,
            },
        ),
        (
            "X300001",
            {
                "area": SOLIHULL,
                "cohort": "free",
                "pathway": "accommodation",
                "status": "allocated",
                "programme": "CRS",
            },
        ),
    ]
    assert await count(app, ReferralNeedRecord) == 3


async def _processed_at_least(app: Any, n: int) -> bool:
    return await count(app, ProcessedEvent) >= n


async def test_an_event_that_cannot_be_read_goes_to_dead_letters(
    app: Any, nc: Any, subject_prefix: str
) -> None:
    broken = make_event("referrals.referral.submitted", {"needs": "none"}, crn="X300003")
    await publish(nc, subject_prefix, broken)
    await nc.jetstream().publish(f"{subject_prefix}providers.referral.accepted", b"{not json")
    await publish(nc, subject_prefix, submitted("X300003", str(uuid.uuid4()), "gardening"))
    await publish(nc, subject_prefix, submitted("not-a-crn", str(uuid.uuid4())))

    async def dead() -> bool:
        return await count(app, DeadLetter) >= 4

    await wait_until(dead)

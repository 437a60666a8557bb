"""Provider events consumed from JetStream keep each need's status true: in order, repeated,
out of order, malformed. Real PostgreSQL and NATS; the events are published as the providers
service would, with `Nats-Msg-Id` = event id."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import func
from sqlmodel import select

from pathways_shared.events import Event, iso_z, make_event
from pathways_shared.infra_models import DeadLetter, ProcessedEvent
from pathways_shared.testing import auth, london_today, wait_until

# `now` injected into the service (the replay test); the events below are timed from each
# referral's own submission instead, so they follow it on whatever day the clock shows.
T0 = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


async def submit(client: Any, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/referrals", json=body, headers=auth("probation"))
    assert response.status_code == 201, response.text
    return response.json()


def provider_event(
    kind: str,
    referral: dict[str, Any],
    *,
    minutes: int,
    provider_referral_id: UUID | None,
    need_index: int = 0,
    **extra: Any,
) -> Event:
    """A provider event `minutes` after the referral was submitted (on the clock it was)."""
    submitted = datetime.fromisoformat(referral["submitted_at"])
    info: dict[str, Any] = {
        "referralId": referral["id"],
        "needId": referral["needs"][need_index]["id"],
    }
    if provider_referral_id is not None:
        info["providerReferralId"] = str(provider_referral_id)
    if kind == "allocated":
        info |= {
            "serviceCode": "CRS-ACC-M",
            "providerCode": "NACRO",
            "programme": "CRS",
            "acknowledgeBy": iso_z(submitted + timedelta(days=2)),
            "respondBy": iso_z(submitted + timedelta(days=7)),
        }
    info |= extra
    return make_event(
        f"providers.referral.{kind}",
        info,
        crn=referral["person"]["crn"],
        occurred_at=submitted + timedelta(minutes=minutes),
    )


async def publish(js: Any, prefix: str, event: Event) -> None:
    await js.publish(
        f"{prefix}{event.event_type}", event.to_json(), headers={"Nats-Msg-Id": str(event.id)}
    )


async def processed(sessionmaker: Any) -> int:
    async with sessionmaker() as session:
        handled = await session.scalar(select(func.count()).select_from(ProcessedEvent))
        dead = await session.scalar(select(func.count()).select_from(DeadLetter))
        return handled + dead


async def publish_all_and_wait(js, prefix, sessionmaker, events: list[Event]) -> None:
    before = await processed(sessionmaker)
    for event in events:
        await publish(js, prefix, event)
    distinct = len({e.id for e in events})
    await wait_until(lambda: _at_least(sessionmaker, before + distinct))


async def _at_least(sessionmaker, count: int) -> bool:
    return await processed(sessionmaker) >= count


async def read(client: Any, referral: dict[str, Any]) -> dict[str, Any]:
    response = await client.get(f"/referrals/{referral['id']}", headers=auth("probation"))
    return response.json()


PR1 = uuid.UUID(int=101)
PR2 = uuid.UUID(int=102)


async def test_an_allocation_updates_the_need_and_its_history(
    client, referral_body, js, subject_prefix, sessionmaker
):
    referral = await submit(client, referral_body())
    event = provider_event("allocated", referral, minutes=1, provider_referral_id=PR1)
    await publish_all_and_wait(js, subject_prefix, sessionmaker, [event])
    need = (await read(client, referral))["needs"][0]
    assert need["status"] == "allocated"
    assert (need["service_code"], need["provider_code"], need["programme"]) == (
        "CRS-ACC-M",
        "NACRO",
        "CRS",
    )
    submitted = datetime.fromisoformat(referral["submitted_at"])
    assert need["allocated_at"] == iso_z(submitted + timedelta(minutes=1))
    history = (
        await client.get(f"/referrals/{referral['id']}/history", headers=auth("probation"))
    ).json()["data"]
    assert (history[-1]["event"], history[-1]["actor"]) == ("allocated", "provider:NACRO")


@pytest.mark.parametrize(
    ("steps", "status", "reason"),
    [
        (
            [("allocated", 1, PR1, {}), ("acknowledged", 2, PR1, {}), ("accepted", 3, PR1, {})],
            "accepted",
            None,
        ),
        (
            [
                ("allocated", 1, PR1, {}),
                ("accepted", 2, PR1, {}),
                ("started", 3, PR1, {}),
                ("completed", 4, PR1, {"outcome": "achieved"}),
            ],
            "completed",
            "achieved",
        ),
        (
            [("allocated", 1, PR1, {}), ("declined", 2, PR1, {"reasonCode": "capacity"})],
            "declined",
            "capacity",
        ),
        (
            [
                ("allocated", 1, PR1, {}),
                ("declined", 2, PR1, {"reasonCode": "capacity"}),
                ("unallocated", 2, None, {"reason": "no eligible service left"}),
            ],
            "unallocated",
            "no eligible service left",
        ),
        # Out of order: acknowledged after accepted is ignored.
        (
            [("allocated", 1, PR1, {}), ("accepted", 3, PR1, {}), ("acknowledged", 2, PR1, {})],
            "accepted",
            None,
        ),
        # Out of order: the re-route arrives before the decline it follows.
        (
            [
                ("allocated", 3, PR2, {}),
                ("allocated", 1, PR1, {}),
                ("declined", 2, PR1, {"reasonCode": "capacity"}),
            ],
            "allocated",
            None,
        ),
        # A missed deadline changes no status.
        (
            [("allocated", 1, PR1, {}), ("deadline-missed", 9, PR1, {"deadline": "acknowledge"})],
            "allocated",
            None,
        ),
    ],
)
async def test_need_transitions_from_provider_events(
    client, referral_body, js, subject_prefix, sessionmaker, steps, status, reason
):
    referral = await submit(client, referral_body())
    events = [
        provider_event(kind, referral, minutes=m, provider_referral_id=pr, **extra)
        for kind, m, pr, extra in steps
    ]
    await publish_all_and_wait(js, subject_prefix, sessionmaker, events)
    need = (await read(client, referral))["needs"][0]
    assert (need["status"], need["status_reason"]) == (status, reason)


async def test_the_same_event_twice_has_one_effect(
    client, referral_body, js, subject_prefix, sessionmaker
):
    referral = await submit(client, referral_body())
    allocated = provider_event("allocated", referral, minutes=1, provider_referral_id=PR1)
    accepted = provider_event("accepted", referral, minutes=2, provider_referral_id=PR1)
    await publish_all_and_wait(js, subject_prefix, sessionmaker, [allocated, accepted])
    # Redelivered under a new message id (so JetStream keeps it): the consumer's record of
    # processed ids absorbs it.
    before = await processed(sessionmaker)
    await js.publish(
        f"{subject_prefix}{accepted.event_type}",
        accepted.to_json(),
        headers={"Nats-Msg-Id": f"{accepted.id}-again"},
    )
    marker = provider_event("started", referral, minutes=3, provider_referral_id=PR1)
    await publish_all_and_wait(js, subject_prefix, sessionmaker, [marker])
    assert await processed(sessionmaker) == before + 1
    history = (
        await client.get(f"/referrals/{referral['id']}/history", headers=auth("probation"))
    ).json()["data"]
    assert [h["event"] for h in history].count("accepted") == 1
    assert (await read(client, referral))["needs"][0]["status"] == "in_progress"


async def test_a_referral_closes_when_every_need_has_ended(
    client, referral_body, js, subject_prefix, sessionmaker
):
    body = referral_body(
        needs=[
            {"pathway": "accommodation", "complexity": "low"},
            {"pathway": "health", "complexity": "low"},
        ]
    )
    referral = await submit(client, body)
    events = [
        provider_event("unallocated", referral, minutes=1, provider_referral_id=None, reason="x"),
        provider_event(
            "unallocated", referral, minutes=1, provider_referral_id=None, need_index=1, reason="y"
        ),
    ]
    await publish_all_and_wait(js, subject_prefix, sessionmaker, events)
    current = await read(client, referral)
    assert current["status"] == "closed"
    withdraw = await client.post(
        f"/referrals/{referral['id']}/withdraw",
        json={"reason_code": "duplicate"},
        headers=auth("probation"),
    )
    assert withdraw.status_code == 409


async def test_a_withdrawn_need_ignores_later_provider_events(
    client, referral_body, js, subject_prefix, sessionmaker
):
    referral = await submit(client, referral_body())
    await client.post(
        f"/referrals/{referral['id']}/withdraw",
        json={"reason_code": "duplicate"},
        headers=auth("probation"),
    )
    late = provider_event("allocated", referral, minutes=1, provider_referral_id=PR1)
    await publish_all_and_wait(js, subject_prefix, sessionmaker, [late])
    need = (await read(client, referral))["needs"][0]
    assert (need["status"], need["service_code"]) == ("withdrawn", None)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda info: {**info, "needId": "not-a-uuid"},
        lambda info: {k: v for k, v in info.items() if k != "providerReferralId"},
        lambda info: {**info, "referralId": str(uuid.UUID(int=404))},
        lambda info: {**info, "needId": str(uuid.UUID(int=404))},
    ],
    ids=["bad need id", "no provider referral", "unknown referral", "unknown need"],
)
async def test_events_that_can_never_apply_go_to_the_dead_letter_store(
    client, referral_body, js, subject_prefix, sessionmaker, mangle
):
    referral = await submit(client, referral_body())
    good = provider_event("accepted", referral, minutes=1, provider_referral_id=PR1)
    bad = good.model_copy(
        update={"id": uuid.uuid4(), "additional_information": mangle(good.additional_information)}
    )
    await publish_all_and_wait(js, subject_prefix, sessionmaker, [bad])
    async with sessionmaker() as session:
        dead = list(await session.exec(select(DeadLetter)))
    assert [d.event_id for d in dead] == [str(bad.id)]
    # The stream keeps flowing: a good event after it is applied.
    await publish_all_and_wait(js, subject_prefix, sessionmaker, [good])
    assert (await read(client, referral))["needs"][0]["status"] == "accepted"


async def test_an_unparseable_message_is_dead_lettered_and_the_stream_flows_on(
    client, referral_body, js, subject_prefix, sessionmaker
):
    referral = await submit(client, referral_body())
    before = await processed(sessionmaker)
    await js.publish(f"{subject_prefix}providers.referral.accepted", b"{nonsense")
    await wait_until(lambda: _at_least(sessionmaker, before + 1))
    good = provider_event("allocated", referral, minutes=1, provider_referral_id=PR1)
    await publish_all_and_wait(js, subject_prefix, sessionmaker, [good])
    assert (await read(client, referral))["needs"][0]["status"] == "allocated"


async def test_a_provider_event_is_logged_as_an_alteration(
    client, referral_body, js, subject_prefix, sessionmaker
):
    from pathways_shared.infra_models import AccessLog

    referral = await submit(client, referral_body())
    event = provider_event("allocated", referral, minutes=1, provider_referral_id=PR1)
    await publish_all_and_wait(js, subject_prefix, sessionmaker, [event])
    async with sessionmaker() as session:
        rows = list(await session.exec(select(AccessLog).order_by(AccessLog.id)))
    assert [(r.action, r.actor) for r in rows][-1] == ("alteration", "providers-service")
    assert rows[-1].purpose == "provider event providers.referral.allocated"


async def test_a_listed_referral_is_the_same_document_as_its_read(
    client, referral_body, js, subject_prefix, sessionmaker
):
    """Listing builds its documents straight from the rows (`referral_document`); reading one
    goes through the domain and `ReferralPublic`. Every field must come out the same."""
    in_three_months = (london_today() + timedelta(days=91)).isoformat()  # release is ahead
    busy = await submit(
        client,
        referral_body(
            source_reference="LIST-1",
            person={**referral_body()["person"], "needs_interpreter": True,
                    "interpreter_language": "Polish", "pnc_number": "2001/0000123Z"},
            supervision={"status": "custody_pre_release", "expected_release_date": in_three_months},
            risk={"rosh": "high", "mappa_level": 1},
            needs=[
                {"pathway": "accommodation", "complexity": "high", "details": "NFA",
                 "flags": ["at_risk_of_homelessness"]},
                {"pathway": "health", "complexity": "low"},
            ],
        ),
    )
    await publish_all_and_wait(js, subject_prefix, sessionmaker, [
        provider_event("allocated", busy, minutes=1, provider_referral_id=PR1),
        provider_event("declined", busy, minutes=2, provider_referral_id=PR1,
                       reasonCode="capacity", comments="full"),
    ])
    withdrawn = await submit(client, referral_body(
        source_reference="LIST-2", consent={"given": True, "recorded_at": None}))
    response = await client.post(
        f"/referrals/{withdrawn['id']}/withdraw",
        json={"reason_code": "other", "comments": "moved on"},
        headers=auth("probation"),
    )
    assert response.status_code == 200, response.text

    listed = (await client.get("/referrals", headers=auth("probation"))).json()["data"]
    assert [r["id"] for r in listed] == [withdrawn["id"], busy["id"]]
    for document in listed:
        assert document == await read(client, document)
    # The two cover what could differ: provider fields and times, a withdrawal, empty fields.
    assert listed[1]["needs"][0]["status_reason"] and listed[1]["needs"][0]["allocated_at"]
    assert listed[0]["withdrawal"]["comments"] == "moved on" and listed[0]["status"] == "withdrawn"


async def test_a_replay_is_answered_even_when_todays_rules_would_refuse_its_body(
    referral_body, sessionmaker
):
    """Submission inserts first and reads the stored referral only when the insert is refused;
    a body the rules refuse is still checked against what was stored, so the replay of a
    referral made yesterday (its release day now past) gets yesterday's answer."""
    from pathways_shared.auth import Principal
    from pathways_shared.db import transaction
    from pathways_shared.problems import ValidationProblem
    from referrals import service
    from referrals.domain.submission import InvalidSubmission
    from referrals.schemas import ReferralCreate

    body = ReferralCreate.model_validate(referral_body(
        source_reference="REPLAY-1",
        supervision={"status": "custody_pre_release", "expected_release_date": "2026-11-24"},
    ))
    probation = Principal(sub="officer", roles=frozenset({"probation"}))

    async def submit_on(now: datetime, submitted: ReferralCreate) -> service.Submitted:
        async with transaction(sessionmaker) as session:
            return await service.submit(session, probation, submitted, idempotency_key=None,
                                        now=now, base_url="http://test", purpose="test")

    first = await submit_on(T0, body)
    the_next_day = T0 + timedelta(days=1)
    again = await submit_on(the_next_day, body)
    assert (first.created, again.created, again.referral.id) == (True, False, first.referral.id)
    # Another body on that source reference is refused as such, even if also invalid today...
    changed = body.model_copy(update={"practitioner": body.practitioner.model_copy(
        update={"name": "Another Officer"})})
    with pytest.raises(ValidationProblem) as refused:
        await submit_on(the_next_day, changed)
    assert "different body" in str(refused.value.detail)
    # ...and a new one that the rules refuse is refused by the rules.
    fresh = body.model_copy(update={"source_reference": "REPLAY-2"})
    with pytest.raises(InvalidSubmission):
        await submit_on(the_next_day, fresh)

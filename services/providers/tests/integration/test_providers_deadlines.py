"""Service levels on real PostgreSQL and NATS: deadlines in working days over Christmas,
`deadline-missed` published once per missed deadline, even with several schedulers."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlmodel import select

from pathways_shared.db import transaction
from pathways_shared.testing import settle_outbox
from providers import scheduler, service
from providers.domain.working_days import WorkingCalendar
from providers.models import ProviderReferralRow
from providers.scheduler import run_deadline_check

CALENDAR = WorkingCalendar()
CHRISTMAS_EVE = datetime(2026, 12, 24, 10, 0, tzinfo=UTC)  # a Thursday
ACK_BY = datetime(2026, 12, 30, 23, 59, 59, tzinfo=UTC)
RESPOND_BY = datetime(2027, 1, 5, 23, 59, 59, tzinfo=UTC)


@pytest.fixture
def settings(settings, monkeypatch):
    """The app's own deadline scheduler runs beside these tests. On the real clock it would
    find these Christmas deadlines long missed and race the checks each test runs at its own
    `now`: it reads Christmas Eve instead, when nothing is due, and polls once an hour."""
    monkeypatch.setattr(scheduler, "utc_now", lambda: CHRISTMAS_EVE)
    return settings.model_copy(update={"deadline_poll_seconds": 3600.0})


def ctx(now: datetime) -> service.Context:
    return service.Context(now=now, calendar=CALENDAR, base_url="http://providers.test")


async def allocate(sessionmaker, *, pathway: str = "accommodation") -> ProviderReferralRow:
    need_id = uuid.uuid4()
    submitted = service.SubmittedReferral(
        referral_id=uuid.uuid4(),
        crn="X123456",
        area="E08000029",
        sex="male",
        age=30,
        supervision_status="licence",
        needs=(
            service.SubmittedNeed(need_id=need_id, pathway=pathway, complexity="medium", flags=()),
        ),
        submitted_at=CHRISTMAS_EVE,
    )
    async with transaction(sessionmaker) as session:
        await service.route_submitted_referral(session, submitted, ctx(CHRISTMAS_EVE))
    async with sessionmaker() as session:
        return (
            await session.exec(
                select(ProviderReferralRow).where(ProviderReferralRow.need_id == need_id)
            )
        ).one()


async def missed(provider_events, expect: int | None = None):
    events = await provider_events(expect=expect, timeout=3 if expect else 1)
    return [
        (e.additional_information["providerReferralId"], e.additional_information["deadline"])
        for e in events
        if e.event_type == "providers.referral.deadline-missed"
    ]


async def test_deadlines_skip_christmas_and_boxing_day(app, sessionmaker):
    referral = await allocate(sessionmaker)
    assert referral.acknowledge_by == ACK_BY
    assert referral.respond_by == RESPOND_BY


@pytest.mark.parametrize(
    ("now", "deadlines"),
    [
        (ACK_BY, []),
        (datetime(2026, 12, 31, 0, 0, tzinfo=UTC), ["acknowledge"]),
        (datetime(2027, 1, 6, 0, 0, tzinfo=UTC), ["acknowledge", "respond"]),
    ],
)
async def test_missed_deadlines_at_a_given_time(app, sessionmaker, provider_events, now, deadlines):
    referral = await allocate(sessionmaker)
    published = await run_deadline_check(
        sessionmaker, now=now, calendar=CALENDAR, base_url="http://p"
    )
    assert published == len(deadlines)
    events = await missed(provider_events, expect=1 + len(deadlines))
    assert sorted(kind for _, kind in events) == deadlines
    assert all(pr == str(referral.id) for pr, _ in events)


async def test_each_missed_deadline_is_published_once(app, sessionmaker, provider_events):
    referral = await allocate(sessionmaker)
    late = datetime(2027, 1, 6, 0, 0, tzinfo=UTC)
    assert (
        await run_deadline_check(sessionmaker, now=late, calendar=CALENDAR, base_url="http://p")
        == 2
    )
    assert (
        await run_deadline_check(sessionmaker, now=late, calendar=CALENDAR, base_url="http://p")
        == 0
    )
    later = datetime(2027, 2, 1, tzinfo=UTC)
    assert (
        await run_deadline_check(sessionmaker, now=later, calendar=CALENDAR, base_url="http://p")
        == 0
    )
    events = await missed(provider_events, expect=3)
    assert sorted(events) == [(str(referral.id), "acknowledge"), (str(referral.id), "respond")]
    await settle_outbox(sessionmaker)  # a third event, had it been written, is out by now
    assert len(await missed(provider_events)) == 2


async def test_schedulers_running_together_publish_once(app, sessionmaker, provider_events):
    referrals = [await allocate(sessionmaker) for _ in range(5)]
    late = datetime(2027, 1, 6, 0, 0, tzinfo=UTC)
    counts = await asyncio.gather(
        *[
            run_deadline_check(
                sessionmaker, now=late, calendar=CALENDAR, base_url="http://p", batch=2
            )
            for _ in range(4)
        ]
    )
    assert sum(counts) == 10
    events = await missed(provider_events, expect=15)
    assert len(events) == 10 and len(set(events)) == 10
    assert {pr for pr, _ in events} == {str(r.id) for r in referrals}


async def test_acknowledging_stops_the_acknowledge_clock_and_accepting_stops_both(
    app, sessionmaker, provider_events
):
    acknowledged = await allocate(sessionmaker)
    accepted = await allocate(sessionmaker)
    async with transaction(sessionmaker) as session:
        for row, action in ((acknowledged, "acknowledge"), (accepted, "accept")):
            fresh = await session.get(ProviderReferralRow, row.id)
            updated, _ = getattr(service.referral_from_row(fresh), action)(CHRISTMAS_EVE)
            service.copy_to_row(updated, fresh, CHRISTMAS_EVE)
            session.add(fresh)
    late = datetime(2027, 1, 6, 0, 0, tzinfo=UTC)
    assert (
        await run_deadline_check(sessionmaker, now=late, calendar=CALENDAR, base_url="http://p")
        == 1
    )
    events = await missed(provider_events, expect=3)
    assert events == [(str(acknowledged.id), "respond")]


async def test_a_withdrawn_referral_has_no_running_clock(app, sessionmaker, provider_events):
    referral = await allocate(sessionmaker)
    async with transaction(sessionmaker) as session:
        await service.withdraw_needs(
            session,
            referral_id=referral.referral_id,
            need_ids=[referral.need_id],
            reason_code="deceased",
            ctx=ctx(CHRISTMAS_EVE),
        )
    late = datetime(2027, 1, 6, 0, 0, tzinfo=UTC)
    assert (
        await run_deadline_check(sessionmaker, now=late, calendar=CALENDAR, base_url="http://p")
        == 0
    )

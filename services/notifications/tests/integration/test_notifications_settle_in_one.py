"""On PostgreSQL an event first delivered is settled in one statement outside any transaction
(`settle_in_one`: recorded processed, its deliveries added, its allocation kept); the ordinary
path does it in a transaction. Both leave the same deliveries, allocations and processed
events; a second copy is a duplicate that writes nothing; and when the statement cannot settle
an event (the subscriptions changed since they were read, an event that needs a read, a
failure) it writes nothing and the ordinary path takes the event, once."""

from __future__ import annotations

import uuid

import httpx
from sqlmodel import select

from notifications import service
from notifications.app import create_app
from notifications.consumers import NotificationsConsumer, subscriptions
from notifications.models import NeedAllocationRow, NotificationRow
from pathways_shared.broker import Broker
from pathways_shared.db import transaction
from pathways_shared.events import make_event
from pathways_shared.infra_models import ProcessedEvent
from pathways_shared.testing import running

from .flows import subscribe
from .test_notifications_rounds import SOLIHULL, submitted


def allocated(need_id: str, provider: str = "NACRO"):
    return make_event("providers.referral.allocated", {
        "referralId": "11111111-1111-4111-8111-111111111111", "needId": need_id,
        "providerReferralId": str(uuid.uuid4()), "serviceCode": "CRS-ACC-M",
        "providerCode": provider, "programme": "CRS", "pathway": "accommodation",
        "area": SOLIHULL,
    }, crn="X123456")  # fmt: skip


def unallocated(need_id: str):
    return make_event("providers.referral.unallocated", {
        "referralId": "11111111-1111-4111-8111-111111111111", "needId": need_id,
        "reason": "capacity", "area": SOLIHULL,
    }, crn="X123456")  # fmt: skip


def withdrawn(need_id: str):
    return make_event("referrals.referral.withdrawn", {
        "referralId": "11111111-1111-4111-8111-111111111111", "area": SOLIHULL,
        "needIds": [need_id], "reasonCode": "other",
    }, crn="X123456")  # fmt: skip


def events():
    """A world's events under new ids and needs: emails, webhooks, allocations kept and
    forgotten, an event that needs who holds a need, and one that calls for nothing."""
    kept, gone = str(uuid.uuid4()), str(uuid.uuid4())
    return [
        submitted(), allocated(kept), allocated(gone, "SHELTER"), unallocated(gone),
        withdrawn(kept),
        make_event("notifications.duty-to-refer.sent", {"area": SOLIHULL}, crn="X123456"),
    ], [kept, gone]


async def written(sessionmaker, event_ids, need_ids, consumer):
    async with sessionmaker() as session:
        rows = (await session.exec(select(NotificationRow).where(
            NotificationRow.event_id.in_(event_ids)))).all()
        allocations = (await session.exec(select(NeedAllocationRow).where(
            NeedAllocationRow.need_id.in_([uuid.UUID(n) for n in need_ids])))).all()
        processed = (await session.exec(select(ProcessedEvent.event_id).where(
            ProcessedEvent.consumer == consumer,
            ProcessedEvent.event_id.in_([str(e) for e in event_ids])))).all()
    by_event = {e: n for n, e in enumerate(event_ids)}
    by_need = {uuid.UUID(n): k for k, n in enumerate(need_ids)}
    return (
        sorted((by_event[r.event_id], r.event_type, r.kind, r.channel, r.recipient_role,
                r.recipient_key, r.subscription_id, r.referral_id,
                tuple(by_need.get(uuid.UUID(n), n) for n in r.need_ids), r.crn, r.status,
                r.attempts, r.address, r.next_attempt_at, r.created_at == r.updated_at)
               for r in rows),
        sorted((by_need[a.need_id], a.provider_code, a.service_code) for a in allocations),
        sorted(by_event[uuid.UUID(e)] for e in processed),
    )


async def world(consumer, sessionmaker, fast: bool):
    """The events taken one by one: settled in one statement where it can (fast), else, as
    the consumer then does, by the ordinary path in a transaction."""
    taken, need_ids = events()
    outcomes = []
    for event in [*taken, taken[1]]:  # the first allocation twice: a duplicate
        outcome = await consumer._settle_in_one(event) if fast else None
        if outcome is None:
            async with transaction(sessionmaker) as session:
                outcome = "ordinary " + await consumer._apply(session, event)
        outcomes.append(outcome)
    return outcomes, await written(sessionmaker, [e.id for e in taken], need_ids, consumer.name)


async def test_settled_in_one_statement_as_by_the_ordinary_path(make_settings, receiver):
    settings = make_settings(run_workers=False)
    application = create_app(settings)
    async with running(application), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=application), base_url="http://n"
    ) as client:
        await subscribe(client, f"{receiver.url}/hook", ["providers.>"])
        await subscribe(client, f"{receiver.url}/hook", ["referrals.referral.*"],
                        areas=[SOLIHULL])
        sessionmaker = application.state.sessionmaker
        broker = Broker(settings.nats_url, name="notifications-test", prefix=settings.subject_prefix)
        consumer = NotificationsConsumer(subscriptions()[0], sessionmaker, broker)
        fast_outcomes, fast = await world(consumer, sessionmaker, fast=True)
        plain_outcomes, plain = await world(consumer, sessionmaker, fast=False)
    assert fast == plain
    deliveries, allocations, processed = fast
    assert {"webhook", "duty_to_refer", "referral_allocated", "referral_received",
            "referral_unallocated", "referral_withdrawn"} <= {row[2] for row in deliveries}
    assert allocations == [(0, "NACRO", "CRS-ACC-M")]  # the other one unallocated
    assert processed == [0, 1, 2, 3, 4, 5]
    assert fast_outcomes == ["handled"] * 4 + ["ordinary handled", "handled", "duplicate"]
    assert plain_outcomes == ["ordinary handled"] * 6 + ["ordinary duplicate"]


async def test_nothing_written_when_it_cannot_settle_then_the_ordinary_path_once(
    make_settings, receiver, monkeypatch
):
    """A subscription created after the subscriptions were read, and a statement that fails
    half-way: nothing of the event kept; the ordinary path then takes it, once."""
    settings = make_settings(run_workers=False)
    application = create_app(settings)
    async with running(application), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=application), base_url="http://n"
    ) as client:
        sessionmaker = application.state.sessionmaker
        broker = Broker(settings.nats_url, name="notifications-test", prefix=settings.subject_prefix)
        consumer = NotificationsConsumer(subscriptions()[0], sessionmaker, broker)
        first = submitted()
        assert await consumer._settle_in_one(first) == "handled"  # the subscriptions read
        await subscribe(client, f"{receiver.url}/hook", ["providers.>"])

        event = allocated(str(uuid.uuid4()))
        assert await consumer._settle_in_one(event) is None  # routed without the new one
        assert await written(sessionmaker, [event.id], [], consumer.name) == ([], [], [])
        async with transaction(sessionmaker) as session:
            assert await consumer._apply(session, event) == "handled"
        kinds = sorted(row[2] for row in (await written(
            sessionmaker, [event.id], [], consumer.name))[0])
        assert kinds == ["referral_allocated", "referral_received", "webhook"]
        # the subscriptions read again: the next event is settled with the new one
        again = allocated(str(uuid.uuid4()))
        assert await consumer._settle_in_one(again) == "handled"
        assert len((await written(sessionmaker, [again.id], [], consumer.name))[0]) == 3

        settle_plan = service.settlement_of

        def breaking(*args, **kwargs):
            planned = settle_plan(*args, **kwargs)
            planned.deliveries[-1]["recipient_key"] = "x" * 101  # too long: the statement fails
            return planned

        monkeypatch.setattr(service, "settlement_of", breaking)
        broken = allocated(str(uuid.uuid4()))
        assert await consumer._settle_in_one(broken) is None
        assert await written(sessionmaker, [broken.id], [], consumer.name) == ([], [], [])
        monkeypatch.setattr(service, "settlement_of", settle_plan)
        for expected in ("handled", "duplicate"):
            async with transaction(sessionmaker) as session:
                assert await consumer._apply(session, broken) == expected
        assert len((await written(sessionmaker, [broken.id], [], consumer.name))[0]) == 3

"""On PostgreSQL `NotificationsConsumer` records an event processed and reads the active
subscriptions in one statement; the shared consumer's path does it in two. Both record the
same deliveries for the same events (emails, webhooks, the allocation kept), and a second
copy of an event is a duplicate on both."""

from __future__ import annotations

import httpx
from sqlmodel import select

from notifications.app import create_app
from notifications.consumers import NotificationsConsumer, subscriptions
from notifications.models import NotificationRow
from notifications.repository import NotificationsRepository
from pathways_shared.broker import Broker
from pathways_shared.consumer import Consumer
from pathways_shared.db import transaction
from pathways_shared.events import make_event
from pathways_shared.testing import running

from .flows import subscribe
from .test_notifications_rounds import allocated, submitted


def copies():
    """The same events under new ids (deliveries are keyed by event id)."""
    withdrawn = make_event(
        "referrals.referral.withdrawn",
        {"referralId": "11111111-1111-4111-8111-111111111111", "area": "E08000029",
         "needIds": ["22222222-2222-4222-8222-222222222222"], "reasonCode": "other"},
        crn="X123456",
    )  # fmt: skip
    return [submitted(), allocated(), withdrawn,
            make_event("cohorts.member.selected", {"area": "E08000029", "cohort": "free"},
                       crn="X123456")]


async def deliveries(sessionmaker, event_ids):
    async with sessionmaker() as session:
        rows = (await session.exec(select(NotificationRow).where(
            NotificationRow.event_id.in_(event_ids)))).all()
    by_event = {e: n for n, e in enumerate(event_ids)}
    return sorted((by_event[r.event_id], r.event_type, r.kind, r.channel, r.recipient_role,
                   r.recipient_key, r.referral_id, tuple(r.need_ids), r.crn, r.status)
                  for r in rows)


async def test_one_statement_records_what_the_shared_path_does(make_settings, receiver,
                                                                monkeypatch):
    used = []
    one_statement = NotificationsRepository.mark_processed_and_subscriptions

    async def counted(self, *args):
        used.append("fast")
        return await one_statement(self, *args)

    monkeypatch.setattr(NotificationsRepository, "mark_processed_and_subscriptions", counted)
    settings = make_settings(run_workers=False)
    application = create_app(settings)
    async with running(application), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=application), base_url="http://n"
    ) as client:
        await subscribe(client, f"{receiver.url}/hook", ["providers.>"])
        await subscribe(client, f"{receiver.url}/hook", ["referrals.referral.*"],
                        areas=["E08000029"])
        sessionmaker = application.state.sessionmaker
        broker = Broker(settings.nats_url, name="notifications-test", prefix=settings.subject_prefix)
        subscription = subscriptions()[0]
        fast = NotificationsConsumer(subscription, sessionmaker, broker)
        plain = Consumer(subscription, sessionmaker, broker)
        outcomes = {}
        results = {}
        for name, consumer in (("plain", plain), ("fast", fast)):
            events = copies()
            seen = []
            for event in [*events, events[1]]:  # the allocation twice: a duplicate
                async with transaction(sessionmaker) as session:
                    seen.append(await consumer._apply(session, event))
            outcomes[name] = seen
            results[name] = await deliveries(sessionmaker, [e.id for e in events])
        assert outcomes["fast"] == outcomes["plain"] == ["handled"] * 4 + ["duplicate"]
        assert results["fast"] == results["plain"]
        kinds = {row[2] for row in results["fast"]}
        assert {"webhook", "duty_to_refer", "referral_allocated", "referral_withdrawn"} <= kinds
        assert used == ["fast"] * 5  # every one of the fast consumer's went the one statement

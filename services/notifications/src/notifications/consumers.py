"""What the notifications service consumes: every stream, since any event may be wanted by
a webhook subscriber; the email rules act on referral and provider events.

Every event reads the active subscriptions, so on PostgreSQL `NotificationsConsumer` records
the processed event and reads them in one statement (the shared consumer's path takes two)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from notifications import service
from notifications.repository import NotificationsRepository
from pathways_shared.consumer import Consumer, Handler, Subscription
from pathways_shared.db import is_postgres
from pathways_shared.events import Event

STREAMS = ("REFERRALS", "PROVIDERS", "COHORTS", "NOTIFICATIONS")


async def take_event(session: AsyncSession, event: Event) -> None:
    await service.take_event(session, event)


class NotificationsConsumer(Consumer):
    """The shared idempotent consumer; on PostgreSQL an event handled on its own records
    itself processed and reads the active subscriptions in one round trip, then is taken as
    the shared path takes it (`take_event`). Events of a share (already recorded together by
    `mark_processed_many`) and SQLite go the shared path; a test holds the two equal."""

    async def _apply(
        self, session: AsyncSession, event: Event, fresh: set[str] | None = None
    ) -> str:
        if fresh is not None or not is_postgres(session) or self.subscription.handler_for(
            event.event_type
        ) is not take_event:
            return await super()._apply(session, event, fresh)
        new, active = await NotificationsRepository(session).mark_processed_and_subscriptions(
            self.name, str(event.id), event.event_type, datetime.now(UTC)
        )
        if not new:
            return "duplicate"
        await service.take_event(session, event, active=active)
        return "handled"


@dataclass
class EveryEvent(Subscription):
    """A subscription whose handler takes every event type of its stream, known or new."""

    handler: Handler | None = None

    def handler_for(self, event_type: str) -> Handler | None:
        return self.handler


def subscriptions() -> list[Subscription]:
    return [
        EveryEvent(
            stream=stream,
            durable=f"notifications-from-{stream.lower()}",
            handler=take_event,
            consumer_class=NotificationsConsumer,
        )
        for stream in STREAMS
    ]

"""What the notifications service consumes: every stream, since any event may be wanted by
a webhook subscriber; the email rules act on referral and provider events.

On PostgreSQL an event first delivered is settled in one statement outside any transaction
(`settle_in_one`: no BEGIN, no COMMIT): recorded processed, its deliveries added and its
allocation kept, routed by the active subscriptions as last read, the statement writing
nothing when they have changed since (or the event needs a read first: who holds a need);
then the ordinary path takes it. There, every event reads the active subscriptions, so
`NotificationsConsumer` records the processed event and reads them in one statement (the
shared consumer's path takes two)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nats.aio.msg import Msg
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from notifications import repository, service
from notifications.repository import NotificationsRepository
from pathways_shared.clock import utc_now
from pathways_shared.consumer import (
    Consumer,
    Handler,
    SettleInOne,
    Subscription,
    _correlated,
    _deliveries,
)
from pathways_shared.db import is_postgres
from pathways_shared.events import Event

STREAMS = ("REFERRALS", "PROVIDERS", "COHORTS", "NOTIFICATIONS")


async def take_event(session: AsyncSession, event: Event) -> None:
    await service.take_event(session, event)


class ActiveSubscriptions:
    """The active subscriptions as last read, shared by the consumers of every stream: what
    `settle_in_one` routes events by. Never trusted blindly: the statement that settles an
    event checks they are still the active ones, else writes nothing, and they are read
    again for the next event."""

    def __init__(self) -> None:
        self.rows: list[Row[Any]] | None = None
        self.seen = ""

    async def read(self, connection: AsyncConnection) -> list[Row[Any]]:
        if self.rows is None:
            rows = list(await repository.active_subscriptions(connection))
            self.rows, self.seen = rows, repository.subscriptions_seen(rows)
        return self.rows

    def forget(self) -> None:
        self.rows = None


def settle_in_one(active: ActiveSubscriptions) -> SettleInOne:
    """The subscriptions' `settle_in_one` hook: PostgreSQL, on a connection outside any
    transaction, the event settled in one statement (`repository.settle`) as `take_event`
    would in a transaction; None (nothing written) for an event whose deliveries cannot be
    decided without a read (`service.settlement_of`), or when the active subscriptions are no
    longer those it was routed by: the ordinary path takes it."""

    async def settle(connection: AsyncConnection, consumer: str, event: Event) -> str | None:
        now = utc_now()
        rows = await active.read(connection)
        seen = active.seen
        settlement = service.settlement_of(event, rows, now)
        if settlement is None:
            return None
        settled = await repository.settle(
            connection, consumer, str(event.id), event.event_type, subscriptions=seen,
            deliveries=settlement.deliveries, allocation=settlement.allocation,
            forget=settlement.forget, now=now,
        )
        if settled is None:
            active.forget()
        return settled

    return settle


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

    async def _handle_share(self, share: list[tuple[Msg, Event | Exception]]) -> list[tuple[Msg, str]]:
        """A worker's share of a batch: its first-delivered events settled each in one
        statement, in stream order (`settle_in_one`), cheaper than one transaction for them
        all; from the first that is not, the rest as the shared consumer handles a share."""
        done: list[tuple[Msg, str]] = []
        for msg, event in share:
            if not isinstance(event, Event) or _deliveries(msg) != 1:
                break
            with _correlated(msg):
                settled = await self._settle_in_one(event)
                if settled is None:
                    break
                done.append((msg, self._count(await self._settled(msg, event, settled))))
        rest = share[len(done):]
        return done + await super()._handle_share(rest) if rest else done


@dataclass
class EveryEvent(Subscription):
    """A subscription whose handler takes every event type of its stream, known or new."""

    handler: Handler | None = None

    def handler_for(self, event_type: str) -> Handler | None:
        return self.handler


def subscriptions() -> list[Subscription]:
    active = ActiveSubscriptions()
    return [
        EveryEvent(
            stream=stream,
            durable=f"notifications-from-{stream.lower()}",
            handler=take_event,
            consumer_class=NotificationsConsumer,
            settle_in_one=settle_in_one(active),
        )
        for stream in STREAMS
    ]

"""Transactional outbox: events leave a service only through a row written with the change.

`publish(session, payload, addressing)` adds the row in the caller's transaction (inserted at
commit): the payload is the event's shared model (`event_payloads`), which names its type.
`OutboxRelay` publishes unpublished rows in order to JetStream with `Nats-Msg-Id` = event id,
a batch at a time (sent in order, acks awaited together), and marks the acked rows published.
If the relay dies between the ack and the mark, the row goes again and JetStream's duplicate
window absorbs the repeat. If one message of a batch fails while later ones are stored, it
goes again after them: order is kept unless a publish fails. On PostgreSQL one relay at a time
holds a transaction-scoped advisory lock (the others wait their turn), so replicas never
publish out of order or twice; rows are also taken `FOR UPDATE SKIP LOCKED` for good measure.
The relay wakes on commit (an in-process signal) and polls slowly for rows written elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import zlib
from datetime import UTC, datetime

from nats.js.client import JetStreamContext
from sqlalchemy import BigInteger, Row, Select, func, literal, true, update
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import Session as SyncSession
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from pathways_shared.broker import Broker
from pathways_shared.db import defer_insert, is_postgres, take_turn
from pathways_shared.event_payloads import Payload
from pathways_shared.events import Addressing, Event, envelope, subject_for
from pathways_shared.infra_models import OutboxMessage
from pathways_shared.observability import (
    CORRELATION_HEADER,
    Metrics,
    current_correlation_id,
    get_logger,
)

log = get_logger(__name__)

WAKERS_KEY = "outbox_wakers"
DIRTY_KEY = "outbox_dirty"


def publish(session: AsyncSession, payload: Payload, addressing: Addressing | None = None) -> Event:
    """Publish the event whose payload is `payload` (its type's shared model; anything else is
    refused with TypeError) from inside the caller's transaction: the way services publish.
    Returns the envelope written."""
    event = envelope(payload, addressing)
    add_event(session, event)
    return event


def add_event(session: AsyncSession, event: Event) -> None:
    """Write a ready envelope to the outbox inside the caller's transaction (the primitive
    under `publish`; for tools and tests that make events as another producer would).

    The row is inserted when the transaction commits (`defer_insert`), after the change it
    announces; the events of one transaction keep the order they were added in.
    """
    headers = {"Nats-Msg-Id": str(event.id)}
    if cid := current_correlation_id():
        headers[CORRELATION_HEADER] = cid
    defer_insert(
        session,
        OutboxMessage.__table__,
        {
            "event_id": str(event.id),
            "event_type": event.event_type,
            "subject": subject_for(event.event_type),
            "payload": event.to_json().decode(),
            "headers": json.dumps(headers),
            "created_at": datetime.now(UTC),
            "attempts": 0,
        },
    )
    session.info[DIRTY_KEY] = True


@sa_event.listens_for(SyncSession, "after_commit")
def _wake_relays(session: SyncSession) -> None:
    if session.info.pop(DIRTY_KEY, False):
        for wake in session.info.get(WAKERS_KEY, ()):
            wake()


@sa_event.listens_for(SyncSession, "after_rollback")
def _forget_dirty(session: SyncSession) -> None:
    session.info.pop(DIRTY_KEY, None)


def lock_key(service_name: str) -> int:
    """A stable 32-bit advisory lock key per service."""
    return zlib.crc32(f"pathways-outbox:{service_name}".encode())


class OutboxRelay:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        broker: Broker,
        *,
        service_name: str,
        metrics: Metrics | None = None,
        batch_size: int = 100,
        poll_seconds: float = 1.0,
        publish_timeout: float = 5.0,
        max_backoff: float = 5.0,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.broker = broker
        self.service_name = service_name
        self.metrics = metrics
        self.batch_size = batch_size
        self.poll_seconds = poll_seconds
        self.publish_timeout = publish_timeout
        self.max_backoff = max_backoff
        self._wake = asyncio.Event()
        self._lock_key = lock_key(service_name)
        self._one_statement: Select | None = None  # built on first use (PostgreSQL)
        # Sessions made by this sessionmaker wake this relay when they commit an event.
        sessionmaker.kw.setdefault("info", {}).setdefault(WAKERS_KEY, []).append(self.notify)

    def notify(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self.broker.wait_ready()
                published = await self.publish_pending()
                backoff = 0.1
                if published >= self.batch_size:
                    continue  # more waiting: go straight on
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001  the relay keeps relaying; the rows wait
                if self.metrics:
                    self.metrics.outbox_failures.inc()
                log.warning("outbox.publish_failed", error=str(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
            # that lands as the wait completes, and the relay would then never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await self._wake.wait()
            self._wake.clear()

    async def publish_pending(self) -> int:
        """Publish one batch in order; returns how many rows were published.

        The batch is written to NATS in order without waiting between messages, then the acks
        are awaited together and every acked row is marked in one UPDATE. Rows acked before a
        failure are still marked, so a half-done batch is not sent again; the failure is
        recorded on the rows it hit and raised for the caller's backoff.
        """
        js = self.broker.js
        if js is None:
            raise RuntimeError("NATS is not connected")
        table = OutboxMessage.__table__
        async with self.sessionmaker() as session, session.begin():
            take = self._take_in_one_statement if is_postgres(session) else self._take_stepwise
            rows = await take(session)
            if rows is None:
                return 0  # another relay has the turn
            if not rows:
                if self.metrics:
                    self.metrics.outbox_pending.set(0)
                    self.metrics.outbox_lag.set(0)
                return 0
            acked, failed, failure = await self._publish(js, rows)
            now = datetime.now(UTC)
            if acked:
                await session.exec(
                    update(table).where(table.c.seq.in_(acked)).values(published_at=now)
                )
            if failed:
                await session.exec(
                    update(table)
                    .where(table.c.seq.in_(failed))
                    .values(attempts=table.c.attempts + 1,
                            last_error=f"{type(failure).__name__}: {failure}"[:2000])
                )
            if self.metrics:
                self._observe(rows, set(acked), now)
        if acked:
            log.debug("outbox.published", count=len(acked))
        if failure is not None:
            raise failure
        return len(acked)

    def _pending_query(self) -> Select:
        """The oldest unpublished rows, in order, at most a batch."""
        table = OutboxMessage.__table__
        return (
            select(table.c.seq, table.c.subject, table.c.payload, table.c.headers,
                   table.c.created_at)
            .where(table.c.published_at.is_(None))
            .order_by(table.c.seq)
            .limit(self.batch_size)
        )

    async def _take_stepwise(self, session: AsyncSession) -> list[Row] | None:
        """This pass's batch (None: not this relay's turn), one step at a time: the turn, then
        the rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL). SQLite's path."""
        if not await take_turn(session, self._lock_key):
            return None
        query = self._pending_query()
        if is_postgres(session):
            query = query.with_for_update(skip_locked=True)
        return list((await session.exec(query)).all())

    async def _take_in_one_statement(self, session: AsyncSession) -> list[Row] | None:
        """`_take_stepwise` in one round trip (PostgreSQL): the advisory lock is tried first,
        once (a CTE: a subquery in FROM would be pulled up and the lock tried twice), then,
        only if it was taken, the rows are read `FOR UPDATE SKIP LOCKED`:

            WITH turn AS (SELECT pg_try_advisory_xact_lock(key) AS ok)
            SELECT turn.ok, batch.* FROM turn LEFT JOIN LATERAL
              (<pending rows> WHERE turn.ok ... FOR UPDATE SKIP LOCKED) AS batch ON true

        One row with `ok` false: not this relay's turn; `ok` true and no seq: nothing pending.
        The statement's snapshot may be taken just before the previous holder of the turn
        commits; the rows it marked published are then still unpublished in that snapshot, but
        `FOR UPDATE` re-reads a row a committed transaction changed and tests the WHERE again
        on the new version, so they are dropped: none goes twice.
        """
        if self._one_statement is None:
            turn = select(
                func.pg_try_advisory_xact_lock(literal(self._lock_key, BigInteger)).label("ok")
            ).cte("turn")
            batch = (
                self._pending_query().where(turn.c.ok).with_for_update(skip_locked=True)
                .lateral("batch")
            )
            self._one_statement = (
                select(turn.c.ok, *batch.c).select_from(turn.outerjoin(batch, true()))
                .order_by(batch.c.seq)
            )
        rows = list((await session.exec(self._one_statement)).all())
        if not rows[0].ok:
            return None
        return [row for row in rows if row.seq is not None]

    async def _publish(self, js: JetStreamContext, rows: list[Row]) -> tuple[list[int], list[int], Exception | None]:
        """Send every row in order, then await the acks: (acked seqs, failed seqs, first error)."""
        futures: list[asyncio.Future] = []
        failure: Exception | None = None
        try:
            for row in rows:
                futures.append(
                    await js.publish_async(
                        subject_for(row.subject, self.broker.prefix),
                        row.payload.encode(),
                        headers=json.loads(row.headers),
                    )
                )
        except Exception as exc:  # noqa: BLE001  the connection went while sending: the rest wait
            failure = exc
        if futures:
            _, waiting = await asyncio.wait(futures, timeout=self.publish_timeout)
            for future in waiting:
                future.cancel()
        acked: list[int] = []
        failed: list[int] = []
        for row, future in zip(rows, futures, strict=False):
            error = (
                TimeoutError("no ack from JetStream") if future.cancelled()
                else future.exception()
            )
            if error is None:
                acked.append(row.seq)
            else:
                failed.append(row.seq)
                failure = failure or error
        failed.extend(row.seq for row in rows[len(futures):])
        return acked, failed, failure

    def _observe(self, rows: list[Row], acked: set[int], now: datetime) -> None:
        assert self.metrics is not None
        self.metrics.outbox_published.inc(len(acked))
        self.metrics.outbox_pending.set(len(rows) - len(acked))
        oldest = None
        for row in rows:
            created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
            if row.seq in acked:
                self.metrics.publish_latency.observe(max(0.0, (now - created).total_seconds()))
            elif oldest is None:
                oldest = created
        self.metrics.outbox_lag.set((now - oldest).total_seconds() if oldest else 0)


async def pending_count(session: AsyncSession) -> int:
    return int(
        await session.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.published_at.is_(None))
        )
        or 0
    )


async def mark_for_resend(
    sessionmaker: async_sessionmaker[AsyncSession], since: datetime, *, tag: str,
    batch_size: int = 500,
) -> int:
    """After the broker lost acknowledged messages: every published row created at or after
    `since` becomes unpublished again, so the relay sends it once more, in its old order and
    ahead of newer rows. Each resent message carries `Nats-Msg-Id` "<event id>:resent:<tag>":
    a broker that lost a message may still remember its first id for the duplicate window and
    would drop it silently. Running one resend twice (same `tag`) is absorbed by the broker;
    anything else the consumers' inboxes absorb (they record the event id, not the message id).
    Works in batches of `batch_size` rows, each in its own short transaction. Returns the count."""
    table = OutboxMessage.__table__
    marked, after_seq = 0, -1
    while True:
        async with sessionmaker() as session, session.begin():
            rows = list((await session.exec(
                select(table.c.seq, table.c.event_id, table.c.headers)
                .where(table.c.created_at >= since, table.c.published_at.is_not(None),
                       table.c.seq > after_seq)
                .order_by(table.c.seq)
                .limit(batch_size)
            )).all())
            for row in rows:
                headers = json.loads(row.headers or "{}")
                headers["Nats-Msg-Id"] = f"{row.event_id}:resent:{tag}"
                await session.exec(
                    update(table).where(table.c.seq == row.seq)
                    .values(published_at=None, headers=json.dumps(headers), attempts=0)
                )
        if not rows:
            return marked
        marked += len(rows)
        after_seq = rows[-1].seq

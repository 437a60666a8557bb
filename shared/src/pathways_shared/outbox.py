"""Transactional outbox: events leave a service only through a row written with the change.

`add_event(session, event)` adds the row in the caller's transaction. `OutboxRelay` publishes
unpublished rows in order to JetStream with `Nats-Msg-Id` = event id, waits for each ack and
marks the row published. If the relay dies between the ack and the mark, the row goes again
and JetStream's duplicate window absorbs the repeat. On PostgreSQL one relay at a time holds
a transaction-scoped advisory lock (the others wait their turn), so replicas never publish
out of order or twice; rows are also taken `FOR UPDATE SKIP LOCKED` for good measure.
The relay wakes on commit (an in-process signal) and polls slowly for rows written elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import zlib
from datetime import UTC, datetime

from sqlalchemy import event as sa_event
from sqlalchemy import func
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import Session as SyncSession
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from pathways_shared.broker import Broker
from pathways_shared.db import is_postgres
from pathways_shared.events import Event, subject_for
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


def add_event(session: AsyncSession, event: Event) -> OutboxMessage:
    """Write `event` to the outbox inside the caller's transaction. The only way to publish."""
    headers = {"Nats-Msg-Id": str(event.id)}
    if cid := current_correlation_id():
        headers[CORRELATION_HEADER] = cid
    row = OutboxMessage(
        event_id=str(event.id),
        event_type=event.event_type,
        subject=subject_for(event.event_type),
        payload=event.to_json().decode(),
        headers=json.dumps(headers),
        created_at=datetime.now(UTC),
    )
    session.add(row)
    session.info[DIRTY_KEY] = True
    return row


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
            except Exception as exc:
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

        Rows published before a failure are still marked, so a half-done batch is not
        sent again; the failure is raised for the caller's backoff.
        """
        js = self.broker.js
        if js is None:
            raise RuntimeError("NATS is not connected")
        failure: Exception | None = None
        published = 0
        async with self.sessionmaker() as session:
            async with session.begin():
                if is_postgres(session):
                    got = await session.scalar(select(func.pg_try_advisory_xact_lock(self._lock_key)))
                    if not got:
                        return 0
                query = (
                    select(OutboxMessage)
                    .where(OutboxMessage.published_at.is_(None))
                    .order_by(OutboxMessage.seq)
                    .limit(self.batch_size)
                )
                if is_postgres(session):
                    query = query.with_for_update(skip_locked=True)
                rows = (await session.exec(query)).all()
                now = datetime.now(UTC)
                for row in rows:
                    try:
                        await js.publish(
                            subject_for(row.subject, self.broker.prefix),
                            row.payload.encode(),
                            timeout=self.publish_timeout,
                            headers=json.loads(row.headers),
                        )
                    except Exception as exc:
                        row.attempts += 1
                        row.last_error = f"{type(exc).__name__}: {exc}"[:2000]
                        failure = exc
                        break
                    row.published_at = datetime.now(UTC)
                    published += 1
                    if self.metrics:
                        created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
                        self.metrics.publish_latency.observe(max(0.0, (row.published_at - created).total_seconds()))
                if self.metrics:
                    self.metrics.outbox_published.inc(published)
                    self.metrics.outbox_pending.set(len(rows) - published)
                    if len(rows) > published:
                        oldest = rows[published].created_at
                        oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
                        self.metrics.outbox_lag.set((now - oldest).total_seconds())
                    else:
                        self.metrics.outbox_lag.set(0)
        if published:
            log.debug("outbox.published", count=published)
        if failure is not None:
            raise failure
        return published


async def pending_count(session: AsyncSession) -> int:
    return int(
        await session.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.published_at.is_(None))
        )
        or 0
    )

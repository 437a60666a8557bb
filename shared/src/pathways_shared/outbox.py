"""Transactional outbox: events leave a service only through a row written with the change.

`publish(session, payload, addressing)` adds the row in the caller's transaction (inserted at
commit): the payload is the event's shared model (`event_payloads`), which names its type.
`OutboxRelay` publishes unpublished rows in order to JetStream with `Nats-Msg-Id` = event id,
a batch at a time (sent in order, acks awaited together), and marks the acked rows published.
If the relay dies between the ack and the mark, the row goes again and JetStream's duplicate
window absorbs the repeat. If one message of a batch fails while later ones are stored, it
goes again after them: order is kept unless a publish fails. One relay at a time publishes, so
replicas never publish out of order or twice: on PostgreSQL the relay on duty holds a
session-level advisory lock on a connection of its own (`OutboxRelay` says why that is enough),
on SQLite (one process) each pass is a transaction as before. The relay wakes on commit (an
in-process signal; a replica not on duty passes it on to the one that is, NOTIFY) and polls
slowly for rows written elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import zlib
from collections import namedtuple
from datetime import UTC, datetime
from typing import Any

from nats.js.client import JetStreamContext
from sqlalchemy import (
    BigInteger,
    Boolean,
    Integer,
    Row,
    Select,
    String,
    any_,
    bindparam,
    func,
    literal_column,
    not_,
    true,
    update,
)
from sqlalchemy import event as sa_event
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker
from sqlalchemy.orm import Session as SyncSession
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from pathways_shared.broker import Broker
from pathways_shared.db import (
    DriverStatement,
    connect_apart,
    defer_insert,
    is_postgres,
    run_on_driver,
    take_turn,
)
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


_OUTBOX = OutboxMessage.__table__
# What a pass reads of a row; the fast path's rows are made these from the driver's records.
Pending = namedtuple("Pending", ["seq", "subject", "payload", "headers", "created_at"])


def _pending_query(limit: Any) -> Select:
    """The oldest unpublished rows, in order, at most `limit`."""
    return (
        select(*[_OUTBOX.c[name] for name in Pending._fields])
        .where(_OUTBOX.c.published_at.is_(None))
        .order_by(_OUTBOX.c.seq)
        .limit(limit)
    )


def _take_duty_statement() -> Select:
    """Try the session-level lock; when it is held elsewhere and `nudge` (this replica
    committed rows), tell its holder (NOTIFY) that rows are waiting, in the same round trip:

        WITH turn AS (SELECT pg_try_advisory_lock(:key) AS ok)
        SELECT turn.ok FROM turn LEFT JOIN LATERAL
          (SELECT pg_notify(:channel, '') WHERE NOT turn.ok AND :nudge) AS nudge ON true
    """
    turn = select(func.pg_try_advisory_lock(bindparam("key", type_=BigInteger)).label("ok")).cte("turn")
    nudge = (
        select(func.pg_notify(bindparam("channel", type_=String), literal_column("''")).label("sent"))
        .where(not_(turn.c.ok), bindparam("nudge", type_=Boolean)).lateral("nudge")
    )
    return select(turn.c.ok).select_from(turn.outerjoin(nudge, true()))


_SEQS = bindparam("seqs", type_=ARRAY(BigInteger))
_TAKE_DUTY = DriverStatement(_take_duty_statement())
_PENDING = DriverStatement(_pending_query(bindparam("batch", type_=Integer)))
_MARK_PUBLISHED = DriverStatement(
    update(_OUTBOX).where(_OUTBOX.c.seq == any_(_SEQS))
    .values(published_at=bindparam("at", type_=_OUTBOX.c.published_at.type))
)
_MARK_FAILED = DriverStatement(
    update(_OUTBOX).where(_OUTBOX.c.seq == any_(_SEQS))
    .values(attempts=_OUTBOX.c.attempts + literal_column("1"), last_error=bindparam("error", type_=String))
)


class OutboxRelay:
    """Publishes a service's outbox; one relay at a time across its replicas.

    PostgreSQL: the relay on duty holds a session-level advisory lock (`pg_try_advisory_lock`,
    key `lock_key(service)`) on a connection of its own (`db.connect_apart`: outside the pool,
    in autocommit), and a pass is two statements run straight on the driver: the pending
    rows, then the UPDATE marking them (no BEGIN, no COMMIT). The rows are read without
    `FOR UPDATE`: every reader of a service's pending rows to publish them is a relay holding
    that lock (a session- and a transaction-level advisory lock on one key exclude each
    other, so a relay on SQLite's stepwise path, an older version's, is excluded too), so
    while this relay holds it nothing else takes rows; its own passes run one after the
    other on one connection, each UPDATE committed as it ends, before the next SELECT takes
    its snapshot. When the lock changes hands, the new holder's SELECT is a statement after
    the one that took the lock, which was granted only once the old holder's connection let
    it go (unlocked or closed, after its last UPDATE committed; an UPDATE cut short is rolled
    back and its rows go again, the duplicate window absorbing them, as when a relay dies
    between the ack and the mark): so it sees every row the old holder marked. Other writers
    of the outbox (`publish` inserting, `mark_for_resend` un-marking rows already published)
    never touch a row a pass has read and not yet marked.

    A relay not on duty tries the lock on each pass (each poll, each commit of its own) and,
    failing after a commit of its own, NOTIFYs the holder, which LISTENs and makes a pass: a
    commit on any replica is published at once. A lost connection releases the lock (the server ends the session), so
    another replica takes over at its next pass; this relay, on its next pass, opens a new
    connection and tries again. On shutdown (`run` cancelled) the connection is closed.

    SQLite: each pass is a session transaction (`_take_stepwise`), as before.
    """

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
        self._channel = f"pathways_outbox_{self._lock_key}"
        engine = sessionmaker.kw.get("bind")
        self._engine: AsyncEngine | None = (
            engine if isinstance(engine, AsyncEngine) and is_postgres(engine) else None)
        self._connection: AsyncConnection | None = None  # PostgreSQL: the relay's own
        self.on_duty = False  # PostgreSQL: whether `_connection` holds the lock
        self._committed = False  # PostgreSQL: rows committed here since the last pass
        # Sessions made by this sessionmaker wake this relay when they commit an event.
        sessionmaker.kw.setdefault("info", {}).setdefault(WAKERS_KEY, []).append(self.notify)

    def notify(self) -> None:
        self._committed = True
        self._wake.set()

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            await self.close()

    async def _run(self) -> None:
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

    async def close(self) -> None:
        """Leave duty: close the relay's own connection (PostgreSQL), which lets the lock go."""
        connection, self._connection, self.on_duty = self._connection, None, False
        if connection is not None:
            try:
                async with asyncio.timeout(5):
                    await connection.close()
            except Exception:  # noqa: BLE001  a connection cut or stuck: closed hard
                with contextlib.suppress(Exception):
                    await connection.invalidate()

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
        if self._engine is not None:
            return await self._publish_on_duty(js)
        async with self.sessionmaker() as session, session.begin():
            rows = await self._take_stepwise(session)
            if rows is None:
                return 0  # another relay has the turn
            if not rows:
                self._observe_none()
                return 0
            acked, failed, failure = await self._publish(js, rows)
            now = datetime.now(UTC)
            if acked:
                await session.exec(
                    update(_OUTBOX).where(_OUTBOX.c.seq.in_(acked)).values(published_at=now)
                )
            if failed:
                await session.exec(
                    update(_OUTBOX)
                    .where(_OUTBOX.c.seq.in_(failed))
                    .values(attempts=_OUTBOX.c.attempts + 1, last_error=_error_text(failure))
                )
            if self.metrics:
                self._observe(rows, set(acked), now)
        return self._passed(acked, failure)

    async def _publish_on_duty(self, js: JetStreamContext) -> int:
        """`publish_pending` on PostgreSQL: the same pass, on the relay's own connection while
        it holds the lock (`OutboxRelay`): two round trips, both on the driver."""
        try:
            rows = await self._take_on_duty()
            if rows is None:
                return 0  # another relay is on duty
            if not rows:
                self._observe_none()
                return 0
            acked, failed, failure = await self._publish(js, rows)
            now = datetime.now(UTC)
            assert self._connection is not None
            if acked:
                await run_on_driver(self._connection, _MARK_PUBLISHED, {"seqs": acked, "at": now})
            if failed:
                await run_on_driver(self._connection, _MARK_FAILED,
                                    {"seqs": failed, "error": _error_text(failure)})
        except Exception:
            # The connection (or the database) failed: whether the lock is still held is
            # unknown, so leave duty; the next pass connects again and tries for it.
            with contextlib.suppress(Exception):
                await self.close()
            raise
        if self.metrics:
            self._observe(rows, set(acked), now)
        return self._passed(acked, failure)

    async def _take_on_duty(self) -> list[Pending] | None:
        """This pass's batch on the relay's own connection (None: another relay is on duty),
        the connection opened and the lock tried first when needed."""
        if self._connection is None:
            assert self._engine is not None
            self._connection = await connect_apart(self._engine)
        if not self.on_duty:
            nudge, self._committed = self._committed, False
            [(taken,)] = await run_on_driver(self._connection, _TAKE_DUTY, {
                "key": self._lock_key, "channel": self._channel, "nudge": nudge})
            if not taken:
                return None
            self.on_duty = True
            raw = await self._connection.get_raw_connection()
            await raw.driver_connection.add_listener(self._channel, self._nudged)
            log.info("outbox.on_duty", service=self.service_name)
        records = await run_on_driver(self._connection, _PENDING, {"batch": self.batch_size})
        return [Pending(*record) for record in records]

    def _nudged(self, *_: Any) -> None:
        """A replica not on duty committed rows (its NOTIFY): make a pass."""
        self._wake.set()

    def _passed(self, acked: list[int], failure: Exception | None) -> int:
        if acked:
            log.debug("outbox.published", count=len(acked))
        if failure is not None:
            raise failure
        return len(acked)

    def _observe_none(self) -> None:
        if self.metrics:
            self.metrics.outbox_pending.set(0)
            self.metrics.outbox_lag.set(0)

    def _pending_query(self) -> Select:
        """The oldest unpublished rows, in order, at most a batch."""
        return _pending_query(self.batch_size)

    async def _take_stepwise(self, session: AsyncSession) -> list[Row] | None:
        """This pass's batch (None: not this relay's turn), one step at a time: the turn, then
        the rows (`FOR UPDATE SKIP LOCKED` on PostgreSQL). SQLite's path."""
        if not await take_turn(session, self._lock_key):
            return None
        query = self._pending_query()
        if is_postgres(session):
            query = query.with_for_update(skip_locked=True)
        return list((await session.exec(query)).all())

    async def _publish(self, js: JetStreamContext, rows: list[Any]) -> tuple[list[int], list[int], Exception | None]:
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

    def _observe(self, rows: list[Any], acked: set[int], now: datetime) -> None:
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


def _error_text(failure: Exception | None) -> str:
    return f"{type(failure).__name__}: {failure}"[:2000]


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

"""Every query of the notifications service."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Row,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    delete,
    exists,
    func,
    literal,
    literal_column,
    or_,
    true,
    tuple_,
    union_all,
    update,
)
from sqlalchemy import select as sa_select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from notifications.domain.delivery import Delivery, DeliveryStatus
from notifications.domain.intents import (
    NotificationIntent,
    NotificationKind,
    Recipient,
    RecipientRole,
)
from notifications.models import (
    DeliveryAttemptRow,
    NeedAllocationRow,
    NotificationRow,
    SubscriptionRow,
)
from pathways_shared.db import DriverStatement, insert_if_new, is_postgres
from pathways_shared.infra_models import ProcessedEvent
from pathways_shared.pagination import newest_first

# --------------------------------------------------------------------------- rows <-> domain


def delivery_of(row: NotificationRow) -> Delivery:
    return Delivery(
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        lease_expires_at=row.lease_expires_at,
        last_error=row.last_error,
        delivered_at=row.delivered_at,
    )


def apply_delivery(row: NotificationRow, delivery: Delivery, now: datetime) -> None:
    row.status = delivery.status.value
    row.attempts = delivery.attempts
    row.next_attempt_at = delivery.next_attempt_at
    row.lease_expires_at = delivery.lease_expires_at
    row.last_error = delivery.last_error
    row.delivered_at = delivery.delivered_at
    row.updated_at = now


def intent_of(row: NotificationRow) -> NotificationIntent:
    return NotificationIntent(
        idempotency_key=row.idempotency_key,
        event_id=row.event_id,
        event_type=row.event_type,
        kind=NotificationKind(row.kind),
        recipient=Recipient(RecipientRole(row.recipient_role), row.recipient_key),
        referral_id=row.referral_id,
        need_ids=tuple(uuid.UUID(n) for n in row.need_ids),
    )


WAITING = (DeliveryStatus.PENDING.value, DeliveryStatus.RETRYING.value)
NOTIFICATIONS: Table = NotificationRow.__table__  # type: ignore[attr-defined]
NEED_ALLOCATIONS: Table = NeedAllocationRow.__table__  # type: ignore[attr-defined]


_SUBSCRIPTIONS: Table = SubscriptionRow.__table__  # type: ignore[attr-defined]


_ACTIVE_SUBSCRIPTIONS = sa_select(
    _SUBSCRIPTIONS.c.id,
    _SUBSCRIPTIONS.c.event_types,
    _SUBSCRIPTIONS.c.areas,
    _SUBSCRIPTIONS.c.cohort_events_only,
    _SUBSCRIPTIONS.c.active,
    _SUBSCRIPTIONS.c.deleted_at,
).where(_SUBSCRIPTIONS.c.active.is_(True), _SUBSCRIPTIONS.c.deleted_at.is_(None))


@functools.cache
def _mark_and_read_subscriptions() -> Any:
    """PostgreSQL: record the processed event (`INSERT ... ON CONFLICT DO NOTHING`, a CTE run
    once whatever reads it) and read every active subscription, in one statement. Each row is
    whether the event was new, then a subscription (NULLs when there is none)."""
    processed: Table = ProcessedEvent.__table__  # type: ignore[attr-defined]
    marked = (
        pg_insert(processed)
        .values({c: bindparam(f"new_{c}") for c in ("consumer", "event_id", "event_type",
                                                    "processed_at")})
        .on_conflict_do_nothing()
        .returning(processed.c.id)
        .cte("marked")
    )
    active = _ACTIVE_SUBSCRIPTIONS.subquery("active")
    new = sa_select(func.count()).select_from(marked).scalar_subquery().label("new")
    return sa_select(new, *active.c).select_from(
        sa_select(literal(1).label("one")).subquery("one").outerjoin(active, true())
    )


def _active_ids() -> Any:
    """The active subscriptions' ids, in one text (`subscriptions_seen` says the same of rows
    read before): which subscriptions route an event. Their routing columns (patterns, areas,
    cohort events only) are written once, when one is created, so the ids say it all."""
    return (
        sa_select(func.coalesce(func.string_agg(
            cast(_SUBSCRIPTIONS.c.id, Text), aggregate_order_by(literal_column("','"),
                                                                 _SUBSCRIPTIONS.c.id)),
            literal_column("''")))
        .where(_SUBSCRIPTIONS.c.active.is_(True), _SUBSCRIPTIONS.c.deleted_at.is_(None))
        .scalar_subquery()
    )


def subscriptions_seen(rows: Sequence[Row[Any]]) -> str:
    """`_active_ids` of the active subscriptions' rows `rows`, read before."""
    return ",".join(str(i) for i in sorted(row.id for row in rows))


def _typed(table: Table, columns: Sequence[str], prefix: str) -> Any:
    """A row of `table`'s `columns` as typed parameters named `prefix` + column."""
    return sa_select(*(bindparam(f"{prefix}{c}", type_=table.c[c].type) for c in columns))


async def _on_driver(
    connection: AsyncConnection, statement: DriverStatement, params: dict[str, Any]
) -> list[Any]:
    """`statement` run straight on the connection's asyncpg connection (`run_on_driver`, for
    a connection rather than a session): its rows as the driver's records. A connection that
    failed under it is invalidated (the pool does not hand it out again)."""
    fairy = await connection.get_raw_connection()
    compiled = statement.compiled(connection.dialect)
    try:
        return await fairy.driver_connection.fetch(compiled.sql, *compiled.arguments(params))
    except BaseException:
        await connection.invalidate()
        raise


@functools.cache
def _settle(
    deliveries: int, columns: tuple[str, ...], allocation: tuple[str, ...] | None, forget: bool
) -> DriverStatement:
    """PostgreSQL, one statement: record the event processed (when the active subscriptions
    are still those it was routed by), and only then add its `deliveries` (their `columns`;
    each unless one with its idempotency key exists) and keep its allocation (`allocation`:
    the columns of the row stored; `forget`: the need's row deleted); then whether it was
    recorded, and whether it had been before."""
    processed: Table = ProcessedEvent.__table__  # type: ignore[attr-defined]
    marked = (
        pg_insert(processed)
        .from_select(
            ["consumer", "event_id", "event_type", "processed_at"],
            sa_select(*(bindparam(name, type_=processed.c[name].type) for name in (
                "consumer", "event_id", "event_type", "processed_at"))).where(
                _active_ids() == bindparam("subscriptions", type_=Text())),
        )
        .on_conflict_do_nothing()
        .returning(processed.c.id)
        .cte("marked")
    )
    after = exists().select_from(marked)
    ctes = []
    if deliveries:
        rows = [_typed(NOTIFICATIONS, columns, f"d{n}_").where(after) for n in range(deliveries)]
        ctes.append(
            pg_insert(NOTIFICATIONS)
            .from_select(list(columns), union_all(*rows) if deliveries > 1 else rows[0])
            .on_conflict_do_nothing()
            .returning(NOTIFICATIONS.c.id)
            .cte("added")
        )
    if allocation is not None:
        stored = pg_insert(NEED_ALLOCATIONS).from_select(
            list(allocation), _typed(NEED_ALLOCATIONS, allocation, "new_").where(after))
        ctes.append(stored.on_conflict_do_update(
            index_elements=[NEED_ALLOCATIONS.c.need_id],
            set_={c: stored.excluded[c] for c in allocation if c != "need_id"},
        ).returning(NEED_ALLOCATIONS.c.need_id).cte("allocation"))
    elif forget:
        ctes.append(delete(NEED_ALLOCATIONS).where(
            NEED_ALLOCATIONS.c.need_id == bindparam("forget", type_=NEED_ALLOCATIONS.c.need_id.type),
            after,
        ).returning(NEED_ALLOCATIONS.c.need_id).cte("allocation"))
    seen = exists().where(
        processed.c.consumer == bindparam("consumer"), processed.c.event_id == bindparam("event_id")
    )
    # Each data-modifying CTE runs once, whether or not the query reads it; counted here so
    # the statement says what it did.
    return DriverStatement(sa_select(
        sa_select(func.count()).select_from(marked).scalar_subquery().label("marked"),
        seen.label("seen"),
        *(sa_select(func.count()).select_from(cte).scalar_subquery() for cte in ctes),
    ))


async def settle(
    connection: AsyncConnection,
    consumer: str,
    event_id: str,
    event_type: str,
    *,
    subscriptions: str,
    deliveries: Sequence[Mapping[str, Any]],
    allocation: Mapping[str, Any] | None,
    forget: uuid.UUID | None,
    now: datetime,
) -> str | None:
    """PostgreSQL, one statement (for a connection outside any transaction): record the event
    processed, add its deliveries and keep its allocation, as the consumer's ordinary path
    does, when the active subscriptions are still `subscriptions` (`subscriptions_seen` of
    those it was routed by). "handled"; "duplicate" when it had been recorded before; None
    (nothing written) when the subscriptions changed meanwhile."""
    params: dict[str, Any] = {
        "consumer": consumer, "event_id": event_id, "event_type": event_type,
        "processed_at": now, "subscriptions": subscriptions, "forget": forget,
    }
    for n, row in enumerate(deliveries):
        params.update({f"d{n}_{name}": value for name, value in row.items()})
    params.update({f"new_{name}": value for name, value in (allocation or {}).items()})
    statement = _settle(
        len(deliveries), tuple(deliveries[0]) if deliveries else (),
        tuple(allocation) if allocation is not None else None, forget is not None,
    )
    marked, seen, *_ = (await _on_driver(connection, statement, params))[0]
    if marked:
        return "handled"
    return "duplicate" if seen else None


async def active_subscriptions(connection: AsyncConnection) -> Sequence[Row[Any]]:
    """What routing needs of every active subscription (`NotificationsRepository`'s, on a
    connection)."""
    return (await connection.execute(_ACTIVE_SUBSCRIPTIONS)).all()


@functools.cache
def _upsert_allocation(dialect_name: str) -> Any:
    statement = (pg_insert if dialect_name == "postgresql" else sqlite_insert)(NEED_ALLOCATIONS)
    return statement.on_conflict_do_update(
        index_elements=[NEED_ALLOCATIONS.c.need_id],
        set_={
            c.name: statement.excluded[c.name] for c in NEED_ALLOCATIONS.c if c.name != "need_id"
        },
    )


def _due(now: Any) -> Any:
    """The deliveries a worker may begin an attempt on at `now` (`Delivery.is_due`)."""
    return or_(
        and_(
            NOTIFICATIONS.c.status == DeliveryStatus.PENDING.value,
            or_(NOTIFICATIONS.c.next_attempt_at.is_(None), NOTIFICATIONS.c.next_attempt_at <= now),
        ),
        and_(
            NOTIFICATIONS.c.status == DeliveryStatus.RETRYING.value,
            NOTIFICATIONS.c.next_attempt_at <= now,
        ),
        and_(
            NOTIFICATIONS.c.status == DeliveryStatus.SENDING.value,
            NOTIFICATIONS.c.lease_expires_at <= now,
        ),
    )


@functools.cache
def _claim() -> Any:
    """PostgreSQL, one statement: claim the due deliveries (``FOR UPDATE SKIP LOCKED``, the
    oldest first, up to `limit`) as `begin_attempt` does (sending, one attempt more, a lease
    until `lease`) and write each one's attempt row; unless one of them is an interrupted
    attempt (sending, its lease expired: the worker's ordinary claim closes its attempt
    first), when nothing is written. The claimed rows, oldest first, with `interrupted`."""
    now = bindparam("now", type_=NOTIFICATIONS.c.updated_at.type)
    due = (
        sa_select(NOTIFICATIONS.c.id, NOTIFICATIONS.c.status)
        .where(_due(now))
        .order_by(NOTIFICATIONS.c.created_at)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True)
        .cte("due")
    )
    interrupted = exists().where(due.c.status == DeliveryStatus.SENDING.value)
    claimed = (
        update(NOTIFICATIONS)
        .where(NOTIFICATIONS.c.id == due.c.id, ~interrupted)
        .values(
            status=DeliveryStatus.SENDING.value,
            attempts=NOTIFICATIONS.c.attempts + 1,
            next_attempt_at=None,
            lease_expires_at=bindparam("lease", type_=NOTIFICATIONS.c.lease_expires_at.type),
            updated_at=now,
        )
        .returning(*NOTIFICATIONS.c)
        .cte("claimed")
    )
    attempts: Table = DeliveryAttemptRow.__table__  # type: ignore[attr-defined]
    started = (
        pg_insert(attempts)
        .from_select(["notification_id", "number", "started_at"],
                     sa_select(claimed.c.id, claimed.c.attempts, now))
        .returning(attempts.c.id)
        .cte("started")
    )
    count = sa_select(func.count()).select_from(started).scalar_subquery()
    return (
        sa_select(*claimed.c, interrupted.label("interrupted"), count.label("started"))
        .select_from(sa_select(literal(1).label("one")).subquery("one").outerjoin(claimed, true()))
        .order_by(claimed.c.created_at)
    )


async def claim_due_in_one(
    connection: AsyncConnection, now: datetime, lease: datetime, limit: int
) -> list[NotificationRow] | None:
    """PostgreSQL, one statement (for a connection outside any transaction): what the
    worker's claim does (`NotificationsRepository.claim_due`, `begin_attempt`, the attempt
    rows) when none of the due deliveries is an interrupted attempt; None (nothing written)
    when one is: the worker's ordinary claim closes it."""
    rows = (await connection.execute(_claim(), {"now": now, "lease": lease, "limit": limit})).all()
    if rows[0].interrupted:
        return None
    columns = [c.name for c in NOTIFICATIONS.c]
    return [NotificationRow(**{c: getattr(row, c) for c in columns})
            for row in rows if row.id is not None]


class NotificationsRepository:
    """Every query of the notifications service, on the caller's session (the caller owns the
    transaction); the mapping between rows and domain values is the module's functions."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --------------------------------------------------------------------------- subscriptions
    async def add_subscription(self, row: SubscriptionRow) -> SubscriptionRow:
        self.session.add(row)
        await self.session.flush()
        return row

    async def get_subscription(
        self, subscription_id: uuid.UUID, *, for_update: bool = False
    ) -> SubscriptionRow | None:
        query = select(SubscriptionRow).where(
            SubscriptionRow.id == subscription_id, col(SubscriptionRow.deleted_at).is_(None)
        )
        if for_update and is_postgres(self.session):
            query = query.with_for_update()
        return (await self.session.exec(query)).first()

    async def list_subscriptions(
        self,
        *,
        created_by: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[SubscriptionRow]:
        query = select(SubscriptionRow).where(col(SubscriptionRow.deleted_at).is_(None))
        if created_by is not None:
            query = query.where(SubscriptionRow.created_by == created_by)
        query = newest_first(query, col(SubscriptionRow.created_at), col(SubscriptionRow.id),
                             after, limit)
        return list((await self.session.exec(query)).all())

    async def mark_processed_and_subscriptions(
        self, consumer: str, event_id: str, event_type: str, now: datetime
    ) -> tuple[bool, list[Row[Any]]]:
        """PostgreSQL, one round trip: what the shared consumer's `mark_processed` and
        `active_subscriptions` answer (whether `consumer` had not handled the event before,
        now recorded; the active subscriptions' routing columns)."""
        connection = await self.session.connection()
        rows = (await connection.execute(_mark_and_read_subscriptions(), {
            "new_consumer": consumer, "new_event_id": event_id, "new_event_type": event_type,
            "new_processed_at": now,
        })).all()
        return bool(rows[0].new), [row for row in rows if row.id is not None]

    async def active_subscriptions(self) -> Sequence[Row[Any]]:
        """What routing needs of every active subscription: read for every consumed event, so
        plain rows rather than model instances."""
        return await active_subscriptions(await self.session.connection())

    # --------------------------------------------------------------------------- notifications
    async def add_notifications_if_new(self, rows: Sequence[Mapping[str, Any]]) -> int:
        """Insert, in one statement, each row (its column values) unless one with the same
        idempotency key exists; answers how many were inserted."""
        if not rows:
            return 0
        # One cached statement, the rows as its parameters: nothing is built per call or per row.
        statement = insert_if_new(self.session, NOTIFICATIONS, NOTIFICATIONS.c.id)
        connection = await self.session.connection()
        return len((await connection.execute(statement, list(rows))).all())

    async def claim_due(self, now: datetime, limit: int) -> list[NotificationRow]:
        """Deliveries a worker may attempt now, locked so no other worker takes them."""
        query = (
            select(NotificationRow)
            .where(_due(now))
            .order_by(col(NotificationRow.created_at))
            .limit(limit)
        )
        if is_postgres(self.session):
            query = query.with_for_update(skip_locked=True)
        return list((await self.session.exec(query)).all())

    async def get_notification(
        self, notification_id: uuid.UUID, *, for_update: bool = False
    ) -> NotificationRow | None:
        query = select(NotificationRow).where(NotificationRow.id == notification_id)
        if for_update and is_postgres(self.session):
            query = query.with_for_update()
        return (await self.session.exec(query)).first()

    async def notifications_by_id(
        self, notification_ids: Sequence[uuid.UUID], *, for_update: bool = False
    ) -> dict[uuid.UUID, NotificationRow]:
        query = (
            select(NotificationRow)
            .where(col(NotificationRow.id).in_(list(notification_ids)))
            .order_by(col(NotificationRow.id))  # locks taken in one order by every worker
        )
        if for_update and is_postgres(self.session):
            query = query.with_for_update()
        return {row.id: row for row in (await self.session.exec(query)).all()}

    async def list_notifications(
        self,
        *,
        referral_id: uuid.UUID | None,
        status: str | None,
        after: tuple[datetime, uuid.UUID] | None,
        limit: int,
    ) -> list[NotificationRow]:
        query = select(NotificationRow)
        if referral_id is not None:
            query = query.where(NotificationRow.referral_id == referral_id)
        if status is not None:
            query = query.where(NotificationRow.status == status)
        query = newest_first(query, col(NotificationRow.created_at), col(NotificationRow.id),
                             after, limit)
        return list((await self.session.exec(query)).all())

    async def notifications_for_crn(self, crn: str) -> list[NotificationRow]:
        query = (
            select(NotificationRow)
            .where(NotificationRow.crn == crn)
            .order_by(col(NotificationRow.created_at), col(NotificationRow.id))
        )
        return list((await self.session.exec(query)).all())

    async def notifications_for_event(self, event_id: uuid.UUID) -> list[NotificationRow]:
        query = select(NotificationRow).where(NotificationRow.event_id == event_id)
        return list((await self.session.exec(query)).all())

    async def cancel_waiting_for_subscription(
        self, subscription_id: uuid.UUID, reason: str, now: datetime
    ) -> int:
        connection = await self.session.connection()
        result = await connection.execute(
            update(NotificationRow)
            .where(
                col(NotificationRow.subscription_id) == subscription_id,
                col(NotificationRow.status).in_(WAITING),
            )
            .values(
                status=DeliveryStatus.CANCELLED.value,
                next_attempt_at=None,
                last_error=reason,
                updated_at=now,
            )
        )
        return int(result.rowcount or 0)

    # --------------------------------------------------------------------------- attempts
    def add_attempt(self, attempt: DeliveryAttemptRow) -> DeliveryAttemptRow:
        self.session.add(attempt)
        return attempt

    async def open_attempt(
        self, notification_id: uuid.UUID, number: int
    ) -> DeliveryAttemptRow | None:
        query = select(DeliveryAttemptRow).where(
            DeliveryAttemptRow.notification_id == notification_id,
            DeliveryAttemptRow.number == number,
        )
        return (await self.session.exec(query)).first()

    async def attempts_numbered(
        self, numbered: Sequence[tuple[uuid.UUID, int]]
    ) -> dict[tuple[uuid.UUID, int], DeliveryAttemptRow]:
        """The attempts with these (notification id, number)."""
        if not numbered:
            return {}
        query = select(DeliveryAttemptRow).where(
            tuple_(col(DeliveryAttemptRow.notification_id), col(DeliveryAttemptRow.number)).in_(
                list(numbered)
            )
        )
        return {(a.notification_id, a.number): a for a in (await self.session.exec(query)).all()}

    async def attempts_of(
        self, notification_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, list[DeliveryAttemptRow]]:
        if not notification_ids:
            return {}
        query = (
            select(DeliveryAttemptRow)
            .where(col(DeliveryAttemptRow.notification_id).in_(list(notification_ids)))
            .order_by(col(DeliveryAttemptRow.notification_id), col(DeliveryAttemptRow.number))
        )
        grouped: dict[uuid.UUID, list[DeliveryAttemptRow]] = {i: [] for i in notification_ids}
        for attempt in (await self.session.exec(query)).all():
            grouped[attempt.notification_id].append(attempt)
        return grouped

    # --------------------------------------------------------------------------- allocations
    async def record_allocation(self, values: Mapping[str, Any]) -> None:
        """Insert or replace the allocation of a need (the row's column values), in one
        statement."""
        connection = await self.session.connection()
        await connection.execute(_upsert_allocation(connection.dialect.name), dict(values))

    async def forget_allocation(self, need_id: uuid.UUID) -> None:
        connection = await self.session.connection()
        await connection.execute(
            delete(NeedAllocationRow).where(col(NeedAllocationRow.need_id) == need_id)
        )

    async def providers_of(self, need_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
        ids = list(need_ids)
        if not ids:
            return {}
        query = select(NeedAllocationRow).where(col(NeedAllocationRow.need_id).in_(ids))
        return {row.need_id: row.provider_code for row in (await self.session.exec(query)).all()}

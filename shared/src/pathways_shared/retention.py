"""Keeping bookkeeping no longer than necessary (DOMAIN.md): published outbox rows,
processed-event records and resolved dead letters are deleted once older than their windows
(`ServiceSettings.retention_*_days`, never shorter than the replay window). Deletes go in
batches by primary key, each batch its own short transaction, so no long lock is held."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from pathways_shared.config import ServiceSettings
from pathways_shared.infra_models import DeadLetter, OutboxMessage, ProcessedEvent
from pathways_shared.observability import get_logger

log = get_logger(__name__)


async def delete_in_batches(
    sessionmaker: async_sessionmaker[AsyncSession], key, condition, *, batch_size: int = 1000,
) -> int:
    """Delete the rows of `key`'s table meeting `condition`, `batch_size` at a time."""
    table = key.table
    deleted = 0
    while True:
        async with sessionmaker() as session, session.begin():
            keys = list((await session.exec(
                select(key).where(condition).order_by(key).limit(batch_size))).all())
            if keys:
                await session.exec(delete(table).where(key.in_(keys)))
        deleted += len(keys)
        if len(keys) < batch_size:
            return deleted


async def delete_expired_bookkeeping(
    sessionmaker: async_sessionmaker[AsyncSession], settings: ServiceSettings, now: datetime,
    *, batch_size: int = 1000,
) -> dict[str, int]:
    """One pass: how many rows of each kind were deleted."""
    outbox = OutboxMessage.__table__.c
    processed = ProcessedEvent.__table__.c
    dead = DeadLetter.__table__.c
    done = {
        "outbox": await delete_in_batches(
            sessionmaker, outbox.seq,
            outbox.published_at < now - timedelta(days=settings.retention_outbox_days),
            batch_size=batch_size),
        "processed_events": await delete_in_batches(
            sessionmaker, processed.id,
            processed.processed_at < now - timedelta(days=settings.retention_processed_events_days),
            batch_size=batch_size),
        "dead_letters": await delete_in_batches(
            sessionmaker, dead.id,
            dead.resolved_at < now - timedelta(days=settings.retention_dead_letters_days),
            batch_size=batch_size),
    }
    if any(done.values()):
        log.info("retention.bookkeeping_deleted", **done)
    return done

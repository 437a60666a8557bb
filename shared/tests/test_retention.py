"""Bookkeeping kept no longer than necessary, against real PostgreSQL (issue 18)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import func, insert
from sqlmodel import select

from pathways_shared.config import ServiceSettings
from pathways_shared.db import make_engine, make_sessionmaker
from pathways_shared.infra_models import DeadLetter, OutboxMessage, ProcessedEvent
from pathways_shared.retention import delete_expired_bookkeeping
from pathways_shared.testing import TEST_JWT_SECRET

NOW = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)


def test_a_window_shorter_than_the_replay_window_is_refused():
    with pytest.raises(ValidationError, match="replay window"):
        ServiceSettings(service_name="x", jwt_secret=TEST_JWT_SECRET, database_url="sqlite://",
                        replay_window_days=14, retention_outbox_days=7)


async def test_expired_bookkeeping_is_deleted_in_batches_and_the_rest_kept(settings):
    engine = make_engine(settings.database_url)
    sm = make_sessionmaker(engine)
    old, recent = NOW - timedelta(days=31), NOW - timedelta(days=29)
    async with sm() as session, session.begin():
        for i, (published, label) in enumerate([(old, "old"), (recent, "recent"), (None, "unsent")] * 3):
            await session.exec(insert(OutboxMessage.__table__).values(
                event_id=f"{label}-{i}", event_type="t", subject="s", payload="{}", headers="{}",
                created_at=old, published_at=published))
        for i, at in enumerate([old, old, recent]):
            await session.exec(insert(ProcessedEvent.__table__).values(
                consumer="c", event_id=f"p{i}", event_type="t", processed_at=at))
        for i, resolved in enumerate([old, recent, None]):
            await session.exec(insert(DeadLetter.__table__).values(
                consumer="c", stream="S", subject="s", payload="{}", headers="{}", error="e",
                created_at=old, resolved_at=resolved, event_id=f"d{i}"))
    try:
        done = await delete_expired_bookkeeping(sm, settings, NOW, batch_size=2)
        assert done == {"outbox": 3, "processed_events": 2, "dead_letters": 1}
        async with sm() as session:
            outbox = set((await session.exec(select(OutboxMessage.event_id))).all())
            assert not any(e.startswith("old") for e in outbox) and len(outbox) == 6
            assert (await session.exec(select(ProcessedEvent.event_id))).all() == ["p2"]
            assert sorted((await session.exec(select(DeadLetter.event_id))).all()) == ["d1", "d2"]
            assert await session.scalar(select(func.count()).select_from(OutboxMessage)) == 6
        assert await delete_expired_bookkeeping(sm, settings, NOW) == {
            "outbox": 0, "processed_events": 0, "dead_letters": 0}
    finally:
        await engine.dispose()

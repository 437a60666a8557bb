"""The service-level scheduler: publishes `providers.referral.deadline-missed` once per
missed deadline.

State lives in the database (the `*_missed_at` columns written with the outbox row), so it
survives restarts; rows are taken `FOR UPDATE SKIP LOCKED`, so several replicas share the
work without reporting one deadline twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel.ext.asyncio.session import AsyncSession

from pathways_shared.db import transaction
from pathways_shared.events import utc_now
from pathways_shared.observability import get_logger
from pathways_shared.runtime import Runtime
from providers import service
from providers.domain.working_days import WorkingCalendar

log = get_logger(__name__)


async def run_deadline_check(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    now: datetime,
    calendar: WorkingCalendar,
    base_url: str,
    batch: int = 100,
) -> int:
    """One pass, batch after batch, each in its own transaction; returns events published."""
    total = 0
    while True:
        async with transaction(sessionmaker) as session:
            ctx = service.Context(now=now, calendar=calendar, base_url=base_url)
            published, seen = await service.report_missed_deadlines(session, ctx, batch=batch)
        total += published
        if seen < batch or published == 0:
            return total


def deadline_worker(
    calendar: WorkingCalendar, poll_seconds: float
) -> Callable[[Runtime], Awaitable[None]]:
    async def deadline_scheduler(runtime: Runtime) -> None:
        # An error ends this run; the runtime logs it and starts the worker again.
        while True:
            count = await run_deadline_check(
                runtime.sessionmaker,
                now=utc_now(),
                calendar=calendar,
                base_url=runtime.settings.base_url,
            )
            if count:
                log.info("deadlines.missed_published", count=count)
            await asyncio.sleep(poll_seconds)

    return deadline_scheduler

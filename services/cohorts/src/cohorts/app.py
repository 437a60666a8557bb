"""The cohorts service: `create_app(settings)` wires routes, relay, consumers and workers."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import uvicorn
from fastapi import FastAPI
from sqlalchemy import func, select

from cohorts import api, consumers, service
from cohorts.config import CohortsSettings
from pathways_shared.db import is_postgres, transaction
from pathways_shared.observability import get_logger
from pathways_shared.runtime import Runtime, build_app

log = get_logger(__name__)

# Replicas take turns: one scheduler at a time holds this transaction-scoped lock.
REVIEW_LOCK = 0x636F686F  # "coho"


async def review_scheduler(runtime: Runtime) -> None:
    """Publishes `cohorts.member.review-due` (with a deselection suggestion for members quiet
    for a year) as each member's review comes, then moves their review on by an interval."""
    settings = runtime.settings
    interval = getattr(settings, "review_scan_seconds", 300.0)
    while True:
        async with transaction(runtime.sessionmaker) as session:
            due = 0
            locked = True
            if is_postgres(session):
                locked = bool(
                    await session.scalar(select(func.pg_try_advisory_xact_lock(REVIEW_LOCK)))
                )
            if locked:
                due = await service.review_due_members(
                    session, now=datetime.now(UTC), base_url=settings.base_url
                )
        if due:
            log.info("reviews.due", count=due)
            continue
        await asyncio.sleep(interval)


def create_app(settings: CohortsSettings | None = None) -> FastAPI:
    settings = settings or CohortsSettings()
    return build_app(
        settings,
        title="Pathways cohorts service",
        description="Cohorts: IOM fixed, flex and free cohort selection",
        routers=[api.router],
        subscriptions=consumers.subscriptions(settings),
        workers=[review_scheduler],
    )


def main() -> None:
    settings = CohortsSettings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None)


if __name__ == "__main__":
    main()

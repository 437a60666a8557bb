"""The cohorts service's background loop: reviews as they come due.

Publishes `cohorts.member.review-due` (with a deselection suggestion for members quiet for a
year) as each member's review comes, then moves their review on by an interval. Replicas take
turns: one scan at a time holds a transaction-scoped advisory lock.
"""

from __future__ import annotations

import asyncio

from cohorts import service
from pathways_shared.clock import utc_now
from pathways_shared.db import take_turn, transaction
from pathways_shared.observability import get_logger
from pathways_shared.runtime import Runtime

log = get_logger(__name__)

REVIEW_LOCK = 0x636F686F  # "coho"


async def review_scheduler(runtime: Runtime) -> None:
    settings = runtime.settings
    interval = getattr(settings, "review_scan_seconds", 300.0)
    while True:
        async with transaction(runtime.sessionmaker) as session:
            due = 0
            if await take_turn(session, REVIEW_LOCK):
                due = await service.review_due_members(
                    session, now=utc_now(), base_url=settings.base_url
                )
        if due:
            log.info("reviews.due", count=due)
            continue
        await asyncio.sleep(interval)

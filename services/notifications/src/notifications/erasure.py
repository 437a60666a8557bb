"""Erasing a notification's personal data once its delivery has finished
(pathways_shared.erasure).

A notification (one email or webhook call for one recipient) ends when delivered, failed for
good or cancelled, at its `updated_at`. Erasing it blanks the CRN, the address it went to,
the envelope it was rendered from (`event_payload`, which names the person) and the error
texts of the notification and its attempts (a receiver's answer may echo the body). The
delivery log's skeleton stays: ids, kind, channel, recipient role, status, counts and times.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from sqlalchemy import update
from sqlmodel.ext.asyncio.session import AsyncSession

from notifications.domain.delivery import FINAL_STATUSES
from notifications.models import DeliveryAttemptRow, NotificationRow
from pathways_shared.erasure import Erasable, ended_records

NOTIFICATIONS = NotificationRow.__table__
ATTEMPTS = DeliveryAttemptRow.__table__
ERASED_PAYLOAD = "{}"


class NotificationEraser:
    record_type = "notification"
    fields = ("crn", "address", "event_payload", "last_error", "attempt_details")

    async def due(
        self, session: AsyncSession, ended_before: datetime, limit: int | None
    ) -> list[Erasable]:
        n = NOTIFICATIONS.c
        return await ended_records(
            session, NOTIFICATIONS, ended=n.status.in_(sorted(s.value for s in FINAL_STATUSES)),
            ended_at=n.updated_at, ended_before=ended_before, limit=limit)

    async def erase(self, session: AsyncSession, records: Sequence[Erasable], now: datetime) -> None:
        ids = [UUID(r.record_id) for r in records]
        await session.exec(update(NOTIFICATIONS).where(NOTIFICATIONS.c.id.in_(ids)).values(
            crn=None, address=None, event_payload=ERASED_PAYLOAD, last_error=None, erased_at=now))
        await session.exec(update(ATTEMPTS).where(ATTEMPTS.c.notification_id.in_(ids)).values(
            detail=None))


ERASERS = (NotificationEraser(),)

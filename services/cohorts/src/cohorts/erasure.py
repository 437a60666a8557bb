"""Erasing a cohort membership's personal data once the person was deselected
(pathways_shared.erasure).

A membership (one spell in one cohort of one area) ends when the person is deselected, at
`deselected_at`. Erasing it blanks the CRN, the rationale for adoption, the criteria reasons
and the deselection comments; the skeleton (id, area, cohort, status, dates, score, reason
code) stays. An erased membership is no longer listed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import update
from sqlmodel.ext.asyncio.session import AsyncSession

from cohorts.domain.membership import MembershipStatus
from cohorts.models import MembershipRecord
from pathways_shared.erasure import Erasable, ended_records

MEMBERSHIPS = MembershipRecord.__table__


class MembershipEraser:
    record_type = "cohort-membership"
    fields = ("crn", "rationale", "criteria_reasons", "deselection_comments")

    async def due(
        self, session: AsyncSession, ended_before: datetime, limit: int | None
    ) -> list[Erasable]:
        m = MEMBERSHIPS.c
        return await ended_records(
            session, MEMBERSHIPS, ended=m.status == MembershipStatus.DESELECTED.value,
            ended_at=m.deselected_at, ended_before=ended_before, limit=limit)

    async def erase(self, session: AsyncSession, records: Sequence[Erasable], now: datetime) -> None:
        ids = [r.record_id for r in records]
        await session.exec(update(MEMBERSHIPS).where(MEMBERSHIPS.c.id.in_(ids)).values(
            crn=None, rationale=None, criteria_reasons=[], deselection_comments=None,
            erased_at=now))


ERASERS = (MembershipEraser(),)

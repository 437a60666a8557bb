"""Erasing a referral's personal data once it has ended (pathways_shared.erasure).

A referral ends when every need has ended (closed or withdrawn); it ended at its
`updated_at`, the time of the last need to end. Erasing it blanks the person's identifiers,
name and date of birth, the interpreter's language, the practitioner's name and email, the
withdrawal comments, the needs' free text and the history's details. The skeleton stays:
ids, area, dates, statuses, pathways, providers, sex, supervision and risk categories.
An erased referral is no longer served (404); a subject access request reports the erasure.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from sqlalchemy import update
from sqlmodel.ext.asyncio.session import AsyncSession

from pathways_shared.erasure import Erasable, ended_records
from referrals.domain.referral import ReferralStatus
from referrals.models import HistoryRow, NeedRow, ReferralRow

REFERRALS = ReferralRow.__table__
NEEDS = NeedRow.__table__
HISTORY = HistoryRow.__table__


class ReferralEraser:
    record_type = "referral"
    fields = (
        "crn", "noms_number", "pnc_number", "given_name", "family_name", "date_of_birth",
        "interpreter_language", "practitioner_name", "practitioner_email",
        "withdrawal_comments", "need_details", "need_status_reasons", "history_details",
    )

    async def due(
        self, session: AsyncSession, ended_before: datetime, limit: int | None
    ) -> list[Erasable]:
        r = REFERRALS.c
        return await ended_records(session, REFERRALS, ended=r.status != ReferralStatus.OPEN.value,
                                   ended_at=r.updated_at, ended_before=ended_before, limit=limit)

    async def erase(self, session: AsyncSession, records: Sequence[Erasable], now: datetime) -> None:
        ids = [UUID(r.record_id) for r in records]
        await session.exec(update(REFERRALS).where(REFERRALS.c.id.in_(ids)).values(
            crn=None, noms_number=None, pnc_number=None, given_name=None, family_name=None,
            date_of_birth=None, interpreter_language=None, practitioner_name=None,
            practitioner_email=None, withdrawal_comments=None, fingerprint="", erased_at=now))
        await session.exec(update(NEEDS).where(NEEDS.c.referral_id.in_(ids)).values(
            details=None, status_reason=None))
        await session.exec(update(HISTORY).where(HISTORY.c.referral_id.in_(ids)).values(detail={}))


ERASERS = (ReferralEraser(),)

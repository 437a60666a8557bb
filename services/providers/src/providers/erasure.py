"""Erasing personal data the providers service holds once its record has ended
(pathways_shared.erasure).

- A provider referral ends when declined, completed or withdrawn (at its `updated_at`):
  erasing it blanks the CRN, the decline comments and the outcome notes.
- A need ends when no provider referral is live for it (unallocated, withdrawn, or its
  current provider referral ended), at the later of the two `updated_at`: erasing it blanks
  the CRN on the need and on its routing decisions.
- An IOM membership ends when the person leaves the cohort (at `changed_at`): erasing it
  blanks the CRN.
The skeleton stays (ids, area, pathway, service, provider, statuses, dates, age and sex on
the day) and is still served, its `crn` null.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from sqlalchemy import and_, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from pathways_shared.erasure import Erasable, ended_records, lock_due
from providers.domain.provider_referral import ENDED_STATUSES
from providers.models import IomMemberRow, NeedRow, ProviderReferralRow, RoutingDecisionRow

PROVIDER_REFERRALS = ProviderReferralRow.__table__
NEEDS = NeedRow.__table__
DECISIONS = RoutingDecisionRow.__table__
MEMBERS = IomMemberRow.__table__
ENDED = sorted(s.value for s in ENDED_STATUSES)


class ProviderReferralEraser:
    record_type = "provider-referral"
    fields = ("crn", "decline_comments", "outcome_notes")

    async def due(
        self, session: AsyncSession, ended_before: datetime, limit: int | None
    ) -> list[Erasable]:
        p = PROVIDER_REFERRALS.c
        return await ended_records(session, PROVIDER_REFERRALS, ended=p.status.in_(ENDED),
                                   ended_at=p.updated_at, ended_before=ended_before, limit=limit)

    async def erase(self, session: AsyncSession, records: Sequence[Erasable], now: datetime) -> None:
        ids = [UUID(r.record_id) for r in records]
        await session.exec(update(PROVIDER_REFERRALS).where(PROVIDER_REFERRALS.c.id.in_(ids)).values(
            crn=None, decline_comments=None, outcome_notes=None, erased_at=now))


class NeedEraser:
    record_type = "need"
    fields = ("crn", "routing_decision_crns")

    async def due(
        self, session: AsyncSession, ended_before: datetime, limit: int | None
    ) -> list[Erasable]:
        n, p = NEEDS.c, PROVIDER_REFERRALS.c
        query = lock_due(
            select(n.id, n.crn, n.updated_at, p.updated_at.label("referral_updated_at"))
            .select_from(NEEDS.outerjoin(
                PROVIDER_REFERRALS, p.id == n.current_provider_referral_id))
            .where(
                n.erased_at.is_(None), n.updated_at < ended_before,
                or_(n.status != "allocated",
                    and_(p.status.in_(ENDED), p.updated_at < ended_before)))
            .order_by(n.updated_at, n.id).limit(limit),
            NEEDS,
        )
        return [Erasable(str(r.id), r.crn, max(r.updated_at, r.referral_updated_at or r.updated_at))
                for r in (await session.exec(query)).all()]

    async def erase(self, session: AsyncSession, records: Sequence[Erasable], now: datetime) -> None:
        ids = [UUID(r.record_id) for r in records]
        await session.exec(update(NEEDS).where(NEEDS.c.id.in_(ids)).values(crn=None, erased_at=now))
        await session.exec(update(DECISIONS).where(DECISIONS.c.need_id.in_(ids)).values(crn=None))


class IomMembershipEraser:
    record_type = "iom-membership"
    fields = ("crn",)

    async def due(
        self, session: AsyncSession, ended_before: datetime, limit: int | None
    ) -> list[Erasable]:
        m = MEMBERS.c
        return await ended_records(session, MEMBERS, ended=col(m.member).is_(False),
                                   ended_at=m.changed_at, ended_before=ended_before, limit=limit)

    async def erase(self, session: AsyncSession, records: Sequence[Erasable], now: datetime) -> None:
        ids = [int(r.record_id) for r in records]
        await session.exec(update(MEMBERS).where(MEMBERS.c.id.in_(ids)).values(crn=None, erased_at=now))


ERASERS = (ProviderReferralEraser(), NeedEraser(), IomMembershipEraser())

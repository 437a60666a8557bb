"""Every query of the referrals service, and the mapping between rows and domain values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from pathways_shared.db import insert_if_new
from pathways_shared.vocabulary import (
    Complexity,
    NeedStatus,
    Pathway,
    Rosh,
    Sex,
    SupervisionStatus,
    WithdrawalReason,
)
from sqlalchemy import and_, exists, insert, or_, tuple_
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from referrals import domain
from referrals.domain import HistoryEntry, NeedFlag
from referrals.models import HistoryRow, NeedRow, ReferralRow


def _aware(moment: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; every time here is UTC."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- mapping


def _need_to_domain(row: NeedRow) -> domain.Need:
    return domain.Need(
        id=row.id,
        pathway=Pathway(row.pathway),
        complexity=Complexity(row.complexity),
        flags=tuple(NeedFlag(f) for f in row.flags),
        status=NeedStatus(row.status),
        updated_at=_aware(row.updated_at),
        details=row.details,
        service_code=row.service_code,
        provider_code=row.provider_code,
        programme=row.programme,
        provider_referral_id=row.provider_referral_id,
        status_reason=row.status_reason,
        allocated_at=_aware(row.allocated_at),
        acknowledge_by=_aware(row.acknowledge_by),
        respond_by=_aware(row.respond_by),
        last_event_at=_aware(row.last_event_at),
        missed_deadlines=frozenset(row.missed_deadlines),
    )


def _to_domain(row: ReferralRow, needs: Sequence[NeedRow]) -> domain.Referral:
    withdrawal = None
    if row.withdrawn_at is not None:
        withdrawal = domain.Withdrawal(
            reason_code=WithdrawalReason(row.withdrawal_reason),
            comments=row.withdrawal_comments,
            withdrawn_at=_aware(row.withdrawn_at),
            withdrawn_by=row.withdrawn_by or "",
        )
    return domain.Referral(
        id=row.id,
        source_reference=row.source_reference,
        area=row.area,
        submitted_at=_aware(row.submitted_at),
        submitted_by=row.submitted_by,
        person=domain.Person(
            crn=row.crn,
            noms_number=row.noms_number,
            pnc_number=row.pnc_number,
            given_name=row.given_name,
            family_name=row.family_name,
            date_of_birth=row.date_of_birth,
            sex=Sex(row.sex),
            needs_interpreter=row.needs_interpreter,
            interpreter_language=row.interpreter_language,
        ),
        supervision=domain.Supervision(
            status=SupervisionStatus(row.supervision_status),
            expected_release_date=row.expected_release_date,
        ),
        risk=domain.Risk(rosh=Rosh(row.rosh), mappa_level=row.mappa_level),
        practitioner=domain.Practitioner(
            name=row.practitioner_name, email=row.practitioner_email, team=row.practitioner_team
        ),
        consent=domain.Consent(
            given=row.consent_given, recorded_at=_aware(row.consent_recorded_at)
        ),
        needs=tuple(_need_to_domain(n) for n in sorted(needs, key=lambda n: n.position)),
        withdrawal=withdrawal,
    )


def _copy_need(need: domain.Need, row: NeedRow) -> None:
    row.status = need.status.value
    row.service_code = need.service_code
    row.provider_code = need.provider_code
    row.programme = need.programme
    row.provider_referral_id = need.provider_referral_id
    row.status_reason = need.status_reason
    row.allocated_at = need.allocated_at
    row.acknowledge_by = need.acknowledge_by
    row.respond_by = need.respond_by
    row.updated_at = need.updated_at
    row.last_event_at = need.last_event_at
    row.missed_deadlines = sorted(need.missed_deadlines)


def _referral_values(
    referral: domain.Referral, fingerprint: str, idempotency_key: str | None
) -> dict[str, Any]:
    p, s, r, pr, c = (
        referral.person,
        referral.supervision,
        referral.risk,
        referral.practitioner,
        referral.consent,
    )
    return {
        "id": referral.id,
        "source_reference": referral.source_reference,
        "idempotency_key": idempotency_key,
        "fingerprint": fingerprint,
        "area": referral.area,
        "status": referral.status.value,
        "crn": p.crn,
        "noms_number": p.noms_number,
        "pnc_number": p.pnc_number,
        "given_name": p.given_name,
        "family_name": p.family_name,
        "date_of_birth": p.date_of_birth,
        "sex": p.sex.value,
        "needs_interpreter": p.needs_interpreter,
        "interpreter_language": p.interpreter_language,
        "supervision_status": s.status.value,
        "expected_release_date": s.expected_release_date,
        "rosh": r.rosh.value,
        "mappa_level": r.mappa_level,
        "practitioner_name": pr.name,
        "practitioner_email": pr.email,
        "practitioner_team": pr.team,
        "consent_given": c.given,
        "consent_recorded_at": c.recorded_at,
        "submitted_at": referral.submitted_at,
        "submitted_by": referral.submitted_by,
        "updated_at": referral.submitted_at,
        "withdrawal_reason": None,
        "withdrawal_comments": None,
        "withdrawn_at": None,
        "withdrawn_by": None,
    }


def _need_values(referral_id: UUID, position: int, need: domain.Need) -> dict[str, Any]:
    return {
        "id": need.id,
        "referral_id": referral_id,
        "position": position,
        "pathway": need.pathway.value,
        "complexity": need.complexity.value,
        "details": need.details,
        "flags": [f.value for f in need.flags],
        "status": need.status.value,
        "service_code": need.service_code,
        "provider_code": need.provider_code,
        "programme": need.programme,
        "provider_referral_id": need.provider_referral_id,
        "status_reason": need.status_reason,
        "allocated_at": need.allocated_at,
        "acknowledge_by": need.acknowledge_by,
        "respond_by": need.respond_by,
        "updated_at": need.updated_at,
        "last_event_at": need.last_event_at,
        "missed_deadlines": sorted(need.missed_deadlines),
    }


def _history_values(referral_id: UUID, entry: HistoryEntry) -> dict[str, Any]:
    return {
        "referral_id": referral_id,
        "at": entry.at,
        "actor": entry.actor[:200],
        "event": entry.event,
        "need_id": entry.need_id,
        "detail": dict(entry.detail),
    }



def history_to_domain(row: HistoryRow) -> HistoryEntry:
    return HistoryEntry(
        at=_aware(row.at), actor=row.actor, event=row.event, need_id=row.need_id, detail=row.detail
    )


# --------------------------------------------------------------------------- queries


@dataclass(frozen=True)
class ReferralFilter:
    crn: str | None = None
    area: str | None = None
    status: str | None = None
    pathway: str | None = None
    provider_code: str | None = None
    # None: every area (a national role); otherwise only these.
    visible_areas: frozenset[str] | None = None


def list_query(where: ReferralFilter, *, limit: int, after: tuple[datetime, UUID] | None) -> Any:
    """Keyset query, newest first: each filter leads an index that ends (submitted_at, id)."""
    conditions: list[Any] = []
    if where.visible_areas is not None:
        conditions.append(ReferralRow.area.in_(sorted(where.visible_areas)))
    if where.area is not None:
        conditions.append(ReferralRow.area == where.area)
    if where.crn is not None:
        conditions.append(ReferralRow.crn == where.crn)
    if where.status is not None:
        conditions.append(ReferralRow.status == where.status)
    need_conditions = []
    if where.pathway is not None:
        need_conditions.append(NeedRow.pathway == where.pathway)
    if where.provider_code is not None:
        need_conditions.append(NeedRow.provider_code == where.provider_code)
    if need_conditions:
        conditions.append(exists().where(NeedRow.referral_id == ReferralRow.id, *need_conditions))
    if after is not None:
        conditions.append(tuple_(ReferralRow.submitted_at, ReferralRow.id) < tuple_(*after))
    query = select(ReferralRow)
    if conditions:
        query = query.where(and_(*conditions))
    return query.order_by(ReferralRow.submitted_at.desc(), ReferralRow.id.desc()).limit(limit)


class ReferralRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self,
        referral: domain.Referral,
        *,
        fingerprint: str,
        idempotency_key: str | None,
        history: Sequence[HistoryEntry],
    ) -> bool:
        """Insert the referral, its needs and history; False, writing nothing, when a referral
        with this source reference or idempotency key is already stored.

        Core statements, not ORM objects (bench/README.md): one INSERT ... ON CONFLICT DO
        NOTHING for the referral (a twin request still in flight is waited for, then seen),
        one multi-row INSERT each for the needs and the history.
        """
        inserted = await self.session.exec(
            insert_if_new(self.session, ReferralRow.__table__, ReferralRow.__table__.c.id),
            params=_referral_values(referral, fingerprint, idempotency_key),
        )
        if inserted.first() is None:
            return False
        await self.session.exec(
            insert(NeedRow.__table__),
            params=[_need_values(referral.id, position, need)
                    for position, need in enumerate(referral.needs)],
        )
        await self.add_history(referral.id, history)
        return True

    async def add_history(self, referral_id: UUID, history: Sequence[HistoryEntry]) -> None:
        if history:
            await self.session.exec(
                insert(HistoryRow.__table__),
                params=[_history_values(referral_id, entry) for entry in history],
            )

    async def _needs_of(self, referral_ids: Sequence[UUID]) -> dict[UUID, list[NeedRow]]:
        out: dict[UUID, list[NeedRow]] = {rid: [] for rid in referral_ids}
        if referral_ids:
            result = await self.session.exec(
                select(NeedRow).where(NeedRow.referral_id.in_(list(referral_ids)))
            )
            for row in result:
                out[row.referral_id].append(row)
        return out

    async def get(self, referral_id: UUID, *, for_update: bool = False) -> domain.Referral | None:
        """The referral; `for_update` locks its row so concurrent changes queue behind us."""
        query = select(ReferralRow).where(ReferralRow.id == referral_id)
        if for_update:
            query = query.with_for_update().execution_options(populate_existing=True)
        row = (await self.session.exec(query)).first()
        if row is None:
            return None
        needs = await self._needs_of([row.id])
        return _to_domain(row, needs[row.id])

    async def find_existing(
        self, *, source_reference: str, idempotency_key: str | None
    ) -> tuple[domain.Referral, str, str | None] | None:
        """The referral already made with this key or source reference, its fingerprint and key."""
        conditions = [ReferralRow.source_reference == source_reference]
        if idempotency_key is not None:
            conditions.insert(0, ReferralRow.idempotency_key == idempotency_key)
        rows = list((await self.session.exec(select(ReferralRow).where(or_(*conditions)))).all())
        if not rows:
            return None
        # The idempotency key wins over the source reference when both match different rows.
        rows.sort(key=lambda r: r.idempotency_key != idempotency_key or idempotency_key is None)
        row = rows[0]
        needs = await self._needs_of([row.id])
        return _to_domain(row, needs[row.id]), row.fingerprint, row.idempotency_key

    async def save(self, referral: domain.Referral, history: Sequence[HistoryEntry]) -> None:
        """Write back what a decision changed: status, withdrawal and needs; add history."""
        row = await self.session.get(ReferralRow, referral.id)
        if row is None:
            raise LookupError(f"referral {referral.id} is not stored")
        row.status = referral.status.value
        row.updated_at = max([n.updated_at for n in referral.needs] + [_aware(row.updated_at)])
        if referral.withdrawal is not None:
            row.withdrawal_reason = referral.withdrawal.reason_code.value
            row.withdrawal_comments = referral.withdrawal.comments
            row.withdrawn_at = referral.withdrawal.withdrawn_at
            row.withdrawn_by = referral.withdrawal.withdrawn_by
        for need in referral.needs:
            need_row = await self.session.get(NeedRow, need.id)
            if need_row is None:
                raise LookupError(f"need {need.id} is not stored")
            _copy_need(need, need_row)
        await self.session.flush()
        await self.add_history(referral.id, history)

    async def list(
        self, where: ReferralFilter, *, limit: int, after: tuple[datetime, UUID] | None
    ) -> list[domain.Referral]:
        """Newest first; up to `limit` referrals strictly after the keyset `after`."""
        rows = list((await self.session.exec(list_query(where, limit=limit, after=after))).all())
        needs = await self._needs_of([r.id for r in rows])
        return [_to_domain(r, needs[r.id]) for r in rows]

    async def history(
        self, referral_id: UUID, *, limit: int, after: tuple[datetime, int] | None
    ) -> list[tuple[int, HistoryEntry]]:
        """Oldest first by when it happened, then by when it was recorded."""
        query = select(HistoryRow).where(HistoryRow.referral_id == referral_id)
        if after is not None:
            query = query.where(tuple_(HistoryRow.at, HistoryRow.id) > tuple_(*after))
        query = query.order_by(HistoryRow.at, HistoryRow.id).limit(limit)
        rows = (await self.session.exec(query)).all()
        return [(row.id, history_to_domain(row)) for row in rows]

    async def all_for_crn(self, crn: str) -> list[tuple[domain.Referral, list[HistoryEntry]]]:
        result = await self.session.exec(
            select(ReferralRow)
            .where(ReferralRow.crn == crn)
            .order_by(ReferralRow.submitted_at, ReferralRow.id)
        )
        rows = list(result.all())
        needs = await self._needs_of([r.id for r in rows])
        out = []
        for row in rows:
            history = await self.session.exec(
                select(HistoryRow)
                .where(HistoryRow.referral_id == row.id)
                .order_by(HistoryRow.at, HistoryRow.id)
            )
            out.append((_to_domain(row, needs[row.id]), [history_to_domain(h) for h in history]))
        return out

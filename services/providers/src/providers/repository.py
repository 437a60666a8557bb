"""Every query of the providers service, and the conversions between its rows and the domain."""

from __future__ import annotations

import dataclasses
import uuid
import zlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Text, and_, bindparam, func, literal, literal_column, or_
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from pathways_shared.db import is_postgres
from pathways_shared.pagination import newest_first
from pathways_shared.vocabulary import (
    Complexity,
    DeclineReason,
    Outcome,
    Pathway,
    WithdrawalReason,
)
from providers.domain.catalogue import Service
from providers.domain.provider_referral import ProviderReferral, ProviderReferralStatus
from providers.models import (
    IomMemberRow,
    NeedRow,
    ProviderReferralRow,
    ProviderRow,
    RoutingDecisionRow,
    ServiceRow,
    WithdrawnNeedRow,
)

AWAITING_RESPONSE = ("allocated", "acknowledged")


# ---- conversions between rows and the domain ----------------------------------------------


def service_from_row(row: ServiceRow) -> Service:
    return Service.model_validate(
        {
            "code": row.code,
            "name": row.name,
            "provider_code": row.provider_code,
            "programme": row.programme,
            "pathway": row.pathway,
            "areas": row.areas,
            "priority": row.priority,
            "eligibility": row.eligibility,
            "acknowledge_days": row.acknowledge_days,
            "respond_days": row.respond_days,
            "active": row.active,
        }
    )


def service_row(service: Service, now: datetime) -> ServiceRow:
    data = service.model_dump(mode="json")
    return ServiceRow(**data, updated_at=now)


def referral_from_row(row: ProviderReferralRow) -> ProviderReferral:
    def opt(enum: Any, value: str | None) -> Any:
        return None if value is None else enum(value)

    return ProviderReferral(
        id=row.id,
        referral_id=row.referral_id,
        need_id=row.need_id,
        crn=row.crn,
        area=row.area,
        pathway=Pathway(row.pathway),
        complexity=Complexity(row.complexity),
        flags=tuple(row.flags),
        service_code=row.service_code,
        provider_code=row.provider_code,
        programme=row.programme,
        status=ProviderReferralStatus(row.status),
        allocated_at=row.allocated_at,
        acknowledge_by=row.acknowledge_by,
        respond_by=row.respond_by,
        acknowledged_at=row.acknowledged_at,
        responded_at=row.responded_at,
        decline_reason=opt(DeclineReason, row.decline_reason),
        decline_comments=row.decline_comments,
        started_at=row.started_at,
        completed_at=row.completed_at,
        outcome=opt(Outcome, row.outcome),
        outcome_notes=row.outcome_notes,
        withdrawn_at=row.withdrawn_at,
        withdrawal_reason=opt(WithdrawalReason, row.withdrawal_reason),
    )


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, str):
        return str(value)  # StrEnum to its plain value
    return value


def copy_to_row(referral: ProviderReferral, row: ProviderReferralRow, now: datetime) -> None:
    for field in dataclasses.fields(referral):
        setattr(row, field.name, _plain(getattr(referral, field.name)))
    row.updated_at = now


def new_referral_values(referral: ProviderReferral, now: datetime) -> dict[str, Any]:
    """The column values of `new_referral_row` (every column; those the referral has no
    field for are None, as the row has no other default), with no ORM object built."""
    columns = ProviderReferralRow.__table__.columns  # type: ignore[attr-defined]
    data = {f.name: _plain(getattr(referral, f.name)) for f in dataclasses.fields(referral)}
    return dict.fromkeys(columns.keys()) | data | {"updated_at": now}


def new_referral_row(referral: ProviderReferral, now: datetime) -> ProviderReferralRow:
    data = {f.name: _plain(getattr(referral, f.name)) for f in dataclasses.fields(referral)}
    return ProviderReferralRow(**data, updated_at=now)


def row_values(row: Any) -> dict[str, Any]:
    """Every column's value of an unsaved row, by column name, for `defer_insert`."""
    return {column.name: getattr(row, column.name) for column in row.__table__.columns}


def _catalogue_fingerprint() -> Any:
    """PostgreSQL: the md5 of every service row as text, in code order: it changes whenever
    any column of any service does (a `PUT /services/{code}`, a seed)."""
    services = ServiceRow.__table__.alias("catalogue_rows")  # type: ignore[attr-defined]
    rows = func.string_agg(literal_column("catalogue_rows::text", Text),
                           aggregate_order_by(literal("\n"), services.c.code))
    return (select(func.md5(func.coalesce(rows, ""))).select_from(services)
            .correlate(None).scalar_subquery())


# Built once (PostgreSQL), executed with the referral's values as parameters: a statement
# object keeps its cache key, so SQLAlchemy neither rebuilds nor re-keys it per event.
_LOCK_REFERRAL = select(func.pg_advisory_xact_lock(bindparam("key", type_=BigInteger)))
_ROUTING_READS = select(
    select(IomMemberRow.id).where(IomMemberRow.crn == bindparam("crn"),
                                  col(IomMemberRow.member).is_(True)).exists(),
    select(func.array_agg(NeedRow.id))
    .where(col(NeedRow.id).in_(bindparam("ids", expanding=True))).scalar_subquery(),
    select(func.array_agg(WithdrawnNeedRow.need_id))
    .where(col(WithdrawnNeedRow.need_id).in_(bindparam("ids", expanding=True)))
    .scalar_subquery(),
    _catalogue_fingerprint(),
)


@dataclasses.dataclass(frozen=True)
class RoutingReads:
    """What routing a submitted referral reads, under the referral's lock, before it decides."""

    iom_member: bool  # the person is an IOM member
    known: frozenset[uuid.UUID]  # its needs already stored
    withdrawn: frozenset[uuid.UUID]  # its needs withdrawn before they arrived
    catalogue: str | None  # the catalogue's fingerprint (PostgreSQL), None on SQLite


class CatalogueRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def services_and_fingerprint(self) -> tuple[Sequence[ServiceRow], str | None]:
        """Every service in code order and, on PostgreSQL, the fingerprint of exactly these
        rows (one statement, one snapshot); None on SQLite."""
        if not is_postgres(self.session):
            return await self.services(), None
        rows = (await self.session.exec(
            select(ServiceRow, _catalogue_fingerprint()).order_by(ServiceRow.code)
        )).all()
        if not rows:
            return [], None
        return [row[0] for row in rows], rows[0][1]

    async def providers(self) -> Sequence[ProviderRow]:
        return (await self.session.exec(select(ProviderRow).order_by(ProviderRow.code))).all()

    async def provider(self, code: str) -> ProviderRow | None:
        return await self.session.get(ProviderRow, code)

    async def services(
        self,
        *,
        pathway: str | None = None,
        provider_code: str | None = None,
        after_code: str | None = None,
        limit: int | None = None,
    ) -> Sequence[ServiceRow]:
        query = select(ServiceRow).order_by(ServiceRow.code)
        if pathway is not None:
            query = query.where(ServiceRow.pathway == pathway)
        if provider_code is not None:
            query = query.where(ServiceRow.provider_code == provider_code)
        if after_code is not None:
            query = query.where(ServiceRow.code > after_code)
        if limit is not None:
            query = query.limit(limit)
        return (await self.session.exec(query)).all()

    async def service(self, code: str, *, for_update: bool = False) -> ServiceRow | None:
        query = select(ServiceRow).where(ServiceRow.code == code)
        if for_update and is_postgres(self.session):
            query = query.with_for_update()
        return (await self.session.exec(query)).first()

    def add(self, row: ServiceRow | ProviderRow) -> None:
        self.session.add(row)


class NeedRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def lock_referral(self, referral_id: uuid.UUID) -> None:
        """Serialise the handling of one referral's events across replicas (PostgreSQL):
        a submission and a withdrawal of the same referral never interleave."""
        if is_postgres(self.session):
            key = zlib.crc32(f"providers-referral:{referral_id}".encode())
            await self.session.exec(_LOCK_REFERRAL, params={"key": key})

    async def routing_reads(self, crn: str, need_ids: Sequence[uuid.UUID]) -> RoutingReads:
        """IOM membership, which of `need_ids` are stored or withdrawn, and the catalogue's
        fingerprint: one statement on PostgreSQL (scalar subqueries), several on SQLite
        (`_routing_reads_in_steps`; a test holds the two equal)."""
        if not is_postgres(self.session):
            return await self._routing_reads_in_steps(crn, need_ids)
        params = {"crn": crn, "ids": list(need_ids)}
        row = (await self.session.exec(_ROUTING_READS, params=params)).one()
        return RoutingReads(iom_member=row[0], known=frozenset(row[1] or ()),
                            withdrawn=frozenset(row[2] or ()), catalogue=row[3])

    async def _routing_reads_in_steps(
        self, crn: str, need_ids: Sequence[uuid.UUID]
    ) -> RoutingReads:
        return RoutingReads(
            iom_member=await IomMembershipRepository(self.session).is_member(crn),
            known=frozenset([i for i in need_ids if await self.get(i) is not None]),
            withdrawn=frozenset([i for i in need_ids if await self.withdrawn(i) is not None]),
            catalogue=None,
        )

    async def get(self, need_id: uuid.UUID, *, for_update: bool = False) -> NeedRow | None:
        query = select(NeedRow).where(NeedRow.id == need_id)
        if for_update and is_postgres(self.session):
            query = query.with_for_update().execution_options(populate_existing=True)
        return (await self.session.exec(query)).first()

    async def of_referral(self, referral_id: uuid.UUID) -> Sequence[NeedRow]:
        query = select(NeedRow).where(NeedRow.referral_id == referral_id).order_by(NeedRow.id)
        return (await self.session.exec(query)).all()

    async def for_crn(self, crn: str) -> Sequence[NeedRow]:
        query = select(NeedRow).where(NeedRow.crn == crn).order_by(NeedRow.submitted_at)
        return (await self.session.exec(query)).all()

    def add(self, row: NeedRow | RoutingDecisionRow) -> None:
        self.session.add(row)

    async def withdrawn(self, need_id: uuid.UUID) -> WithdrawnNeedRow | None:
        return await self.session.get(WithdrawnNeedRow, need_id)

    async def remember_withdrawn(
        self, need_id: uuid.UUID, referral_id: uuid.UUID, reason_code: str, at: datetime
    ) -> None:
        if await self.withdrawn(need_id) is None:
            self.session.add(
                WithdrawnNeedRow(
                    need_id=need_id,
                    referral_id=referral_id,
                    reason_code=reason_code,
                    withdrawn_at=at,
                )
            )

    async def decisions(self, need_id: uuid.UUID) -> Sequence[RoutingDecisionRow]:
        query = (
            select(RoutingDecisionRow)
            .where(RoutingDecisionRow.need_id == need_id)
            .order_by(RoutingDecisionRow.decided_at, RoutingDecisionRow.id)
        )
        return (await self.session.exec(query)).all()

    async def decisions_for_crn(self, crn: str) -> Sequence[RoutingDecisionRow]:
        query = (
            select(RoutingDecisionRow)
            .where(RoutingDecisionRow.crn == crn)
            .order_by(RoutingDecisionRow.decided_at, RoutingDecisionRow.id)
        )
        return (await self.session.exec(query)).all()


class ProviderReferralRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, row: ProviderReferralRow) -> None:
        self.session.add(row)

    async def get(
        self, provider_referral_id: uuid.UUID, *, for_update: bool = False
    ) -> ProviderReferralRow | None:
        query = select(ProviderReferralRow).where(ProviderReferralRow.id == provider_referral_id)
        if for_update and is_postgres(self.session):
            query = query.with_for_update().execution_options(populate_existing=True)
        return (await self.session.exec(query)).first()

    async def of_need(self, need_id: uuid.UUID) -> Sequence[ProviderReferralRow]:
        query = (
            select(ProviderReferralRow)
            .where(ProviderReferralRow.need_id == need_id)
            .order_by(ProviderReferralRow.allocated_at, ProviderReferralRow.id)
        )
        return (await self.session.exec(query)).all()

    async def of_needs(
        self, need_ids: Sequence[uuid.UUID], *, for_update: bool = False
    ) -> Sequence[ProviderReferralRow]:
        if not need_ids:
            return []
        query = (
            select(ProviderReferralRow)
            .where(col(ProviderReferralRow.need_id).in_(list(need_ids)))
            .order_by(ProviderReferralRow.allocated_at, ProviderReferralRow.id)
        )
        if for_update and is_postgres(self.session):
            query = query.with_for_update().execution_options(populate_existing=True)
        return (await self.session.exec(query)).all()

    async def for_crn(self, crn: str) -> Sequence[ProviderReferralRow]:
        query = (
            select(ProviderReferralRow)
            .where(ProviderReferralRow.crn == crn)
            .order_by(ProviderReferralRow.allocated_at, ProviderReferralRow.id)
        )
        return (await self.session.exec(query)).all()

    async def inbox(
        self,
        provider_code: str,
        *,
        status: str | None,
        limit: int,
        after: tuple[datetime, uuid.UUID] | None,
        areas: frozenset[str] | None = None,
    ) -> Sequence[ProviderReferralRow]:
        """Newest first, keyset-paged on (allocated_at, id). `areas`: only referrals of these
        areas (None: every area)."""
        query = select(ProviderReferralRow).where(
            ProviderReferralRow.provider_code == provider_code
        )
        if areas is not None:
            query = query.where(col(ProviderReferralRow.area).in_(sorted(areas)))
        if status is not None:
            query = query.where(ProviderReferralRow.status == status)
        query = newest_first(query, col(ProviderReferralRow.allocated_at),
                             col(ProviderReferralRow.id), after, limit)
        return (await self.session.exec(query)).all()

    async def with_deadlines_due(self, now: datetime, limit: int) -> Sequence[ProviderReferralRow]:
        """Referrals with a running service-level clock past its deadline and not yet reported.

        Locked `FOR UPDATE SKIP LOCKED` so replicas running the scheduler share the work
        and never report the same deadline twice.
        """
        acknowledge_due = and_(
            ProviderReferralRow.status == "allocated",
            col(ProviderReferralRow.acknowledge_by) < now,
            col(ProviderReferralRow.acknowledge_missed_at).is_(None),
        )
        respond_due = and_(
            col(ProviderReferralRow.status).in_(AWAITING_RESPONSE),
            col(ProviderReferralRow.respond_by) < now,
            col(ProviderReferralRow.respond_missed_at).is_(None),
        )
        query = (
            select(ProviderReferralRow)
            .where(or_(acknowledge_due, respond_due))
            .order_by(ProviderReferralRow.respond_by, ProviderReferralRow.id)
            .limit(limit)
        )
        if is_postgres(self.session):
            query = query.with_for_update(skip_locked=True)
        return (await self.session.exec(query)).all()

    async def count_by_status(self, provider_code: str) -> dict[str, int]:
        query = (
            select(ProviderReferralRow.status, func.count())
            .where(ProviderReferralRow.provider_code == provider_code)
            .group_by(ProviderReferralRow.status)
        )
        return {status: count for status, count in (await self.session.exec(query)).all()}


class IomMembershipRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, crn: str, area: str) -> IomMemberRow | None:
        query = select(IomMemberRow).where(IomMemberRow.crn == crn, IomMemberRow.area == area)
        return (await self.session.exec(query)).first()

    async def is_member(self, crn: str) -> bool:
        query = select(IomMemberRow.id).where(
            IomMemberRow.crn == crn, col(IomMemberRow.member).is_(True)
        )
        return (await self.session.exec(query)).first() is not None

    async def for_crn(self, crn: str) -> Sequence[IomMemberRow]:
        query = select(IomMemberRow).where(IomMemberRow.crn == crn).order_by(IomMemberRow.area)
        return (await self.session.exec(query)).all()

    def add(self, row: IomMemberRow) -> None:
        self.session.add(row)

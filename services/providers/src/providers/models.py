"""Tables of the providers service: the catalogue, the needs it routes, the routing
decisions, the provider referrals and the local projection of IOM cohort membership.

The infrastructure tables (outbox, processed events, dead letters, access log) come from the
shared package and are created by migration 0001."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Text, TypeDecorator, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from pathways_shared.erasure import ErasureRecord
from pathways_shared.infra_models import AccessLog, DeadLetter, OutboxMessage, ProcessedEvent

__all__ = [
    "AccessLog",
    "DeadLetter",
    "ErasureRecord",
    "IomMemberRow",
    "NeedRow",
    "OutboxMessage",
    "ProcessedEvent",
    "ProviderReferralRow",
    "ProviderRow",
    "RoutingDecisionRow",
    "ServiceRow",
    "WithdrawnNeedRow",
]


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp that is always an aware UTC datetime in Python, on PostgreSQL and on SQLite
    (which keeps no offset: values are stored as UTC and read back as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utc_column(nullable: bool = False, index: bool = False) -> Any:
    return Column(UtcDateTime(), nullable=nullable, index=index)


_ENDED_NOT_ERASED = "erased_at IS NULL AND status IN ('declined', 'completed', 'withdrawn')"


def json_column() -> Any:
    return Column(JSON, nullable=False)


class ProviderRow(SQLModel, table=True):
    __tablename__ = "providers"

    code: str = Field(primary_key=True, max_length=40)
    name: str = Field(max_length=200)


class ServiceRow(SQLModel, table=True):
    """One commissioned service; its eligibility kept as the validated JSON of the domain."""

    __tablename__ = "services"

    code: str = Field(primary_key=True, max_length=32)
    name: str = Field(max_length=200)
    provider_code: str = Field(max_length=40, index=True)
    programme: str = Field(max_length=50)
    pathway: str = Field(max_length=40, index=True)
    areas: list[str] = Field(sa_column=json_column())
    priority: int
    eligibility: dict[str, Any] = Field(sa_column=json_column())
    acknowledge_days: int
    respond_days: int
    active: bool = True
    updated_at: datetime = Field(sa_column=utc_column())


class NeedRow(SQLModel, table=True):
    """What routing needs to know of one need, kept to route it again after a decline.

    Only routing facts: no name, date of birth or contact details (age and sex on the day).
    """

    __tablename__ = "needs"

    id: uuid.UUID = Field(primary_key=True)
    referral_id: uuid.UUID = Field(index=True)
    crn: str | None = Field(default=None, max_length=20, index=True)  # None once erased
    area: str = Field(max_length=20)
    pathway: str = Field(max_length=40)
    complexity: str = Field(max_length=20)
    flags: list[str] = Field(sa_column=json_column())
    sex: str = Field(max_length=10)
    age: int
    supervision_status: str = Field(max_length=40)
    iom_member: bool = False
    duty_to_refer: bool = False
    status: str = Field(max_length=20)  # allocated, unallocated, withdrawn
    status_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    current_provider_referral_id: uuid.UUID | None = None
    submitted_at: datetime = Field(sa_column=utc_column())
    updated_at: datetime = Field(sa_column=utc_column())
    erased_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class WithdrawnNeedRow(SQLModel, table=True):
    """A need withdrawn before its submission reached us: it is never routed."""

    __tablename__ = "withdrawn_needs"

    need_id: uuid.UUID = Field(primary_key=True)
    referral_id: uuid.UUID
    reason_code: str = Field(max_length=40)
    withdrawn_at: datetime = Field(sa_column=utc_column())


class RoutingDecisionRow(SQLModel, table=True):
    """Every routing of a need: the service chosen (or none) and why each other was not."""

    __tablename__ = "routing_decisions"

    id: uuid.UUID = Field(primary_key=True)
    need_id: uuid.UUID = Field(index=True)
    crn: str | None = Field(default=None, max_length=20, index=True)  # None once erased
    decided_at: datetime = Field(sa_column=utc_column())
    trigger: str = Field(max_length=20)  # submitted, declined
    chosen_service_code: str | None = Field(default=None, max_length=32)
    provider_referral_id: uuid.UUID | None = None
    unallocated_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    iom_member: bool = False
    assessments: list[dict[str, Any]] = Field(sa_column=json_column())


class ProviderReferralRow(SQLModel, table=True):
    __tablename__ = "provider_referrals"
    __table_args__ = (
        Index("ix_provider_referrals_inbox", "provider_code", "allocated_at", "id"),
        Index("ix_provider_referrals_open_deadlines", "status", "acknowledge_by", "respond_by"),
        # What erasure looks for: ended provider referrals not yet erased (providers.erasure).
        Index("ix_provider_referrals_erasable", "updated_at",
              postgresql_where=text(_ENDED_NOT_ERASED), sqlite_where=text(_ENDED_NOT_ERASED)),
    )

    id: uuid.UUID = Field(primary_key=True)
    referral_id: uuid.UUID = Field(index=True)
    need_id: uuid.UUID = Field(index=True)
    crn: str | None = Field(default=None, max_length=20, index=True)  # None once erased
    area: str = Field(max_length=20)
    pathway: str = Field(max_length=40)
    complexity: str = Field(max_length=20)
    flags: list[str] = Field(sa_column=json_column())
    service_code: str = Field(max_length=32)
    provider_code: str = Field(max_length=40)
    programme: str = Field(max_length=50)
    status: str = Field(max_length=20)
    allocated_at: datetime = Field(sa_column=utc_column())
    acknowledge_by: datetime = Field(sa_column=utc_column())
    respond_by: datetime = Field(sa_column=utc_column())
    acknowledged_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    responded_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    decline_reason: str | None = Field(default=None, max_length=40)
    decline_comments: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    started_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    completed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    outcome: str | None = Field(default=None, max_length=40)
    outcome_notes: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    withdrawn_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    withdrawal_reason: str | None = Field(default=None, max_length=40)
    acknowledge_missed_at: datetime | None = Field(
        default=None, sa_column=utc_column(nullable=True)
    )
    respond_missed_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    updated_at: datetime = Field(sa_column=utc_column())
    erased_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class IomMemberRow(SQLModel, table=True):
    """Local projection of IOM cohort membership, from the cohorts service's events."""

    __tablename__ = "iom_members"
    __table_args__ = (UniqueConstraint("crn", "area", name="uq_iom_members_crn_area"),)

    id: int | None = Field(default=None, primary_key=True)
    crn: str | None = Field(default=None, max_length=20, index=True)  # None once erased
    area: str = Field(max_length=20)
    cohort: str | None = Field(default=None, max_length=20)
    member: bool = True
    changed_at: datetime = Field(sa_column=utc_column())
    erased_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))

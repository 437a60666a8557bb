"""Tables of the cohorts service. The infrastructure tables (outbox, processed events, dead
letters, access log) come from the shared package and are created by migration 0001."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from pathways_shared.erasure import ErasureRecord
from pathways_shared.infra_models import (
    AccessLog,
    BigIntPK,
    DeadLetter,
    OutboxMessage,
    ProcessedEvent,
    utc_column,
)

JsonType = JSON().with_variant(JSONB(), "postgresql")


def json_column(nullable: bool = False) -> Column:
    return Column(JsonType, nullable=nullable)


class NominalRecord(SQLModel, table=True):
    """A person known to IOM, keyed by CRN. No names or contact details are held here."""

    __tablename__ = "nominals"
    __table_args__ = (Index("ix_nominals_area", "area", "crn"),)

    crn: str = Field(primary_key=True, max_length=7)
    area: str = Field(max_length=9)
    date_of_birth: date
    supervision_status: str = Field(max_length=40)
    mappa_level: int | None = None
    pnc_number: str | None = Field(default=None, max_length=13)
    created_at: datetime = Field(sa_column=utc_column())
    updated_at: datetime = Field(sa_column=utc_column())


class OffenceRecord(SQLModel, table=True):
    """One recorded offence. A repeat of the same (crn, date, category, description) is the
    same offence, so re-importing an extract adds nothing twice."""

    __tablename__ = "offences"
    __table_args__ = (
        UniqueConstraint(
            "crn", "offence_date", "category", "description", name="uq_offences_natural"
        ),
    )

    id: int | None = Field(
        default=None, sa_column=Column(BigIntPK, primary_key=True, autoincrement=True)
    )
    crn: str = Field(max_length=7)
    offence_date: date
    category: str = Field(max_length=40)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    recorded_at: datetime = Field(sa_column=utc_column())
    import_id: str | None = Field(default=None, max_length=36)


class PolicyRecord(SQLModel, table=True):
    """Every version of every area's selection policy; the highest version is current."""

    __tablename__ = "selection_policies"

    area: str = Field(primary_key=True, max_length=9)
    version: int = Field(primary_key=True)
    body: dict[str, Any] = Field(sa_column=json_column())
    created_at: datetime = Field(sa_column=utc_column())
    created_by: str = Field(max_length=200)


class SelectionRunRecord(SQLModel, table=True):
    __tablename__ = "selection_runs"
    __table_args__ = (Index("ix_selection_runs_area_created", "area", "created_at"),)

    id: str = Field(primary_key=True, max_length=36)
    area: str = Field(max_length=9)
    as_of: date
    policy_version: int
    created_at: datetime = Field(sa_column=utc_column())
    created_by: str = Field(max_length=200)
    counts: dict[str, Any] = Field(sa_column=json_column())
    candidates: list[Any] = Field(sa_column=json_column())
    excluded: list[Any] = Field(sa_column=json_column())
    duration_ms: int = 0


class MembershipRecord(SQLModel, table=True):
    """One spell of a person in one cohort of one area; at most one active spell per area."""

    __tablename__ = "memberships"
    __table_args__ = (
        Index(
            "uq_memberships_active",
            "crn",
            "area",
            unique=True,
            postgresql_where=text("status = 'active'"),
            sqlite_where=text("status = 'active'"),
        ),
        Index("ix_memberships_area_status", "area", "status", "cohort", "crn"),
        Index(
            "ix_memberships_review_due",
            "review_due_at",
            postgresql_where=text("status = 'active'"),
            sqlite_where=text("status = 'active'"),
        ),
        # What erasure looks for: deselected spells not yet erased (cohorts.erasure).
        Index(
            "ix_memberships_erasable",
            "deselected_at",
            postgresql_where=text("erased_at IS NULL AND status = 'deselected'"),
            sqlite_where=text("erased_at IS NULL AND status = 'deselected'"),
        ),
    )

    id: str = Field(primary_key=True, max_length=36)
    crn: str | None = Field(default=None, max_length=7, index=True)  # None once erased
    area: str = Field(max_length=9)
    cohort: str = Field(max_length=10)
    status: str = Field(max_length=12)
    adopted_at: datetime = Field(sa_column=utc_column())
    adopted_by: str = Field(max_length=200)
    rationale: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    met_criteria: bool
    criteria_reasons: list[Any] = Field(sa_column=json_column())
    score_at_adoption: int
    review_due_at: datetime = Field(sa_column=utc_column())
    deselected_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    deselected_by: str | None = Field(default=None, max_length=200)
    deselection_reason: str | None = Field(default=None, max_length=30)
    deselection_comments: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    erased_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class ReferralNeedRecord(SQLModel, table=True):
    """What the cohorts service keeps of a referral need, to tell the police about members'
    pathway activity: the pathway and where it stands. Nothing else of the referral."""

    __tablename__ = "referral_needs"

    need_id: str = Field(primary_key=True, max_length=36)
    referral_id: str = Field(max_length=36)
    crn: str = Field(max_length=7, index=True)
    pathway: str = Field(max_length=40)
    status: str = Field(max_length=20)
    programme: str | None = Field(default=None, max_length=40)
    updated_at: datetime = Field(sa_column=utc_column())


class OffenceImportRecord(SQLModel, table=True):
    __tablename__ = "offence_imports"

    id: str = Field(primary_key=True, max_length=36)
    status: str = Field(max_length=12)  # running, completed, failed
    created_by: str = Field(max_length=200)
    started_at: datetime = Field(sa_column=utc_column())
    finished_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    total_rows: int = 0
    processed_rows: int = 0
    loaded: int = 0
    duplicates: int = 0
    rejected: int = 0
    batches_total: int = 0
    batches_done: int = 0
    errors: list[Any] = Field(sa_column=json_column())
    failure: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


__all__ = [
    "AccessLog",
    "DeadLetter",
    "ErasureRecord",
    "MembershipRecord",
    "NominalRecord",
    "OffenceImportRecord",
    "OffenceRecord",
    "OutboxMessage",
    "PolicyRecord",
    "ProcessedEvent",
    "ReferralNeedRecord",
    "SelectionRunRecord",
]

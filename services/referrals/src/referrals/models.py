"""Tables of the referrals service: referrals, their needs and their history. The
infrastructure tables (outbox, processed events, dead letters, access log) come from the
shared package and are created by migration 0001.

The referral's status is stored (derived by the domain on every change) so listing can
filter on it through an index. Listing is keyset-paginated newest first on
(submitted_at, id); each filter has an index that leads with it and ends with that key, so a
page costs the same at a million referrals as at ten.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import JSON, Column, ForeignKey, Index, Text, UniqueConstraint, text
from sqlalchemy import Uuid as SaUuid
from sqlmodel import Field, SQLModel

from pathways_shared.erasure import ErasureRecord  # noqa: F401  (registers the erasure register)
from pathways_shared.infra_models import (  # noqa: F401  (registers the infrastructure tables)
    AccessLog,
    BigIntPK,
    DeadLetter,
    OutboxMessage,
    ProcessedEvent,
    utc_column,
)


class ReferralRow(SQLModel, table=True):
    __tablename__ = "referrals"
    __table_args__ = (
        # A client's keys are its own, per area: another client reusing one neither collides
        # with nor learns of this referral (migration 0003).
        UniqueConstraint(
            "submitting_client", "area", "source_reference", name="uq_referrals_source_reference"
        ),
        UniqueConstraint(
            "submitting_client", "area", "idempotency_key", name="uq_referrals_idempotency_key"
        ),
        Index("ix_referrals_submitted", "submitted_at", "id"),
        Index("ix_referrals_area_submitted", "area", "submitted_at", "id"),
        Index("ix_referrals_crn_submitted", "crn", "submitted_at", "id"),
        Index("ix_referrals_status_submitted", "status", "submitted_at", "id"),
        # What erasure looks for: ended referrals not yet erased (referrals.erasure).
        Index("ix_referrals_erasable", "updated_at",
              postgresql_where=text("erased_at IS NULL AND status <> 'open'"),
              sqlite_where=text("erased_at IS NULL AND status <> 'open'")),
    )

    id: UUID = Field(sa_column=Column(SaUuid, primary_key=True))
    source_reference: str = Field(max_length=100)
    idempotency_key: str | None = Field(default=None, max_length=200)
    fingerprint: str = Field(max_length=64)
    submitting_client: str = Field(max_length=200)
    area: str = Field(max_length=20)
    status: str = Field(max_length=20)

    # The personal columns are NULL once erased (referrals.erasure), never before.
    crn: str | None = Field(default=None, max_length=20)
    noms_number: str | None = Field(default=None, max_length=20)
    pnc_number: str | None = Field(default=None, max_length=20)
    given_name: str | None = Field(default=None, max_length=200)
    family_name: str | None = Field(default=None, max_length=200)
    date_of_birth: date | None = None
    sex: str = Field(max_length=10)
    needs_interpreter: bool = False
    interpreter_language: str | None = Field(default=None, max_length=100)

    supervision_status: str = Field(max_length=40)
    expected_release_date: date | None = None
    rosh: str = Field(max_length=20)
    mappa_level: int | None = None

    practitioner_name: str | None = Field(default=None, max_length=200)
    practitioner_email: str | None = Field(default=None, max_length=320)
    practitioner_team: str | None = Field(default=None, max_length=200)
    consent_given: bool
    consent_recorded_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))

    submitted_at: datetime = Field(sa_column=utc_column())
    submitted_by: str = Field(max_length=200)
    updated_at: datetime = Field(sa_column=utc_column())

    withdrawal_reason: str | None = Field(default=None, max_length=40)
    withdrawal_comments: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    withdrawn_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    withdrawn_by: str | None = Field(default=None, max_length=200)
    erased_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))


class NeedRow(SQLModel, table=True):
    __tablename__ = "needs"
    __table_args__ = (
        UniqueConstraint("referral_id", "pathway", name="uq_needs_referral_pathway"),
        Index("ix_needs_pathway_referral", "pathway", "referral_id"),
        Index("ix_needs_provider_referral", "provider_code", "referral_id"),
    )

    id: UUID = Field(sa_column=Column(SaUuid, primary_key=True))
    referral_id: UUID = Field(
        sa_column=Column(SaUuid, ForeignKey("referrals.id", ondelete="CASCADE"), nullable=False)
    )
    position: int
    pathway: str = Field(max_length=40)
    complexity: str = Field(max_length=10)
    details: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    flags: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    status: str = Field(max_length=20)
    service_code: str | None = Field(default=None, max_length=40)
    provider_code: str | None = Field(default=None, max_length=40)
    programme: str | None = Field(default=None, max_length=40)
    provider_referral_id: UUID | None = Field(default=None, sa_column=Column(SaUuid, nullable=True))
    status_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    allocated_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    acknowledge_by: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    respond_by: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    updated_at: datetime = Field(sa_column=utc_column())
    last_event_at: datetime | None = Field(default=None, sa_column=utc_column(nullable=True))
    missed_deadlines: list[str] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )


class HistoryRow(SQLModel, table=True):
    __tablename__ = "referral_history"
    __table_args__ = (Index("ix_referral_history_referral_at", "referral_id", "at", "id"),)

    id: int | None = Field(
        default=None, sa_column=Column(BigIntPK, primary_key=True, autoincrement=True)
    )
    referral_id: UUID = Field(
        sa_column=Column(SaUuid, ForeignKey("referrals.id", ondelete="CASCADE"), nullable=False)
    )
    at: datetime = Field(sa_column=utc_column())
    actor: str = Field(max_length=200)
    event: str = Field(max_length=40)
    need_id: UUID | None = Field(default=None, sa_column=Column(SaUuid, nullable=True))
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))

"""Tables of the notifications service (SQLModel). The infrastructure tables (outbox, processed
events, dead letters, access log) come from the shared package and are created by migration 0001.

- ``subscriptions``: webhook subscribers; the secret sealed (``secretbox``), never in clear.
- ``notifications``: one row per intent (an email or a webhook call for one recipient),
  unique on its idempotency key; the delivery log. ``event_payload`` keeps the envelope as
  consumed: the webhook body, and what an email is rendered from.
- ``delivery_attempts``: one row per attempt, written *before* sending (the intent), then
  completed with the outcome.
- ``need_allocations``: which provider holds which need, from ``providers.referral.allocated``,
  so a withdrawal can name the providers to tell.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, BigInteger, Column, DateTime, ForeignKey, Index, Integer, Text, text
from sqlmodel import Field, SQLModel

from pathways_shared.erasure import ErasureRecord
from pathways_shared.infra_models import AccessLog, DeadLetter, OutboxMessage, ProcessedEvent

__all__ = [
    "AccessLog",
    "DeadLetter",
    "DeliveryAttemptRow",
    "ErasureRecord",
    "NeedAllocationRow",
    "NotificationRow",
    "OutboxMessage",
    "ProcessedEvent",
    "SubscriptionRow",
]

_ENDED_NOT_ERASED = "erased_at IS NULL AND status IN ('delivered', 'failed', 'cancelled')"
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


def _utc(nullable: bool = False, index: bool = False) -> Column:
    return Column(DateTime(timezone=True), nullable=nullable, index=index)


class SubscriptionRow(SQLModel, table=True):
    __tablename__ = "subscriptions"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    url: str = Field(sa_column=Column(Text, nullable=False))
    event_types: list[str] = Field(sa_column=Column(JSON, nullable=False))
    description: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    areas: list[str] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    cohort_events_only: bool = False
    secret_sealed: str = Field(sa_column=Column(Text, nullable=False))
    created_by: str = Field(max_length=200)
    created_by_roles: str = Field(max_length=200)
    created_at: datetime = Field(sa_column=_utc())
    active: bool = Field(default=True, index=True)
    disabled_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    disabled_reason: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    deleted_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    consecutive_failures: int = 0
    failing_since: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class NotificationRow(SQLModel, table=True):
    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_due", "status", "next_attempt_at"),
        Index("ix_notifications_referral", "referral_id", "created_at"),
        # What erasure looks for: finished notifications not yet erased (notifications.erasure).
        Index("ix_notifications_erasable", "updated_at",
              postgresql_where=text(_ENDED_NOT_ERASED), sqlite_where=text(_ENDED_NOT_ERASED)),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    idempotency_key: uuid.UUID = Field(unique=True)
    event_id: uuid.UUID = Field(index=True)
    event_type: str = Field(max_length=200)
    event_payload: str = Field(sa_column=Column(Text, nullable=False))
    crn: str | None = Field(default=None, max_length=20, index=True)
    referral_id: uuid.UUID | None = None
    need_ids: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    kind: str = Field(max_length=40)
    channel: str = Field(max_length=20)
    recipient_role: str = Field(max_length=40)
    recipient_key: str | None = Field(default=None, max_length=100)
    subscription_id: uuid.UUID | None = Field(
        default=None,
        sa_column=Column(ForeignKey("subscriptions.id"), nullable=True, index=True),
    )
    address: str | None = Field(default=None, max_length=320)
    status: str = Field(max_length=20)
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    lease_expires_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    delivered_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    created_at: datetime = Field(sa_column=_utc())
    updated_at: datetime = Field(sa_column=_utc())
    erased_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))


class DeliveryAttemptRow(SQLModel, table=True):
    __tablename__ = "delivery_attempts"

    id: int | None = Field(
        default=None, sa_column=Column(BigIntPK, primary_key=True, autoincrement=True)
    )
    notification_id: uuid.UUID = Field(
        sa_column=Column(ForeignKey("notifications.id"), nullable=False, index=True)
    )
    number: int
    started_at: datetime = Field(sa_column=_utc())
    finished_at: datetime | None = Field(default=None, sa_column=_utc(nullable=True))
    outcome: str | None = Field(default=None, max_length=20)
    status_code: int | None = None
    detail: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class NeedAllocationRow(SQLModel, table=True):
    __tablename__ = "need_allocations"

    need_id: uuid.UUID = Field(primary_key=True)
    referral_id: uuid.UUID = Field(index=True)
    provider_code: str = Field(max_length=50)
    service_code: str = Field(max_length=50)
    provider_referral_id: uuid.UUID
    updated_at: datetime = Field(sa_column=_utc())

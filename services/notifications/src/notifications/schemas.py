"""Request and response bodies of the notifications API."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from pathways_shared.erasure import ErasurePublic
from pathways_shared.inputs import AreaCode
from pathways_shared.outputs import UtcDateTime
from pathways_shared.pagination import NextCursor


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# What `EventPattern.parse` takes: dot-separated tokens of lower-case letters, digits, `-`
# and `_`, or the whole-token wildcards `*` (anywhere) and `>` (last only).
EventTypePattern = Annotated[str, Field(
    min_length=1, max_length=200,
    json_schema_extra={"pattern": r"^((\*|[a-z0-9_-]+)\.)*(\*|>|[a-z0-9_-]+)$"},
)]


class SubscriptionCreate(_Body):
    url: str = Field(min_length=1, max_length=2048, description="Where to POST events")
    event_types: list[EventTypePattern] = Field(
        min_length=1,
        max_length=20,
        description="Patterns: `*` one token, `>` the rest (NATS wildcards), e.g. `cohorts.member.*`",
    )
    description: str | None = Field(default=None, max_length=500)
    areas: list[AreaCode] | None = Field(
        default=None,
        min_length=1,
        max_length=10,
        description="Only events of these areas (police: some of the token's areas)",
    )


class SubscriptionPublic(_Out):
    id: uuid.UUID
    url: str
    event_types: list[str]
    description: str | None
    areas: list[str] | None
    active: bool
    created_by: str
    created_at: UtcDateTime
    disabled_at: UtcDateTime | None
    disabled_reason: str | None
    consecutive_failures: int
    last_error: str | None


class SubscriptionCreated(SubscriptionPublic):
    secret: str = Field(description="`whsec_`: shown once, keep it to verify signatures")


class SubscriptionsPublic(BaseModel):
    data: list[SubscriptionPublic]
    next_cursor: NextCursor = None


class AttemptPublic(_Out):
    number: int
    started_at: UtcDateTime
    finished_at: UtcDateTime | None
    outcome: str | None
    status_code: int | None
    detail: str | None


class NotificationPublic(_Out):
    id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    kind: str
    channel: str
    recipient_role: str
    recipient_key: str | None
    subscription_id: uuid.UUID | None
    referral_id: uuid.UUID | None
    need_ids: list[uuid.UUID]
    status: str
    attempts: int
    next_attempt_at: UtcDateTime | None
    last_error: str | None
    delivered_at: UtcDateTime | None
    created_at: UtcDateTime
    updated_at: UtcDateTime
    attempt_log: list[AttemptPublic] = Field(default_factory=list)


class NotificationsPublic(BaseModel):
    data: list[NotificationPublic]
    next_cursor: NextCursor = None


class SubjectAccessNotification(NotificationPublic):
    address: str | None


class AccessLogEntry(_Out):
    at: UtcDateTime
    actor: str
    action: str
    resource: str
    purpose: str


class SubjectAccessPublic(BaseModel):
    crn: str
    notifications: list[SubjectAccessNotification]
    access_log: list[AccessLogEntry]
    # What was erased once its retention period ended, and when (pathways_shared.erasure).
    erasures: list[ErasurePublic] = Field(default_factory=list)

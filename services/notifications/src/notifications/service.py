"""Use cases of the notifications service: load, decide (pure domain), save, in the caller's
transaction (the request's session, or the consumed message's)."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlmodel.ext.asyncio.session import AsyncSession

from notifications.config import NotificationsSettings
from notifications.domain.delivery import DeliveryStatus
from notifications.domain.intents import (
    NEEDS_ALLOCATIONS,
    AllocatedInfo,
    EventType,
    InboundEvent,
    NotificationIntent,
    RecipientRole,
    UnallocatedInfo,
    decide_notifications,
    parse_envelope,
)
from notifications.domain.subscriptions import (
    EventPattern,
    Subscription,
    SubscriptionScope,
    authorise_subscription,
    decide_webhooks,
    parse_patterns,
)
from notifications.domain.webhooks import generate_secret
from notifications.errors import UnparseableEvent
from notifications.models import (
    DeliveryAttemptRow,
    NotificationRow,
    SubscriptionRow,
)
from notifications.repository import NotificationsRepository
from notifications.schemas import (
    AccessLogEntry,
    AttemptPublic,
    NotificationPublic,
    NotificationsPublic,
    SubjectAccessNotification,
    SubjectAccessPublic,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionPublic,
    SubscriptionsPublic,
)
from notifications.secretbox import SecretBox
from notifications.transports import Resolver, check_destination
from pathways_shared.access import Action, record_access
from pathways_shared.auth import Principal
from pathways_shared.clock import utc_now
from pathways_shared.config import ServiceSettings
from pathways_shared.consumer import PermanentError
from pathways_shared.erasure import subject_access_records
from pathways_shared.events import Event
from pathways_shared.pagination import decode_cursor, page_of
from pathways_shared.problems import NotFound, ValidationProblem

# --------------------------------------------------------------------------- consuming events


def _need_ids(inbound: InboundEvent) -> list[uuid.UUID]:
    found = []
    for value in [inbound.info.get("needId"), *(inbound.info.get("needIds") or [])]:
        try:
            found.append(uuid.UUID(str(value)))
        except ValueError:
            continue
    return found


def subscription_of(row: SubscriptionRow | Row[Any]) -> Subscription:
    return Subscription(
        id=row.id,
        patterns=tuple(EventPattern.parse(text) for text in row.event_types),
        scope=SubscriptionScope(
            areas=frozenset(row.areas) if row.areas is not None else None,
            cohort_events_only=row.cohort_events_only,
        ),
        active=row.active and row.deleted_at is None,
    )


async def take_event(
    session: AsyncSession,
    event: Event,
    *,
    now: datetime | None = None,
    active: Sequence[Row[Any]] | None = None,
) -> int:
    """Decide who is told about a consumed event and record one delivery per recipient.

    Idempotent twice over: the shared consumer records the event id, and each delivery is
    unique on its idempotency key (event id + recipient). Answers how many were recorded.
    `active`: the active subscriptions' rows when the caller has read them already in this
    transaction (`NotificationsConsumer`); else they are read here."""
    now = now or utc_now()
    inbound, payload = _inbound(event)
    try:
        await _project_allocation(session, inbound, now)
        allocations = (
            await NotificationsRepository(session).providers_of(_need_ids(inbound))
            if inbound.event_type in NEEDS_ALLOCATIONS
            else {}
        )
        intents = list(decide_notifications(inbound, allocations=allocations))
    except UnparseableEvent as exc:
        raise PermanentError(exc.detail) from exc
    if active is None:
        active = await NotificationsRepository(session).active_subscriptions()
    return await NotificationsRepository(session).add_notifications_if_new(
        _deliveries(inbound, payload, intents, active, now)
    )


@dataclass(frozen=True)
class Settlement:
    """All a consumed event does, as plain values, for one statement to write
    (`NotificationsRepository.settle`): the deliveries (the rows `take_event` adds) and the
    allocation kept (`allocation`: the row stored; `forget`: the need whose row goes)."""

    deliveries: list[dict[str, Any]]
    allocation: dict[str, Any] | None = None
    forget: uuid.UUID | None = None


def settlement_of(event: Event, active: Sequence[Row[Any]], now: datetime) -> Settlement | None:
    """What `take_event` would write for `event` given the active subscriptions `active`,
    decided without reading anything; None when deciding needs a read (who holds a need:
    `NEEDS_ALLOCATIONS`) or the event does not parse (`take_event` reports it)."""
    try:
        inbound, payload = _inbound(event)
        if inbound.event_type in NEEDS_ALLOCATIONS:
            return None
        intents = list(decide_notifications(inbound, allocations={}))
        allocation, forget = _allocation_change(inbound, now)
    except (PermanentError, UnparseableEvent):
        return None
    return Settlement(_deliveries(inbound, payload, intents, active, now), allocation, forget)


def _inbound(event: Event) -> tuple[InboundEvent, str]:
    payload = event.to_json().decode()
    try:
        return parse_envelope(json.loads(payload)), payload
    except UnparseableEvent as exc:
        raise PermanentError(exc.detail) from exc


def _deliveries(
    inbound: InboundEvent,
    payload: str,
    intents: list[NotificationIntent],
    active: Sequence[Row[Any]],
    now: datetime,
) -> list[dict[str, Any]]:
    """The rows of the deliveries an event calls for: its emails (`intents`) and the webhooks
    of the active subscriptions it matches."""
    subscriptions = [subscription_of(row) for row in active]
    if inbound.event_type == EventType.DELIVERY_FAILED:
        # never tell a failing subscriber about its own failures
        subscriptions = [s for s in subscriptions if str(s.id) != inbound.info.get("recipientKey")]
    intents = intents + list(decide_webhooks(inbound, subscriptions))
    return [_notification_values(intent, inbound, payload, now) for intent in intents]


def _allocation_change(
    inbound: InboundEvent, now: datetime
) -> tuple[dict[str, Any] | None, uuid.UUID | None]:
    """Which provider holds which need, as an allocation keeps it: the row to store (an
    allocation), or the need whose row goes (a withdrawal names no providers)."""
    if inbound.event_type not in (EventType.REFERRAL_ALLOCATED, EventType.REFERRAL_UNALLOCATED):
        return None, None
    details = inbound.details()
    if isinstance(details, AllocatedInfo):
        return {
            "need_id": details.need_id,
            "referral_id": details.referral_id,
            "provider_code": details.provider_code,
            "service_code": details.service_code,
            "provider_referral_id": details.provider_referral_id,
            "updated_at": now,
        }, None
    if isinstance(details, UnallocatedInfo):
        return None, details.need_id
    return None, None


async def _project_allocation(session: AsyncSession, inbound: InboundEvent, now: datetime) -> None:
    """Keep which provider holds which need: a withdrawal names no providers."""
    allocation, forget = _allocation_change(inbound, now)
    if allocation is not None:
        await NotificationsRepository(session).record_allocation(allocation)
    elif forget is not None:
        await NotificationsRepository(session).forget_allocation(forget)


def _notification_values(
    intent: NotificationIntent, inbound: InboundEvent, payload: str, now: datetime
) -> dict[str, Any]:
    """The columns of a new ``notifications`` row (plain values: cheaper than a model
    instance, for a row that is only inserted)."""
    webhook = intent.recipient.role is RecipientRole.SUBSCRIBER
    return {
        "id": uuid.uuid4(),
        "idempotency_key": intent.idempotency_key,
        "event_id": intent.event_id,
        "event_type": intent.event_type,
        "event_payload": payload,
        "crn": inbound.crn,
        "referral_id": intent.referral_id,
        "need_ids": [str(n) for n in intent.need_ids],
        "kind": intent.kind.value,
        "channel": intent.channel.value,
        "recipient_role": intent.recipient.role.value,
        "recipient_key": intent.recipient.key,
        "subscription_id": uuid.UUID(intent.recipient.key)
        if webhook and intent.recipient.key
        else None,
        "address": None,
        "status": DeliveryStatus.PENDING.value,
        "attempts": 0,
        "next_attempt_at": None,
        "lease_expires_at": None,
        "last_error": None,
        "delivered_at": None,
        "created_at": now,
        "updated_at": now,
    }


# --------------------------------------------------------------------------- subscriptions


def _subscription_public(row: SubscriptionRow) -> SubscriptionPublic:
    return SubscriptionPublic.model_validate(row, from_attributes=True)


async def create_subscription(
    session: AsyncSession,
    principal: Principal,
    body: SubscriptionCreate,
    *,
    settings: NotificationsSettings,
    resolver: Resolver,
    random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    now: datetime | None = None,
) -> SubscriptionCreated:
    patterns = parse_patterns(body.event_types)
    scope = authorise_subscription(
        principal.roles,
        principal.areas,
        patterns,
        requested_areas=body.areas,
    )
    await check_destination(
        body.url, allow_private=settings.webhooks_allow_private, resolver=resolver
    )
    secret = generate_secret(random_bytes)
    row = SubscriptionRow(
        id=uuid.uuid4(),
        url=body.url,
        event_types=[p.text for p in patterns],
        description=body.description,
        areas=sorted(scope.areas) if scope.areas is not None else None,
        cohort_events_only=scope.cohort_events_only,
        secret_sealed=SecretBox(settings.secret_key).seal(secret),
        created_by=principal.sub,
        created_by_roles=",".join(sorted(principal.roles)),
        created_at=now or utc_now(),
    )
    await NotificationsRepository(session).add_subscription(row)
    return SubscriptionCreated(**_subscription_public(row).model_dump(), secret=secret)


def _after(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """The (created_at, id) a page starts after; 422 on ``cursor`` when it is not ours."""
    values = decode_cursor(cursor, size=2)
    if values is None:
        return None
    try:
        return datetime.fromisoformat(str(values[0])), uuid.UUID(str(values[1]))
    except ValueError as exc:
        raise ValidationProblem("cursor is not valid", field="cursor") from exc


def _cursor_key(row: SubscriptionRow | NotificationRow) -> list[str]:
    return [row.created_at.isoformat(), str(row.id)]


def _may_manage(principal: Principal, row: SubscriptionRow) -> bool:
    return principal.has("admin") or row.created_by == principal.sub


async def list_subscriptions(
    session: AsyncSession, principal: Principal, *, limit: int, cursor: str | None
) -> SubscriptionsPublic:
    rows = await NotificationsRepository(session).list_subscriptions(
        created_by=None if principal.has("admin") else principal.sub,
        after=_after(cursor),
        limit=limit,
    )
    page, next_cursor = page_of(rows, limit, _cursor_key)
    return SubscriptionsPublic(
        data=[_subscription_public(r) for r in page], next_cursor=next_cursor
    )


async def _owned_subscription(
    session: AsyncSession, principal: Principal, subscription_id: uuid.UUID, *, for_update=False
) -> SubscriptionRow:
    row = await NotificationsRepository(session).get_subscription(
        subscription_id, for_update=for_update
    )
    if row is None or not _may_manage(principal, row):
        raise NotFound("no such subscription")
    return row


async def get_subscription(
    session: AsyncSession, principal: Principal, subscription_id: uuid.UUID
) -> SubscriptionPublic:
    return _subscription_public(await _owned_subscription(session, principal, subscription_id))


async def delete_subscription(
    session: AsyncSession, principal: Principal, subscription_id: uuid.UUID
) -> None:
    row = await _owned_subscription(session, principal, subscription_id, for_update=True)
    now = utc_now()
    row.deleted_at = now
    row.active = False
    await NotificationsRepository(session).cancel_waiting_for_subscription(
        row.id, "the subscription was deleted", now
    )


async def enable_subscription(
    session: AsyncSession, principal: Principal, subscription_id: uuid.UUID
) -> SubscriptionPublic:
    row = await _owned_subscription(session, principal, subscription_id, for_update=True)
    row.active = True
    row.disabled_at = None
    row.disabled_reason = None
    row.consecutive_failures = 0
    row.failing_since = None
    return _subscription_public(row)


# --------------------------------------------------------------------------- the delivery log


def _notification_public(
    row: NotificationRow,
    attempts: list[DeliveryAttemptRow],
    shape: type[NotificationPublic] = NotificationPublic,
    **extra: Any,
) -> NotificationPublic:
    fields = {
        name: getattr(row, name)
        for name in NotificationPublic.model_fields
        if name != "attempt_log"
    }
    fields["attempt_log"] = [AttemptPublic.model_validate(a) for a in attempts]
    return shape.model_validate(fields | extra)


def _log_delivery_reads(
    session: AsyncSession, principal: Principal, rows: list[NotificationRow], purpose: str
) -> None:
    """The delivery log names people (CRN, address): each notification read is logged."""
    for row in rows:
        record_access(
            session,
            actor=principal,
            action=Action.CONSULTATION,
            resource=f"notifications/{row.id}",
            crn=row.crn,
            purpose=purpose,
        )


async def list_notifications(
    session: AsyncSession,
    principal: Principal,
    *,
    referral_id: uuid.UUID | None,
    status: DeliveryStatus | None,
    limit: int,
    cursor: str | None,
    purpose: str,
) -> NotificationsPublic:
    rows = await NotificationsRepository(session).list_notifications(
        referral_id=referral_id,
        status=status.value if status else None,
        after=_after(cursor),
        limit=limit,
    )
    page, next_cursor = page_of(rows, limit, _cursor_key)
    attempts = await NotificationsRepository(session).attempts_of([r.id for r in page])
    _log_delivery_reads(session, principal, page, purpose)
    return NotificationsPublic(
        data=[_notification_public(r, attempts[r.id]) for r in page], next_cursor=next_cursor
    )


async def get_notification(
    session: AsyncSession, principal: Principal, notification_id: uuid.UUID, *, purpose: str
) -> NotificationPublic:
    row = await NotificationsRepository(session).get_notification(notification_id)
    if row is None:
        raise NotFound("no such notification")
    attempts = await NotificationsRepository(session).attempts_of([row.id])
    _log_delivery_reads(session, principal, [row], purpose)
    return _notification_public(row, attempts[row.id])


async def subject_access(
    session: AsyncSession, principal: Principal, crn: str, settings: ServiceSettings
) -> SubjectAccessPublic:
    rows = await NotificationsRepository(session).notifications_for_crn(crn)
    attempts = await NotificationsRepository(session).attempts_of([r.id for r in rows])
    log_rows, erasures = await subject_access_records(session, principal, crn, settings)
    return SubjectAccessPublic(
        crn=crn,
        notifications=[
            _notification_public(r, attempts[r.id], SubjectAccessNotification, address=r.address)
            for r in rows
        ],
        access_log=[AccessLogEntry.model_validate(a, from_attributes=True) for a in log_rows],
        erasures=erasures,
    )

"""The need state machine, driven by the providers' events, tolerant of order and repeats.

Events arrive at least once and in any order. Rather than refuse a transition the need has
already passed, a stale or repeated event is *ignored* (with the reason) and leaves the need
as it is. The rules:

1. `withdrawn`, `completed` and `unallocated` are final: every later provider event is ignored.
2. Within one provider referral the stages only move forward: allocated < acknowledged <
   accepted | declined < started (in_progress) < completed. An event for a stage the need has
   reached or passed is ignored (`acknowledged` after `accepted`; a second `accepted`), and so
   is anything after a decline of that provider referral. A late `allocated` for the current
   provider referral still fills in the service, provider and deadlines it carries, without
   moving the status back.
3. A provider referral other than the current one (a re-route after a decline) takes over
   only if its event happened after the latest event applied to the need, or at the same
   instant as the decline it follows (the providers service may stamp a decline and the
   re-route with one clock reading). Otherwise it is a leftover of an earlier routing, and is
   ignored. `unallocated` (which has no provider referral) follows the same rule.
4. `deadline-missed` never changes the status: it is recorded once per deadline, and only while
   the need is still waiting for that step from the current provider referral.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from pathways_shared.errors import PathwaysError
from pathways_shared.event_payloads import (
    DeadlineMissed,
    NeedRef,
    ProviderReferralRef,
    ReferralAllocated,
    ReferralUnallocated,
)
from pathways_shared.vocabulary import NeedStatus
from referrals.domain.referral import HistoryEntry, Need, Referral, ReferralStatus

EVENT_TYPE_PREFIX = "providers.referral."


class ProviderEventKind(StrEnum):
    ALLOCATED = "allocated"
    UNALLOCATED = "unallocated"
    ACKNOWLEDGED = "acknowledged"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    STARTED = "started"
    COMPLETED = "completed"
    DEADLINE_MISSED = "deadline-missed"

    @property
    def event_type(self) -> str:
        return EVENT_TYPE_PREFIX + self.value


class Deadline(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    RESPOND = "respond"


TARGET_STATUS: dict[ProviderEventKind, NeedStatus] = {
    ProviderEventKind.ALLOCATED: NeedStatus.ALLOCATED,
    ProviderEventKind.UNALLOCATED: NeedStatus.UNALLOCATED,
    ProviderEventKind.ACKNOWLEDGED: NeedStatus.ACKNOWLEDGED,
    ProviderEventKind.ACCEPTED: NeedStatus.ACCEPTED,
    ProviderEventKind.DECLINED: NeedStatus.DECLINED,
    ProviderEventKind.STARTED: NeedStatus.IN_PROGRESS,
    ProviderEventKind.COMPLETED: NeedStatus.COMPLETED,
}

# How far along one provider referral a status is. Accepted and declined are alternatives.
STAGE: dict[NeedStatus, int] = {
    NeedStatus.SUBMITTED: 0,
    NeedStatus.ALLOCATED: 1,
    NeedStatus.ACKNOWLEDGED: 2,
    NeedStatus.ACCEPTED: 3,
    NeedStatus.DECLINED: 3,
    NeedStatus.IN_PROGRESS: 4,
    NeedStatus.COMPLETED: 5,
}

FINAL_STATUSES = frozenset({NeedStatus.WITHDRAWN, NeedStatus.COMPLETED, NeedStatus.UNALLOCATED})

# A deadline is still open while the need waits at one of these stages.
DEADLINE_OPEN_WHILE: dict[Deadline, frozenset[NeedStatus]] = {
    Deadline.ACKNOWLEDGE: frozenset({NeedStatus.ALLOCATED}),
    Deadline.RESPOND: frozenset({NeedStatus.ALLOCATED, NeedStatus.ACKNOWLEDGED}),
}


class MalformedProviderEvent(PathwaysError):
    """An event this service can never process: it goes to the dead letter store."""

    status = 422
    code = "malformed-provider-event"
    title = "The provider event cannot be read"


@dataclass(frozen=True)
class ProviderEvent:
    kind: ProviderEventKind
    occurred_at: datetime
    referral_id: UUID
    need_id: UUID
    provider_referral_id: UUID | None = None
    service_code: str | None = None
    provider_code: str | None = None
    programme: str | None = None
    acknowledge_by: datetime | None = None
    respond_by: datetime | None = None
    reason: str | None = None  # unallocated: why no service was eligible
    reason_code: str | None = None  # declined
    outcome: str | None = None  # completed
    deadline: Deadline | None = None  # deadline-missed


def _uuid(value: str, name: str) -> UUID:
    try:
        return UUID(value)
    except ValueError as error:
        raise MalformedProviderEvent(f"additionalInformation.{name} is not a UUID") from error


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise MalformedProviderEvent(f"additionalInformation.{name} has no time zone")
    return value


def read_provider_event(event_type: str, occurred_at: datetime, payload: NeedRef) -> ProviderEvent:
    """The event's payload, already validated as the shared model of its type (the consumer's
    `typed`), as a ProviderEvent; MalformedProviderEvent if it can never apply.

    Strict on what identifies the change (ids, which deadline), lenient on the rest (the
    shared models allow unknown fields), so that a provider adding fields never stalls the
    stream.
    """
    if not event_type.startswith(EVENT_TYPE_PREFIX):
        raise MalformedProviderEvent(f"{event_type!r} is not a provider referral event")
    try:
        kind = ProviderEventKind(event_type.removeprefix(EVENT_TYPE_PREFIX))
    except ValueError as error:
        raise MalformedProviderEvent(f"unknown event type {event_type!r}") from error
    provider = payload if isinstance(payload, ProviderReferralRef) else None
    if provider is None and kind is not ProviderEventKind.UNALLOCATED:
        raise MalformedProviderEvent("additionalInformation.providerReferralId is missing")
    deadline: Deadline | None = None
    if isinstance(payload, DeadlineMissed):
        try:
            deadline = Deadline(payload.deadline)
        except ValueError as error:
            raise MalformedProviderEvent(
                f"additionalInformation.deadline {payload.deadline!r} is not acknowledge or respond"
            ) from error
    allocation = payload if isinstance(payload, ReferralAllocated) else None
    reason_code = getattr(payload, "reason_code", None)
    outcome = getattr(payload, "outcome", None)
    return ProviderEvent(
        kind=kind,
        occurred_at=occurred_at,
        referral_id=_uuid(payload.referral_id, "referralId"),
        need_id=_uuid(payload.need_id, "needId"),
        provider_referral_id=(
            _uuid(provider.provider_referral_id, "providerReferralId") if provider else None
        ),
        service_code=provider.service_code if provider else None,
        provider_code=provider.provider_code if provider else None,
        programme=provider.programme if provider else None,
        acknowledge_by=_aware(allocation.acknowledge_by, "acknowledgeBy") if allocation else None,
        respond_by=_aware(allocation.respond_by, "respondBy") if allocation else None,
        reason=payload.reason if isinstance(payload, ReferralUnallocated) else None,
        reason_code=str(reason_code) if reason_code is not None else None,
        outcome=str(outcome) if outcome is not None else None,
        deadline=deadline,
    )


@dataclass(frozen=True)
class NeedDecision:
    need: Need
    history: tuple[HistoryEntry, ...]
    ignored: str | None = None  # why the event changed nothing, when it did not

    @property
    def applied(self) -> bool:
        return self.ignored is None


def _actor(need: Need, event: ProviderEvent) -> str:
    provider = event.provider_code
    if provider is None and event.provider_referral_id == need.provider_referral_id:
        provider = need.provider_code
    return f"provider:{provider}" if provider else "providers"


def _ignore(need: Need, why: str) -> NeedDecision:
    return NeedDecision(need=need, history=(), ignored=why)


def _allocation_fields(event: ProviderEvent) -> dict[str, Any]:
    return {
        "service_code": event.service_code,
        "provider_code": event.provider_code,
        "programme": event.programme,
        "allocated_at": event.occurred_at,
        "acknowledge_by": event.acknowledge_by,
        "respond_by": event.respond_by,
    }


def _status_reason(event: ProviderEvent) -> str | None:
    if event.kind is ProviderEventKind.DECLINED:
        return event.reason_code
    if event.kind is ProviderEventKind.UNALLOCATED:
        return event.reason
    if event.kind is ProviderEventKind.COMPLETED:
        return event.outcome
    return None


def _detail(event: ProviderEvent) -> dict[str, Any]:
    detail: dict[str, Any] = {}
    if event.provider_referral_id is not None:
        detail["provider_referral_id"] = str(event.provider_referral_id)
    for key in ("service_code", "provider_code", "programme", "reason", "reason_code", "outcome"):
        value = getattr(event, key)
        if value is not None:
            detail[key] = value
    if event.deadline is not None:
        detail["deadline"] = event.deadline.value
    return detail


def _record_deadline(need: Need, event: ProviderEvent, now: datetime) -> NeedDecision:
    assert event.deadline is not None
    if event.provider_referral_id != need.provider_referral_id:
        return _ignore(need, "the deadline belongs to another provider referral")
    if need.status not in DEADLINE_OPEN_WHILE[event.deadline]:
        return _ignore(need, f"the need is {need.status.value}: that step was already taken")
    if event.deadline.value in need.missed_deadlines:
        return _ignore(need, "this deadline was already recorded as missed")
    changed = replace(
        need,
        missed_deadlines=need.missed_deadlines | {event.deadline.value},
        updated_at=now,
    )
    entry = HistoryEntry(
        at=event.occurred_at,
        actor=_actor(need, event),
        event=event.kind.value,
        need_id=need.id,
        detail=_detail(event),
    )
    return NeedDecision(need=changed, history=(entry,))


def _transition(
    need: Need, event: ProviderEvent, now: datetime, *, new_provider_referral: bool
) -> NeedDecision:
    target = TARGET_STATUS[event.kind]
    fields: dict[str, Any] = {
        "status": target,
        "status_reason": _status_reason(event),
        "updated_at": now,
        "last_event_at": max(filter(None, (need.last_event_at, event.occurred_at))),
    }
    if new_provider_referral:
        fields.update(
            provider_referral_id=event.provider_referral_id,
            missed_deadlines=frozenset(),
            service_code=None,
            provider_code=None,
            programme=None,
            allocated_at=None,
            acknowledge_by=None,
            respond_by=None,
        )
    if event.kind is ProviderEventKind.ALLOCATED:
        fields.update(_allocation_fields(event))
    changed = replace(need, **fields)
    detail = {"from": need.status.value, "to": target.value, **_detail(event)}
    entry = HistoryEntry(
        at=event.occurred_at,
        actor=_actor(need, event),
        event=event.kind.value,
        need_id=need.id,
        detail=detail,
    )
    return NeedDecision(need=changed, history=(entry,))


def _fill_in_allocation(need: Need, event: ProviderEvent, now: datetime) -> NeedDecision:
    """A late `allocated` for the current provider referral: keep the status, learn the rest."""
    if need.service_code is not None:
        return _ignore(need, f"the need is already {need.status.value} with this provider referral")
    changed = replace(need, **_allocation_fields(event), updated_at=now)
    entry = HistoryEntry(
        at=event.occurred_at,
        actor=_actor(need, event),
        event="allocation-recorded",
        need_id=need.id,
        detail={"status": need.status.value, **_detail(event)},
    )
    return NeedDecision(need=changed, history=(entry,))


def apply_provider_event(need: Need, event: ProviderEvent, *, now: datetime) -> NeedDecision:
    """The need after this event, or the same need and why the event was ignored."""
    if event.need_id != need.id:
        raise ValueError("the event is for another need")
    if need.status in FINAL_STATUSES:
        return _ignore(need, f"the need has ended ({need.status.value})")
    if event.kind is ProviderEventKind.DEADLINE_MISSED:
        return _record_deadline(need, event, now)

    same_provider_referral = (
        event.provider_referral_id is not None
        and event.provider_referral_id == need.provider_referral_id
    )
    if same_provider_referral:
        target = TARGET_STATUS[event.kind]
        if event.kind is ProviderEventKind.ALLOCATED:
            return _fill_in_allocation(need, event, now)
        if need.status is NeedStatus.DECLINED:
            return _ignore(need, "stale: this provider referral was declined")
        if STAGE[target] > STAGE[need.status]:
            return _transition(need, event, now, new_provider_referral=False)
        return _ignore(
            need, f"stale: the need is already {need.status.value} with this provider referral"
        )

    # Another provider referral (a re-route), or unallocated, or the first event of all.
    last = need.last_event_at
    follows = (
        last is None
        or event.occurred_at > last
        or (event.occurred_at == last and need.status is NeedStatus.DECLINED)
    )
    if not follows:
        return _ignore(need, "stale: it happened before the latest event applied to the need")
    # A new provider referral, or none at all after `unallocated`: the old allocation goes.
    return _transition(need, event, now, new_provider_referral=True)


@dataclass(frozen=True)
class ReferralEventDecision:
    referral: Referral
    history: tuple[HistoryEntry, ...]
    ignored: str | None = None

    @property
    def applied(self) -> bool:
        return self.ignored is None


def apply_to_referral(
    referral: Referral, event: ProviderEvent, *, now: datetime
) -> ReferralEventDecision:
    """Apply the event to its need; note in the history when the referral closes as a result."""
    if event.referral_id != referral.id:
        raise ValueError("the event is for another referral")
    need = referral.need(event.need_id)
    decision = apply_provider_event(need, event, now=now)
    if not decision.applied:
        return ReferralEventDecision(referral=referral, history=(), ignored=decision.ignored)
    before = referral.status
    changed = replace(
        referral,
        needs=tuple(decision.need if n.id == need.id else n for n in referral.needs),
    )
    history = decision.history
    if before is ReferralStatus.OPEN and changed.status is ReferralStatus.CLOSED:
        history += (
            HistoryEntry(
                at=event.occurred_at,
                actor="referrals",
                event="closed",
                detail={"reason": "every need has ended"},
            ),
        )
    return ReferralEventDecision(referral=changed, history=history)

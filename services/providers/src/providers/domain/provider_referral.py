"""The provider referral: allocation, its state machine, service levels and Duty to Refer.

Pure: values in, a new state and the events it causes out. No clock reads: every action takes
`now`. Events are the shared payload models; the service layer publishes them through the
outbox with the CRN on their envelope.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pathways_shared.event_payloads import (
    DeadlineMissed,
    ProviderReferralWithdrawn,
    ReferralAccepted,
    ReferralAcknowledged,
    ReferralAllocated,
    ReferralCompleted,
    ReferralDeclined,
    ReferralStarted,
    ReferralUnallocated,
    UnallocationReason,
)
from pathways_shared.vocabulary import (
    Complexity,
    DeclineReason,
    Outcome,
    Pathway,
    WithdrawalReason,
)
from providers.domain.catalogue import NeedFlag, Service
from providers.domain.routing import RoutingDecision
from providers.domain.working_days import WorkingCalendar
from providers.errors import IllegalTransition, InvalidValue


class ProviderReferralStatus(StrEnum):
    ALLOCATED = "allocated"
    ACKNOWLEDGED = "acknowledged"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    WITHDRAWN = "withdrawn"


S = ProviderReferralStatus
ENDED_STATUSES: frozenset[ProviderReferralStatus] = frozenset(
    {S.DECLINED, S.COMPLETED, S.WITHDRAWN}
)
AWAITING_RESPONSE: frozenset[ProviderReferralStatus] = frozenset({S.ALLOCATED, S.ACKNOWLEDGED})

# action -> the statuses it may be taken from
ALLOWED_FROM: dict[str, frozenset[ProviderReferralStatus]] = {
    "acknowledge": frozenset({S.ALLOCATED}),
    "accept": AWAITING_RESPONSE,
    "decline": AWAITING_RESPONSE,
    "start": frozenset({S.ACCEPTED}),
    "complete": frozenset({S.IN_PROGRESS}),
    "withdraw": frozenset(S) - ENDED_STATUSES,
}


class Deadline(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    RESPOND = "respond"


MAX_COMMENTS = 4000


def _require_aware(field: str, moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidValue.for_field(field, "must include a time zone")


def _parse_code(enum: type[Any], field: str, value: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        raise InvalidValue.for_field(field, f"must be one of {allowed}") from None


def requires_duty_to_refer(pathway: str, flags: Iterable[str], consent_given: bool) -> bool:
    """An accommodation need at risk of homelessness, with consent, triggers a Duty to Refer."""
    return (
        pathway == Pathway.ACCOMMODATION
        and NeedFlag.AT_RISK_OF_HOMELESSNESS in set(flags)
        and consent_given
    )


# ---- events -------------------------------------------------------------------------------


# The events are the shared payload models (`pathways_shared.event_payloads`); the service
# puts the CRN and the detail URL on their envelope.
NeedEvent = (
    ReferralAllocated | ReferralUnallocated | ReferralAcknowledged | ReferralAccepted
    | ReferralDeclined | ReferralStarted | ReferralCompleted | ProviderReferralWithdrawn
    | DeadlineMissed
)


# ---- the provider referral ----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ProviderReferral:
    """One need allocated to one service, and what the provider did with it."""

    id: uuid.UUID
    referral_id: uuid.UUID
    need_id: uuid.UUID
    crn: str
    area: str
    pathway: Pathway
    complexity: Complexity
    flags: tuple[str, ...]
    service_code: str
    provider_code: str
    programme: str
    status: ProviderReferralStatus
    allocated_at: datetime
    acknowledge_by: datetime
    respond_by: datetime
    acknowledged_at: datetime | None = None
    responded_at: datetime | None = None
    decline_reason: DeclineReason | None = None
    decline_comments: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    outcome: Outcome | None = None
    outcome_notes: str | None = None
    withdrawn_at: datetime | None = None
    withdrawal_reason: WithdrawalReason | None = None

    @property
    def ended(self) -> bool:
        return self.status in ENDED_STATUSES

    @property
    def ended_at(self) -> datetime | None:
        """When it ended: the decline, the completion or the withdrawal; None while live."""
        if self.status is S.DECLINED:
            return self.responded_at
        if self.status is S.COMPLETED:
            return self.completed_at
        if self.status is S.WITHDRAWN:
            return self.withdrawn_at
        return None

    def shares_person_details(self, now: datetime, after_end: timedelta) -> bool:
        """Least knowledge (DOMAIN.md "Keeping data no longer than necessary"): the provider
        sees the person's details while its referral is live and for `after_end` once it has
        ended, then not at all (the rest of the record stays)."""
        if not self.ended:
            return True
        ended_at = self.ended_at
        return ended_at is not None and now < ended_at + after_end

    def _ids(self) -> dict[str, Any]:
        return {
            "referral_id": str(self.referral_id),
            "need_id": str(self.need_id),
            "provider_referral_id": str(self.id),
            "service_code": self.service_code,
            "provider_code": self.provider_code,
            "programme": self.programme,
            "pathway": self.pathway,
        }

    def _check(self, action: str) -> None:
        if self.status not in ALLOWED_FROM[action]:
            raise IllegalTransition(action, self.status)

    def can(self, action: str) -> bool:
        return self.status in ALLOWED_FROM[action]

    def acknowledge(self, now: datetime) -> tuple[ProviderReferral, ReferralAcknowledged]:
        self._check("acknowledge")
        new = dataclasses.replace(self, status=S.ACKNOWLEDGED, acknowledged_at=now)
        return new, ReferralAcknowledged(**self._ids())

    def accept(self, now: datetime) -> tuple[ProviderReferral, ReferralAccepted]:
        self._check("accept")
        new = dataclasses.replace(
            self,
            status=S.ACCEPTED,
            acknowledged_at=self.acknowledged_at or now,
            responded_at=now,
        )
        return new, ReferralAccepted(**self._ids())

    def decline(
        self, now: datetime, reason_code: str, comments: str | None = None
    ) -> tuple[ProviderReferral, ReferralDeclined]:
        self._check("decline")
        reason = _parse_code(DeclineReason, "reason_code", reason_code)
        comments = _clean_text("comments", comments)
        if reason == DeclineReason.OTHER and not comments:
            raise InvalidValue.for_field("comments", "required when the reason is other")
        new = dataclasses.replace(
            self,
            status=S.DECLINED,
            acknowledged_at=self.acknowledged_at or now,
            responded_at=now,
            decline_reason=reason,
            decline_comments=comments,
        )
        return new, ReferralDeclined(**self._ids(), reason_code=reason)

    def start(
        self, now: datetime, started_at: datetime | None = None
    ) -> tuple[ProviderReferral, ReferralStarted]:
        self._check("start")
        started_at = now if started_at is None else started_at
        _require_aware("started_at", started_at)
        if started_at > now:
            raise InvalidValue.for_field("started_at", "must not be in the future")
        if started_at < self.allocated_at:
            raise InvalidValue.for_field("started_at", "must not be before the allocation")
        new = dataclasses.replace(self, status=S.IN_PROGRESS, started_at=started_at)
        return new, ReferralStarted(**self._ids())

    def complete(
        self, now: datetime, outcome: str, notes: str | None = None
    ) -> tuple[ProviderReferral, ReferralCompleted]:
        self._check("complete")
        parsed = _parse_code(Outcome, "outcome", outcome)
        new = dataclasses.replace(
            self,
            status=S.COMPLETED,
            completed_at=now,
            outcome=parsed,
            outcome_notes=_clean_text("notes", notes),
        )
        return new, ReferralCompleted(**self._ids(), outcome=parsed)

    def withdraw(
        self, now: datetime, reason_code: str
    ) -> tuple[ProviderReferral, ProviderReferralWithdrawn]:
        """Closed because probation withdrew the need; its clocks stop."""
        self._check("withdraw")
        reason = _parse_code(WithdrawalReason, "reason_code", reason_code)
        new = dataclasses.replace(
            self, status=S.WITHDRAWN, withdrawn_at=now, withdrawal_reason=reason
        )
        return new, ProviderReferralWithdrawn(**self._ids(), reason_code=reason)

    def running_deadlines(self) -> dict[Deadline, datetime]:
        """The service-level clocks still running: acknowledge until any response, respond
        until accepted or declined; none once the referral is accepted, ended or withdrawn."""
        running: dict[Deadline, datetime] = {}
        if self.status == S.ALLOCATED:
            running[Deadline.ACKNOWLEDGE] = self.acknowledge_by
        if self.status in AWAITING_RESPONSE:
            running[Deadline.RESPOND] = self.respond_by
        return running

    def missed_deadlines(
        self, now: datetime, already_reported: Iterable[Deadline | str] = ()
    ) -> list[DeadlineMissed]:
        """A `deadline-missed` event for each running deadline past at `now`, once each."""
        reported = {Deadline(d) for d in already_reported}
        return [
            DeadlineMissed(
                **self._ids(),
                deadline=kind,
                due_at=due,
            )
            for kind, due in self.running_deadlines().items()
            if now > due and kind not in reported
        ]


def _clean_text(field: str, value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if len(value) > MAX_COMMENTS:
        raise InvalidValue.for_field(field, f"must be at most {MAX_COMMENTS} characters")
    return value or None


# ---- allocation ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class NeedToRoute:
    """The need and the few facts about it that allocation records (no personal details)."""

    referral_id: uuid.UUID
    need_id: uuid.UUID
    crn: str
    area: str
    pathway: Pathway
    complexity: Complexity
    flags: tuple[str, ...] = ()
    consent_given: bool = True

    @property
    def duty_to_refer(self) -> bool:
        return requires_duty_to_refer(self.pathway, self.flags, self.consent_given)


def allocate(
    need: NeedToRoute,
    service: Service,
    *,
    provider_referral_id: uuid.UUID,
    now: datetime,
    calendar: WorkingCalendar,
) -> tuple[ProviderReferral, ReferralAllocated]:
    """A new provider referral for `service`, with its service-level deadlines."""
    _require_aware("allocated_at", now)
    referral = ProviderReferral(
        id=provider_referral_id,
        referral_id=need.referral_id,
        need_id=need.need_id,
        crn=need.crn,
        area=need.area,
        pathway=need.pathway,
        complexity=need.complexity,
        flags=tuple(need.flags),
        service_code=service.code,
        provider_code=service.provider_code,
        programme=service.programme,
        status=S.ALLOCATED,
        allocated_at=now,
        acknowledge_by=calendar.deadline(now, service.acknowledge_days),
        respond_by=calendar.deadline(now, service.respond_days),
    )
    event = ReferralAllocated(
        **referral._ids(),
        area=need.area,
        acknowledge_by=referral.acknowledge_by,
        respond_by=referral.respond_by,
        duty_to_refer=need.duty_to_refer,
    )
    return referral, event


def apply_decision(
    need: NeedToRoute,
    decision: RoutingDecision,
    *,
    provider_referral_id: uuid.UUID,
    now: datetime,
    calendar: WorkingCalendar,
) -> tuple[ProviderReferral | None, ReferralAllocated | ReferralUnallocated]:
    """Turn a routing decision into a provider referral and `allocated`, or `unallocated`."""
    if decision.chosen is not None:
        return allocate(
            need,
            decision.chosen,
            provider_referral_id=provider_referral_id,
            now=now,
            calendar=calendar,
        )
    return None, ReferralUnallocated(
        referral_id=str(need.referral_id),
        need_id=str(need.need_id),
        reason=decision.unallocated_reason or "no eligible service",
        # every service of the pathway considered, in routing order, so unmet need can be
        # counted by reason without parsing `reason`
        reasons=[UnallocationReason(service_code=a.service_code, criterion=a.criterion or "")
                 for a in decision.assessments],
        pathway=need.pathway,
        area=need.area,
        duty_to_refer=need.duty_to_refer,
    )


def declined_services(referrals: Iterable[ProviderReferral]) -> frozenset[str]:
    """The services that declined a need, from its provider referrals: routing skips them."""
    return frozenset(r.service_code for r in referrals if r.status == S.DECLINED)

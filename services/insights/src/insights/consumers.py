"""What the insights service consumes: every event of the four streams, from the first.

One durable consumer per stream (`insights-referrals`, `insights-providers`,
`insights-cohorts`, `insights-notifications`), deliver-all, so a new deployment builds its
history from the streams. One handler per event type receives the shared payload model
(`pathways_shared.event_payloads`), validated; an event that does not validate can never
succeed and goes to the dead letter store. The CRN of the envelope is never stored: cohort
members are known by a keyed pseudonym.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from sqlmodel.ext.asyncio.session import AsyncSession

from insights import service
from insights.config import InsightsSettings
from insights.domain.cohorts import ACTIVITY, DESELECTED, SELECTED
from insights.domain.projection import StepKind, unmet_reason
from pathways_shared.consumer import Handler, PermanentError, Subscription, typed
from pathways_shared.event_payloads import (
    PAYLOADS,
    DeadlineMissed,
    DutyToReferSent,
    MemberDeselected,
    MemberPathwayActivity,
    MemberSelected,
    Payload,
    ProviderReferralRef,
    ReferralAllocated,
    ReferralCompleted,
    ReferralDeclined,
    ReferralSubmitted,
    ReferralUnallocated,
    ReferralWithdrawn,
)
from pathways_shared.events import Event
from pathways_shared.working_days import WorkingCalendar

P = TypeVar("P", bound=Payload)
TypedHandler = Callable[[AsyncSession, Event, Any], Awaitable[None]]

DURABLES = {
    "REFERRALS": "insights-referrals",
    "PROVIDERS": "insights-providers",
    "COHORTS": "insights-cohorts",
    "NOTIFICATIONS": "insights-notifications",
}


class Projector:
    """The handlers, with what they share: the working-day calendar and the pseudonym key."""

    def __init__(self, settings: InsightsSettings) -> None:
        self.calendar = WorkingCalendar()
        self.pseudonym_secret = service.pseudonym_secret(settings)

    async def on_submitted(self, session: AsyncSession, event: Event, p: ReferralSubmitted) -> None:
        await service.record_submission(
            session, event_id=str(event.id), occurred_at=event.occurred_at,
            referral_id=str(p.referral_id), area=p.area, sex=str(p.sex),
            age_on_submission=p.age_on_submission, supervision_status=str(p.supervision_status),
            needs=[(str(n.need_id), str(n.pathway), str(n.complexity), n.flags) for n in p.needs],
            calendar=self.calendar,
        )

    async def on_withdrawn(self, session: AsyncSession, event: Event, p: ReferralWithdrawn) -> None:
        for need_id in map(str, p.need_ids):
            await self._step(session, event, need_id, StepKind.WITHDRAWN, detail=str(p.reason_code))

    async def on_allocated(self, session: AsyncSession, event: Event, p: ReferralAllocated) -> None:
        await service.record_allocation(
            session, event_id=str(event.id), occurred_at=event.occurred_at, need_id=p.need_id,
            provider_referral_id=p.provider_referral_id, service_code=p.service_code,
            provider_code=p.provider_code, programme=p.programme,
            acknowledge_by=p.acknowledge_by, respond_by=p.respond_by, calendar=self.calendar,
        )

    async def on_unallocated(
        self, session: AsyncSession, event: Event, p: ReferralUnallocated
    ) -> None:
        reasons = None if p.reasons is None else [(r.service_code, r.criterion) for r in p.reasons]
        await self._step(session, event, p.need_id, StepKind.UNALLOCATED,
                         detail=unmet_reason(reasons))

    def on_step(self, kind: StepKind) -> TypedHandler:
        async def handle(session: AsyncSession, event: Event, p: ProviderReferralRef) -> None:
            detail = None
            if isinstance(p, ReferralDeclined):
                detail = str(p.reason_code)
            elif isinstance(p, ReferralCompleted):
                detail = str(p.outcome)
            elif isinstance(p, DeadlineMissed):
                detail = p.deadline
            await self._step(session, event, p.need_id, kind,
                             provider_referral_id=p.provider_referral_id, detail=detail)

        return handle

    async def on_duty_to_refer(self, session: AsyncSession, event: Event, p: DutyToReferSent) -> None:
        await self._step(session, event, p.need_id, StepKind.DUTY_TO_REFER_SENT)

    async def on_member(
        self, session: AsyncSession, event: Event,
        p: MemberSelected | MemberDeselected | MemberPathwayActivity,
    ) -> None:
        if not event.crn:
            raise PermanentError(f"{event.event_type} without a person reference")
        if isinstance(p, MemberSelected):
            kind, extra = SELECTED, {}
        elif isinstance(p, MemberDeselected):
            kind, extra = DESELECTED, {"reason": str(p.reason)}
        else:
            kind, extra = ACTIVITY, {"pathway": str(p.pathway), "status": str(p.status)}
        await service.record_cohort_fact(
            session, event_id=str(event.id), occurred_at=event.occurred_at, kind=kind,
            member=service.member_key(event.crn, self.pseudonym_secret), area=p.area,
            cohort=str(p.cohort), **extra,
        )

    async def _step(
        self, session: AsyncSession, event: Event, need_id: str, kind: StepKind, *,
        provider_referral_id: str | None = None, detail: str | None = None,
    ) -> None:
        await service.record_step(
            session, event_id=str(event.id), occurred_at=event.occurred_at, need_id=need_id,
            kind=kind, provider_referral_id=provider_referral_id, detail=detail,
            calendar=self.calendar,
        )

    def handlers(self) -> dict[str, dict[str, Handler]]:
        """Handlers by stream, then by event type, each receiving its type's shared payload
        model (`typed`: validated; one that does not validate is dead-lettered)."""
        handles: dict[str, dict[str, TypedHandler]] = {
            "REFERRALS": {
                "referrals.referral.submitted": self.on_submitted,
                "referrals.referral.withdrawn": self.on_withdrawn,
            },
            "PROVIDERS": {
                "providers.referral.allocated": self.on_allocated,
                "providers.referral.unallocated": self.on_unallocated,
                "providers.referral.acknowledged": self.on_step(StepKind.ACKNOWLEDGED),
                "providers.referral.accepted": self.on_step(StepKind.ACCEPTED),
                "providers.referral.declined": self.on_step(StepKind.DECLINED),
                "providers.referral.started": self.on_step(StepKind.STARTED),
                "providers.referral.completed": self.on_step(StepKind.COMPLETED),
                "providers.referral.deadline-missed": self.on_step(StepKind.DEADLINE_MISSED),
            },
            "COHORTS": {
                "cohorts.member.selected": self.on_member,
                "cohorts.member.deselected": self.on_member,
                "cohorts.member.pathway-activity": self.on_member,
            },
            "NOTIFICATIONS": {
                "notifications.duty-to-refer.sent": self.on_duty_to_refer,
            },
        }
        return {
            stream: {event_type: typed(PAYLOADS[event_type], handle) for event_type, handle in by_type.items()}
            for stream, by_type in handles.items()
        }


def subscriptions(settings: InsightsSettings) -> list[Subscription]:
    handlers = Projector(settings).handlers()
    return [
        Subscription(stream=stream, durable=durable, handlers=handlers[stream])
        for stream, durable in DURABLES.items()
    ]

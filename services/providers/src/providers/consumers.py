"""Event handlers of the providers service, run by the shared idempotent consumer.

One handler per event type, each receiving the payload validated as the shared model
(`pathways_shared.event_payloads`; a malformed payload is dead-lettered by `typed`). Each
runs in the consumer's one transaction, which also records the event id, so a redelivery has
no second effect. An event that can never be processed raises `PermanentError` and goes to
the dead letter store.
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from pathways_shared.consumer import PermanentError, Subscription, typed
from pathways_shared.event_payloads import (
    MemberDeselected,
    MemberSelected,
    ReferralSubmitted,
    ReferralWithdrawn,
)
from pathways_shared.events import Event, utc_now
from pathways_shared.vocabulary import AREAS
from providers import service
from providers.domain.working_days import WorkingCalendar


def _crn(event: Event) -> str:
    if not event.crn:
        raise PermanentError(f"{event.event_type} without a CRN in personReference")
    return event.crn


def subscriptions(base_url: str, calendar: WorkingCalendar) -> list[Subscription]:
    def ctx() -> service.Context:
        return service.Context(now=utc_now(), calendar=calendar, base_url=base_url)

    async def on_submitted(
        session: AsyncSession, event: Event, submitted: ReferralSubmitted
    ) -> None:
        if submitted.area not in AREAS:
            raise PermanentError(f"unknown area {submitted.area}")
        referral = service.SubmittedReferral(
            referral_id=submitted.referral_id,
            crn=_crn(event),
            area=submitted.area,
            sex=submitted.sex,
            age=submitted.age_on_submission,
            supervision_status=submitted.supervision_status,
            needs=tuple(submitted.needs),
            submitted_at=event.occurred_at,
        )
        await service.route_submitted_referral(session, referral, ctx())

    async def on_withdrawn(
        session: AsyncSession, event: Event, withdrawn: ReferralWithdrawn
    ) -> None:
        await service.withdraw_needs(
            session,
            referral_id=withdrawn.referral_id,
            need_ids=withdrawn.need_ids,
            reason_code=withdrawn.reason_code,
            ctx=ctx(),
        )

    async def on_member_selected(
        session: AsyncSession, event: Event, selected: MemberSelected
    ) -> None:
        await service.record_membership(
            session,
            crn=_crn(event),
            area=selected.area,
            cohort=selected.cohort,
            member=True,
            occurred_at=event.occurred_at,
        )

    async def on_member_deselected(
        session: AsyncSession, event: Event, deselected: MemberDeselected
    ) -> None:
        await service.record_membership(
            session,
            crn=_crn(event),
            area=deselected.area,
            cohort=deselected.cohort,
            member=False,
            occurred_at=event.occurred_at,
        )

    return [
        Subscription(
            stream="REFERRALS",
            durable="providers-from-referrals",
            handlers={
                "referrals.referral.submitted": typed(ReferralSubmitted, on_submitted),
                "referrals.referral.withdrawn": typed(ReferralWithdrawn, on_withdrawn),
            },
        ),
        Subscription(
            stream="COHORTS",
            durable="providers-from-cohorts",
            handlers={
                "cohorts.member.selected": typed(MemberSelected, on_member_selected),
                "cohorts.member.deselected": typed(MemberDeselected, on_member_deselected),
            },
        ),
    ]

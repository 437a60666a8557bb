"""Event handlers of the providers service, run by the shared idempotent consumer.

Each runs in the consumer's one transaction, which also records the event id, so a
redelivery has no second effect. An event that can never be processed raises
`PermanentError` and goes to the dead letter store.
"""

from __future__ import annotations

import uuid

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlmodel.ext.asyncio.session import AsyncSession

from pathways_shared.consumer import PermanentError, Subscription
from pathways_shared.events import Event, utc_now
from pathways_shared.vocabulary import AREAS, Complexity, Pathway, Sex, SupervisionStatus
from providers import service
from providers.catalogue import NeedFlag
from providers.working_days import WorkingCalendar


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class SubmittedNeedInfo(_Lenient):
    need_id: uuid.UUID = Field(alias="needId")
    pathway: Pathway
    complexity: Complexity
    flags: list[NeedFlag | str] = Field(default_factory=list)


class SubmittedInfo(_Lenient):
    referral_id: uuid.UUID = Field(alias="referralId")
    area: str
    needs: list[SubmittedNeedInfo] = Field(min_length=1)
    sex: Sex
    age: int = Field(alias="ageOnSubmission", ge=0, le=150)
    supervision_status: SupervisionStatus = Field(alias="supervisionStatus")


class WithdrawnInfo(_Lenient):
    referral_id: uuid.UUID = Field(alias="referralId")
    need_ids: list[uuid.UUID] = Field(alias="needIds")
    reason_code: str = Field(default="other", alias="reasonCode")


class MemberInfo(_Lenient):
    area: str
    cohort: str | None = None


def _parse(model: type[BaseModel], event: Event) -> BaseModel:
    try:
        return model.model_validate(event.additional_information)
    except ValidationError as exc:
        raise PermanentError(f"{event.event_type}: {exc}") from exc


def _crn(event: Event) -> str:
    if not event.crn:
        raise PermanentError(f"{event.event_type} without a CRN in personReference")
    return event.crn


def subscriptions(base_url: str, calendar: WorkingCalendar) -> list[Subscription]:
    def ctx() -> service.Context:
        return service.Context(now=utc_now(), calendar=calendar, base_url=base_url)

    async def on_submitted(session: AsyncSession, event: Event) -> None:
        info = _parse(SubmittedInfo, event)
        assert isinstance(info, SubmittedInfo)
        if info.area not in AREAS:
            raise PermanentError(f"unknown area {info.area}")
        submitted = service.SubmittedReferral(
            referral_id=info.referral_id,
            crn=_crn(event),
            area=info.area,
            sex=info.sex,
            age=info.age,
            supervision_status=info.supervision_status,
            needs=tuple(
                service.SubmittedNeed(
                    need_id=n.need_id,
                    pathway=n.pathway,
                    complexity=n.complexity,
                    flags=tuple(str(f) for f in n.flags),
                )
                for n in info.needs
            ),
            submitted_at=event.occurred_at,
        )
        await service.route_submitted_referral(session, submitted, ctx())

    async def on_withdrawn(session: AsyncSession, event: Event) -> None:
        info = _parse(WithdrawnInfo, event)
        assert isinstance(info, WithdrawnInfo)
        await service.withdraw_needs(
            session,
            referral_id=info.referral_id,
            need_ids=info.need_ids,
            reason_code=info.reason_code,
            ctx=ctx(),
        )

    async def on_member_selected(session: AsyncSession, event: Event) -> None:
        info = _parse(MemberInfo, event)
        assert isinstance(info, MemberInfo)
        await service.record_membership(
            session,
            crn=_crn(event),
            area=info.area,
            cohort=info.cohort,
            member=True,
            occurred_at=event.occurred_at,
        )

    async def on_member_deselected(session: AsyncSession, event: Event) -> None:
        info = _parse(MemberInfo, event)
        assert isinstance(info, MemberInfo)
        await service.record_membership(
            session,
            crn=_crn(event),
            area=info.area,
            cohort=info.cohort,
            member=False,
            occurred_at=event.occurred_at,
        )

    return [
        Subscription(
            stream="REFERRALS",
            durable="providers-from-referrals",
            handlers={
                "referrals.referral.submitted": on_submitted,
                "referrals.referral.withdrawn": on_withdrawn,
            },
        ),
        Subscription(
            stream="COHORTS",
            durable="providers-from-cohorts",
            handlers={
                "cohorts.member.selected": on_member_selected,
                "cohorts.member.deselected": on_member_deselected,
            },
        ),
    ]

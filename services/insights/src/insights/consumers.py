"""What the insights service consumes: every event of the four streams, from the first.

One durable consumer per stream (`insights-referrals`, `insights-providers`,
`insights-cohorts`, `insights-notifications`), deliver-all, so a new deployment builds its
history from the streams. One handler per event type receives the shared payload model
(`pathways_shared.event_payloads`), validated; an event that does not validate can never
succeed and goes to the dead letter store. The CRN of the envelope is never stored: cohort
members are known by a keyed pseudonym.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from nats.aio.msg import Msg
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from insights import service
from insights.config import InsightsSettings
from insights.domain.cohorts import ACTIVITY, DESELECTED, SELECTED
from insights.domain.projection import StepKind, unmet_reason
from insights.repository import InsightsRepository, settle_in_one
from pathways_shared.consumer import Consumer, Handler, PermanentError, Subscription, typed
from pathways_shared.db import transaction
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
from pathways_shared.observability import get_logger
from pathways_shared.working_days import WorkingCalendar

log = get_logger(__name__)

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
        service.record_submission(session, calendar=self.calendar, **_submission(event, p))

    async def on_withdrawn(self, session: AsyncSession, event: Event, p: ReferralWithdrawn) -> None:
        self._step(session, event, [str(n) for n in p.need_ids], StepKind.WITHDRAWN,
                   detail=str(p.reason_code))

    async def on_allocated(self, session: AsyncSession, event: Event, p: ReferralAllocated) -> None:
        service.record_allocation(
            session, event_id=str(event.id), occurred_at=event.occurred_at, need_id=p.need_id,
            provider_referral_id=p.provider_referral_id, service_code=p.service_code,
            provider_code=p.provider_code, programme=p.programme,
            acknowledge_by=p.acknowledge_by, respond_by=p.respond_by, calendar=self.calendar,
        )

    async def on_unallocated(
        self, session: AsyncSession, event: Event, p: ReferralUnallocated
    ) -> None:
        reasons = None if p.reasons is None else [(r.service_code, r.criterion) for r in p.reasons]
        self._step(session, event, [p.need_id], StepKind.UNALLOCATED, detail=unmet_reason(reasons))

    def on_step(self, kind: StepKind) -> TypedHandler:
        async def handle(session: AsyncSession, event: Event, p: ProviderReferralRef) -> None:
            detail = None
            if isinstance(p, ReferralDeclined):
                detail = str(p.reason_code)
            elif isinstance(p, ReferralCompleted):
                detail = str(p.outcome)
            elif isinstance(p, DeadlineMissed):
                detail = p.deadline
            self._step(session, event, [p.need_id], kind,
                       provider_referral_id=p.provider_referral_id, detail=detail)

        return handle

    async def on_duty_to_refer(self, session: AsyncSession, event: Event, p: DutyToReferSent) -> None:
        self._step(session, event, [p.need_id], StepKind.DUTY_TO_REFER_SENT)

    async def on_member(
        self, session: AsyncSession, event: Event,
        p: MemberSelected | MemberDeselected | MemberPathwayActivity,
    ) -> None:
        service.record_cohort_fact(session, calendar=self.calendar, **self._member(event, p))

    def _member(
        self, event: Event, p: MemberSelected | MemberDeselected | MemberPathwayActivity
    ) -> dict[str, Any]:
        if not event.crn:
            raise PermanentError(f"{event.event_type} without a person reference")
        if isinstance(p, MemberSelected):
            kind, extra = SELECTED, {}
        elif isinstance(p, MemberDeselected):
            kind, extra = DESELECTED, {"reason": str(p.reason)}
        else:
            kind, extra = ACTIVITY, {"pathway": str(p.pathway), "status": str(p.status)}
        return {"event_id": str(event.id), "occurred_at": event.occurred_at, "kind": kind,
                "member": service.member_key(event.crn, self.pseudonym_secret), "area": p.area,
                "cohort": str(p.cohort), **extra}

    async def settle_in_one(
        self, connection: AsyncConnection, consumer: str, event: Event
    ) -> str | None:
        """PostgreSQL, outside any transaction (`Subscription.settle_in_one`): an event whose
        facts need nothing read to project, a submission (its needs new: see
        `insights.repository.settle_in_one`) or a cohort event, recorded processed, its facts
        stored and its counts added in one statement; None (nothing written) for any other
        event, one that does not validate (its handler reports it), or a submission of a need
        already known: the handlers' path."""
        try:
            payload = PAYLOADS[event.event_type].model_validate(event.additional_information)
            if isinstance(payload, ReferralSubmitted):
                facts = {"needs": service.submission_facts(**_submission(event, payload))}
            elif isinstance(payload, MemberSelected | MemberDeselected | MemberPathwayActivity):
                facts = {"cohort": [service.cohort_fact(**self._member(event, payload))]}
            else:
                return None
        except (ValidationError, PermanentError, KeyError):
            return None
        return await settle_in_one(connection, consumer=consumer, event=event,
                                   calendar=self.calendar, **facts)

    def _step(
        self, session: AsyncSession, event: Event, need_ids: list[str], kind: StepKind, *,
        provider_referral_id: str | None = None, detail: str | None = None,
    ) -> None:
        service.record_steps(
            session, event_id=str(event.id), occurred_at=event.occurred_at, need_ids=need_ids,
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


class ProjectionConsumer(Consumer):
    """The shared idempotent consumer, with each fetched batch projected in one transaction.

    A projection handles many small events that touch the same aggregate rows, so one
    transaction per fetch beats several concurrent ones (they would only queue on those rows'
    locks): the batch's events are marked handled in one statement, each new one's facts
    kept, and at commit all of them stored and projected together (`InsightsRepository`).
    Order within the batch does not matter (the projection is the same for every order).
    If anything in the batch fails, nothing of it is kept and each message is handled again
    on its own by the shared path (retried with backoff, dead-lettered when it can never
    succeed), so one bad event never takes the others with it. A redelivered message, or one
    that cannot be parsed, always goes the shared path.
    """

    async def handle_batch(self, messages: list[Msg]) -> list[str]:
        parsed = [(msg, _parse(msg)) for msg in messages]
        fresh = [(msg, event) for msg, event in parsed
                 if isinstance(event, Event) and _deliveries(msg) == 1]
        outcomes: dict[int, str] = {}
        if len(fresh) > 1:
            together = await self._project_together(fresh)  # type: ignore[arg-type]
            if together is not None:
                outcomes = together
        for msg, event in parsed:
            if id(msg) not in outcomes:
                outcomes[id(msg)] = await self.handle(msg, event)
        return [outcomes[id(msg)] for msg in messages]

    async def _project_together(self, batch: list[tuple[Msg, Event]]) -> dict[int, str] | None:
        outcomes: dict[int, str] = {}
        try:
            async with transaction(self.sessionmaker) as session:
                known = [event for _, event in batch if self.subscription.handler_for(event.event_type)]
                new = await InsightsRepository(session).mark_processed(self.name, known)
                for msg, event in batch:
                    handler = self.subscription.handler_for(event.event_type)
                    if handler is None:
                        outcomes[id(msg)] = "ignored"
                    elif str(event.id) not in new:
                        outcomes[id(msg)] = "duplicate"
                    else:
                        new.discard(str(event.id))  # the same event twice in a batch: once
                        await handler(session, event)
                        outcomes[id(msg)] = "handled"
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001  (each handled on its own, which reports it)
            log.info("consumer.batch_failed", consumer=self.name, events=len(batch),
                     error=str(exc)[:500], then="each handled on its own")
            return None
        for msg, _ in batch:
            await msg.ack()
        counted: dict[str, int] = {}
        for outcome in outcomes.values():
            counted[outcome] = counted.get(outcome, 0) + 1
            if self.metrics:
                self.metrics.consumer_messages.labels(consumer=self.name, outcome=outcome).inc()
        log.info("consumer.batch_handled", consumer=self.name, events=len(batch), **counted)
        return outcomes


def _submission(event: Event, p: ReferralSubmitted) -> dict[str, Any]:
    return {
        "event_id": str(event.id), "occurred_at": event.occurred_at,
        "referral_id": str(p.referral_id), "area": p.area, "sex": str(p.sex),
        "age_on_submission": p.age_on_submission, "supervision_status": str(p.supervision_status),
        "needs": [(str(n.need_id), str(n.pathway), str(n.complexity), n.flags) for n in p.needs],
    }


def _parse(msg: Msg) -> Event | Exception:
    try:
        return Event.from_json(msg.data)
    except (ValidationError, ValueError) as exc:
        return exc


def _deliveries(msg: Msg) -> int:
    return msg.metadata.num_delivered if msg.metadata else 1


def subscriptions(settings: InsightsSettings) -> list[Subscription]:
    projector = Projector(settings)
    handlers = projector.handlers()
    return [
        Subscription(stream=stream, durable=durable, handlers=handlers[stream],
                     consumer_class=ProjectionConsumer, settle_in_one=projector.settle_in_one)
        for stream, durable in DURABLES.items()
    ]

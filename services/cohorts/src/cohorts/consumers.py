"""Events the cohorts service consumes: referral and provider events about needs, each
handler receiving the payload validated as the shared model of its type (`typed`). It keeps
the pathway and status of each need, and publishes `cohorts.member.pathway-activity` when the
person is a current cohort member (pathway, status and programme only)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from cohorts import service
from cohorts.repository import settle_need
from pathways_shared.clock import utc_now
from pathways_shared.config import ServiceSettings
from pathways_shared.consumer import Handler, PermanentError, Subscription, typed
from pathways_shared.event_payloads import PAYLOADS, NeedRef, ReferralSubmitted, ReferralWithdrawn
from pathways_shared.events import Event
from pathways_shared.vocabulary import CRN_PATTERN, Pathway

PROVIDER_STATUSES: dict[str, str] = {
    "providers.referral.allocated": "allocated",
    "providers.referral.unallocated": "unallocated",
    "providers.referral.acknowledged": "acknowledged",
    "providers.referral.accepted": "accepted",
    "providers.referral.declined": "declined",
    "providers.referral.started": "in_progress",
    "providers.referral.completed": "completed",
    "providers.referral.withdrawn": "withdrawn",
}


def _fits(value: str | None, key: str, *, longest: int = 36) -> str | None:
    """An optional text field; one too long for what we keep can never succeed."""
    if not value:
        return None
    if len(value) > longest:
        raise PermanentError(f"{key} is longer than {longest} characters")
    return value


def _crn(event: Event) -> str | None:
    crn = event.crn
    if crn is not None and not CRN_PATTERN.fullmatch(crn):
        raise PermanentError(f"{crn!r} is not a CRN")
    return crn


def handlers(settings: ServiceSettings) -> tuple[dict[str, Handler], dict[str, Handler]]:
    base_url = settings.base_url

    async def on_submitted(
        session: AsyncSession, event: Event, submitted: ReferralSubmitted
    ) -> None:
        crn = _crn(event)
        if crn is None:
            raise PermanentError("a submitted referral without a CRN")
        for need in submitted.needs:
            await service.note_need_activity(
                session,
                crn=crn,
                need_id=str(need.need_id),
                status="submitted",
                now=utc_now(),
                base_url=base_url,
                referral_id=str(submitted.referral_id),
                pathway=need.pathway.value,
            )

    async def on_withdrawn(
        session: AsyncSession, event: Event, withdrawn: ReferralWithdrawn
    ) -> None:
        crn = _crn(event)
        for need_id in withdrawn.need_ids:
            await service.note_need_activity(
                session,
                crn=crn,
                need_id=str(need_id),
                status="withdrawn",
                now=utc_now(),
                base_url=base_url,
            )

    def provider_handler(event_type: str, status: str) -> Handler:
        async def on_provider_event(session: AsyncSession, event: Event, payload: NeedRef) -> None:
            need_id = _fits(payload.need_id, "needId")
            if need_id is None:
                raise PermanentError(f"{event.event_type} without a needId")
            pathway: Pathway | None = getattr(payload, "pathway", None)
            await service.note_need_activity(
                session,
                crn=_crn(event),
                need_id=need_id,
                status=status,
                now=utc_now(),
                base_url=base_url,
                referral_id=_fits(payload.referral_id, "referralId"),
                pathway=pathway.value if pathway else None,
                programme=_fits(getattr(payload, "programme", None), "programme", longest=40),
            )

        return typed(PAYLOADS[event_type], on_provider_event)

    referral_handlers: dict[str, Handler] = {
        "referrals.referral.submitted": typed(ReferralSubmitted, on_submitted),
        "referrals.referral.withdrawn": typed(ReferralWithdrawn, on_withdrawn),
    }
    provider_handlers = {
        kind: provider_handler(kind, status) for kind, status in PROVIDER_STATUSES.items()
    }
    return referral_handlers, provider_handlers


def one_need(event: Event) -> dict[str, Any] | None:
    """What the handlers above note of an event that names one need with its person and its
    pathway (a one-need submission, a provider event carrying its pathway), checked as they
    check it; None for any other event, or one that does not validate (its handler reports)."""
    try:
        payload = PAYLOADS[event.event_type].model_validate(event.additional_information)
        crn = _crn(event)
        if crn is None:
            return None
        if isinstance(payload, ReferralSubmitted):
            if len(payload.needs) != 1:
                return None
            need = payload.needs[0]
            return {"crn": crn, "need_id": str(need.need_id), "status": "submitted",
                    "referral_id": str(payload.referral_id), "pathway": need.pathway.value,
                    "programme": None}
        status = PROVIDER_STATUSES.get(event.event_type)
        pathway: Pathway | None = getattr(payload, "pathway", None)
        if status is None or pathway is None or not isinstance(payload, NeedRef):
            return None
        need_id = _fits(payload.need_id, "needId")
        if need_id is None:
            return None
        return {"crn": crn, "need_id": need_id, "status": status,
                "referral_id": _fits(payload.referral_id, "referralId") or "",
                "pathway": pathway.value,
                "programme": _fits(getattr(payload, "programme", None), "programme", longest=40)}
    except (ValidationError, PermanentError):
        return None


async def settle_in_one(connection: AsyncConnection, consumer: str, event: Event) -> str | None:
    """PostgreSQL, outside any transaction: a need event of a person who is no current member
    (most people) recorded processed and its need stored in one statement; None (nothing
    written) for a member's, or any event `one_need` does not take: the handlers' path."""
    need = one_need(event)
    if need is None:
        return None
    return await settle_need(connection, consumer=consumer, event=event, now=utc_now(), **need)


def subscriptions(settings: ServiceSettings) -> list[Subscription]:
    from_referrals, from_providers = handlers(settings)
    return [
        Subscription(stream="REFERRALS", durable="cohorts-from-referrals", handlers=from_referrals,
                     settle_in_one=settle_in_one),
        Subscription(stream="PROVIDERS", durable="cohorts-from-providers", handlers=from_providers,
                     settle_in_one=settle_in_one),
    ]

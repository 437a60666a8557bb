"""Events the cohorts service consumes: referral and provider events about needs. It keeps
the pathway and status of each need, and publishes `cohorts.member.pathway-activity` when the
person is a current cohort member (pathway, status and programme only)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pathways_shared.config import ServiceSettings
from pathways_shared.consumer import Handler, PermanentError, Subscription
from pathways_shared.events import Event
from sqlmodel.ext.asyncio.session import AsyncSession

from cohorts import service

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


def _text(info: dict[str, Any], key: str) -> str | None:
    value = info.get(key)
    return str(value) if value not in (None, "") else None


def handlers(settings: ServiceSettings) -> tuple[dict[str, Handler], dict[str, Handler]]:
    base_url = settings.base_url

    async def on_submitted(session: AsyncSession, event: Event) -> None:
        info = event.additional_information
        needs = info.get("needs")
        if event.crn is None or not isinstance(needs, list):
            raise PermanentError("a submitted referral without a CRN or needs")
        for need in needs:
            if not isinstance(need, dict) or not need.get("needId") or not need.get("pathway"):
                raise PermanentError("a need without needId or pathway")
            await service.note_need_activity(
                session,
                crn=event.crn,
                need_id=str(need["needId"]),
                status="submitted",
                now=datetime.now(UTC),
                base_url=base_url,
                referral_id=_text(info, "referralId"),
                pathway=str(need["pathway"]),
            )

    async def on_withdrawn(session: AsyncSession, event: Event) -> None:
        need_ids = event.additional_information.get("needIds")
        if not isinstance(need_ids, list):
            raise PermanentError("a withdrawn referral without needIds")
        for need_id in need_ids:
            await service.note_need_activity(
                session,
                crn=event.crn,
                need_id=str(need_id),
                status="withdrawn",
                now=datetime.now(UTC),
                base_url=base_url,
            )

    def provider_handler(status: str) -> Handler:
        async def on_provider_event(session: AsyncSession, event: Event) -> None:
            info = event.additional_information
            need_id = _text(info, "needId")
            if need_id is None:
                raise PermanentError(f"{event.event_type} without a needId")
            await service.note_need_activity(
                session,
                crn=event.crn,
                need_id=need_id,
                status=status,
                now=datetime.now(UTC),
                base_url=base_url,
                referral_id=_text(info, "referralId"),
                pathway=_text(info, "pathway"),
                programme=_text(info, "programme"),
            )

        return on_provider_event

    referral_handlers: dict[str, Handler] = {
        "referrals.referral.submitted": on_submitted,
        "referrals.referral.withdrawn": on_withdrawn,
    }
    provider_handlers = {
        kind: provider_handler(status) for kind, status in PROVIDER_STATUSES.items()
    }
    return referral_handlers, provider_handlers


def subscriptions(settings: ServiceSettings) -> list[Subscription]:
    from_referrals, from_providers = handlers(settings)
    return [
        Subscription(stream="REFERRALS", durable="cohorts-from-referrals", handlers=from_referrals),
        Subscription(stream="PROVIDERS", durable="cohorts-from-providers", handlers=from_providers),
    ]

"""What the referrals service consumes: the providers' events about each need.

Each event's payload arrives validated as the shared model of its type (`typed`), and each
event is handled once (the shared consumer records its id in the same transaction) and
applied through the pure need state machine, which ignores stale and repeated transitions.
Malformed events and events for unknown referrals or needs go to the dead letter store.
"""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from pathways_shared.consumer import Subscription, typed
from pathways_shared.event_payloads import PAYLOADS, NeedRef
from pathways_shared.events import Event, utc_now
from referrals import service
from referrals.domain.need_lifecycle import ProviderEventKind

DURABLE = "referrals-from-providers"


async def on_provider_event(session: AsyncSession, event: Event, payload: NeedRef) -> None:
    await service.apply_provider_event(session, event, payload, now=utc_now())


def subscriptions() -> list[Subscription]:
    return [
        Subscription(
            stream="PROVIDERS",
            durable=DURABLE,
            handlers={
                kind.event_type: typed(PAYLOADS[kind.event_type], on_provider_event)
                for kind in ProviderEventKind
            },
            filter_subject="providers.referral.>",
        )
    ]

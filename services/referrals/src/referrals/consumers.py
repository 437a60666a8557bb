"""What the referrals service consumes: the providers' events about each need.

Each event's payload arrives validated as the shared model of its type (`typed`), and each
event is handled once (the shared consumer records its id in the same transaction) and
applied through the pure need state machine, which ignores stale and repeated transitions.
Malformed events and events for unknown referrals or needs go to the dead letter store.

On PostgreSQL a first delivery is settled outside any transaction when it can be
(`settle_in_one`: an unlocked read, then one statement that records the event and saves its
change, only if nothing changed in between): two round trips instead of five (BEGIN, the
record, the locked read, the save, COMMIT). Anything else goes the ordinary path above.
"""

from __future__ import annotations

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from pathways_shared.consumer import Subscription, typed
from pathways_shared.event_payloads import PAYLOADS, NeedRef
from pathways_shared.events import Event, utc_now
from referrals import service
from referrals.domain.need_lifecycle import ProviderEventKind

DURABLE = "referrals-from-providers"


async def on_provider_event(session: AsyncSession, event: Event, payload: NeedRef) -> None:
    await service.apply_provider_event(session, event, payload, now=utc_now())


async def settle_in_one(connection: AsyncConnection, consumer: str, event: Event) -> str | None:
    """`on_provider_event` and the event recorded processed, outside any transaction
    (`service.settle_provider_event`); None (nothing written) for an event it does not
    settle, one whose payload does not validate among them: the ordinary path reports it."""
    try:
        payload = PAYLOADS[event.event_type].model_validate(event.additional_information)
    except ValidationError:
        return None
    if not isinstance(payload, NeedRef):
        return None
    return await service.settle_provider_event(connection, consumer, event, payload,
                                               now=utc_now())


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
            settle_in_one=settle_in_one,
        )
    ]

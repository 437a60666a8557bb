"""What the notifications service consumes: every stream, since any event may be wanted by
a webhook subscriber; the email rules act on referral and provider events."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from notifications import service
from pathways_shared.consumer import Handler, Subscription
from pathways_shared.events import Event

STREAMS = ("REFERRALS", "PROVIDERS", "COHORTS", "NOTIFICATIONS")


async def take_event(session: AsyncSession, event: Event) -> None:
    await service.take_event(session, event)


@dataclass
class EveryEvent(Subscription):
    """A subscription whose handler takes every event type of its stream, known or new."""

    handler: Handler | None = None

    def handler_for(self, event_type: str) -> Handler | None:
        return self.handler


def subscriptions() -> list[Subscription]:
    return [
        EveryEvent(
            stream=stream, durable=f"notifications-from-{stream.lower()}", handler=take_event
        )
        for stream in STREAMS
    ]

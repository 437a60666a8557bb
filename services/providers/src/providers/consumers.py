"""Event handlers of the providers service. Each runs in the consumer's transaction, which also
records the event id, so a redelivered event has no second effect."""

from __future__ import annotations

from pathways_shared.consumer import Subscription


def subscriptions() -> list[Subscription]:
    return []

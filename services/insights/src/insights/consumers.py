"""What the insights service consumes: every event of the four streams."""

from __future__ import annotations

from pathways_shared.consumer import Subscription

from insights.config import InsightsSettings


def subscriptions(settings: InsightsSettings) -> list[Subscription]:
    return []

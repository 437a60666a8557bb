"""Settings of the insights service: every variable is `INSIGHTS_<NAME>` (see the README)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from insights.web import config as dashboard  # (a module: tools look for the one *Settings here)


class InsightsSettings(dashboard.DashboardSettings):  # the dashboard's settings (web/config.py) too
    model_config = SettingsConfigDict(env_prefix="INSIGHTS_")

    service_name: str = "insights"
    port: int = 8005
    database_url: str = "sqlite+aiosqlite:///.data/insights.db"
    # A projection handles many small events: more of them per fetch and per transaction.
    consumer_batch_size: int = 100
    # Statistical disclosure control: counts from 1 to threshold - 1 are never shown.
    suppression_threshold: int = Field(default=5, ge=1, le=100)
    # Keys the pseudonym by which cohort members are counted (never stored). Default: derived
    # from the JWT secret; set it to a secret of its own in production.
    pseudonym_key: str | None = None

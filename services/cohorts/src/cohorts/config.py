"""Settings of the cohorts service: every variable is `COHORTS_<NAME>` (see the README)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from pathways_shared.config import ServiceSettings


class CohortsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="COHORTS_")

    service_name: str = "cohorts"
    port: int = 8003
    database_url: str = "sqlite+aiosqlite:///.data/cohorts.db"

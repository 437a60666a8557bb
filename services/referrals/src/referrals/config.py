"""Settings of the referrals service: every variable is `REFERRALS_<NAME>` (see the README)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from pathways_shared.config import ServiceSettings


class ReferralsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="REFERRALS_")

    service_name: str = "referrals"
    port: int = 8001
    database_url: str = "sqlite+aiosqlite:///.data/referrals.db"

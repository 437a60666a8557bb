"""Settings of the providers service: every variable is `PROVIDERS_<NAME>` (see the README)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from pathways_shared.config import ServiceSettings


class ProvidersSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PROVIDERS_")
    calls_peers = True  # the referrals service, for a person's details

    service_name: str = "providers"
    port: int = 8002
    database_url: str = "sqlite+aiosqlite:///.data/providers.db"
    # How often the service-level scheduler looks for missed deadlines.
    deadline_poll_seconds: float = Field(default=60.0, gt=0)
    # Calls to the referrals service for a person's details (provider's view).
    referrals_timeout_seconds: float = Field(default=2.0, gt=0)
    referrals_retries: int = Field(default=2, ge=0, le=5)
    # A provider sees a person's details while its referral is live and this many days after
    # it ended (declined, completed, withdrawn); then not at all (DOMAIN.md).
    person_details_days_after_end: int = Field(default=30, ge=0, le=3650)

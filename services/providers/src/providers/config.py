"""Settings of the providers service: every variable is `PROVIDERS_<NAME>` (see the README)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from pathways_shared.config import ServiceSettings


class ProvidersSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PROVIDERS_")

    service_name: str = "providers"
    port: int = 8002
    database_url: str = "sqlite+aiosqlite:///.data/providers.db"

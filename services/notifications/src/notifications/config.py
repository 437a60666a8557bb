"""Settings of the notifications service: every variable is `NOTIFICATIONS_<NAME>` (see the README)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from pathways_shared.config import ServiceSettings


class NotificationsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATIONS_")

    service_name: str = "notifications"
    port: int = 8004
    database_url: str = "sqlite+aiosqlite:///.data/notifications.db"

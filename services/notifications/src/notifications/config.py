"""Settings of the notifications service: every variable is `NOTIFICATIONS_<NAME>` (see the README).

Dictionaries (`NOTIFICATIONS_PROVIDER_MAILBOXES`, `NOTIFICATIONS_HOUSING_TEAMS`) are JSON objects.
"""

from __future__ import annotations

from datetime import timedelta

from pydantic import model_validator
from pydantic_settings import SettingsConfigDict

from notifications.domain.delivery import RetryPolicy
from notifications.domain.subscriptions import DisablePolicy
from pathways_shared.config import ServiceSettings
from pathways_shared.vocabulary import AREAS, PROVIDER_CODES

DEV_SECRET_KEY = "pathways-dev-notifications-secret-key"

# Development defaults: reserved `.example` domains, never delivered anywhere real.
DEFAULT_PROVIDER_MAILBOXES = {
    code: f"referrals@{code.lower().replace('_', '-')}.example" for code in sorted(PROVIDER_CODES)
}
DEFAULT_HOUSING_TEAMS = {
    code: f"housing.options@{name.lower()}.example" for code, name in sorted(AREAS.items())
}


class NotificationsSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFICATIONS_")
    calls_peers = True  # the referrals service, for contact details

    service_name: str = "notifications"
    port: int = 8004
    database_url: str = "sqlite+aiosqlite:///.data/notifications.db"

    # Email
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_use_tls: bool = False
    smtp_starttls: bool | None = None
    smtp_timeout_seconds: float = 30.0
    # The name given in EHLO; unset: the machine's FQDN, looked up once.
    smtp_local_hostname: str | None = None
    mail_from: str = "Pathways <no-reply@pathways.example>"
    message_id_domain: str = "notifications.pathways.example"
    # JSON objects in the environment: {"NACRO": "referrals@nacro.org.uk", ...}
    provider_mailboxes: dict[str, str] = DEFAULT_PROVIDER_MAILBOXES
    housing_teams: dict[str, str] = DEFAULT_HOUSING_TEAMS

    # Webhooks
    webhook_timeout_seconds: float = 10.0
    # None: private and loopback subscriber URLs allowed everywhere but production.
    allow_private_webhook_urls: bool | None = None
    secret_key: str = DEV_SECRET_KEY

    # Delivery worker
    worker_poll_seconds: float = 0.5
    worker_batch_size: int = 20
    delivery_lease_seconds: float = 120.0
    retry_first_delay_seconds: float = 30.0
    retry_multiplier: float = 3.0
    retry_max_delay_seconds: float = 6 * 3600.0
    retry_jitter: float = 0.2
    retry_max_attempts: int = 10
    disable_after_failures: int = 10
    disable_after_seconds: float = 12 * 3600.0

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> NotificationsSettings:
        # A lease shorter than a send would let a second worker send while the first still is.
        longest = self.smtp_timeout_seconds + 2 * self.webhook_timeout_seconds
        if self.delivery_lease_seconds <= longest:
            raise ValueError(
                f"NOTIFICATIONS_DELIVERY_LEASE_SECONDS must exceed {longest:g} "
                "(the SMTP timeout plus twice the HTTP timeout)"
            )
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_notifications_production(self) -> NotificationsSettings:
        if self.environment == "production":
            if self.secret_key == DEV_SECRET_KEY or len(self.secret_key) < 32:
                raise ValueError(
                    "production needs NOTIFICATIONS_SECRET_KEY (32+ characters, not the default)"
                )
            if self.allow_private_webhook_urls:
                raise ValueError("private webhook URLs are never allowed in production")
        return self

    @property
    def webhooks_allow_private(self) -> bool:
        if self.allow_private_webhook_urls is None:
            return self.environment != "production"
        return self.allow_private_webhook_urls

    @property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            first_delay=timedelta(seconds=self.retry_first_delay_seconds),
            multiplier=self.retry_multiplier,
            max_delay=timedelta(seconds=self.retry_max_delay_seconds),
            jitter=self.retry_jitter,
            max_attempts=self.retry_max_attempts,
        )

    @property
    def disable_policy(self) -> DisablePolicy:
        return DisablePolicy(
            min_failures=self.disable_after_failures,
            min_period=timedelta(seconds=self.disable_after_seconds),
        )

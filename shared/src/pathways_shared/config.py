"""Settings: one pydantic-settings class per service, built once at start and passed in.

Each service subclasses `ServiceSettings` with its own env prefix (`REFERRALS_`, ...), so
`REFERRALS_DATABASE_URL` and `PROVIDERS_DATABASE_URL` can differ. A few values are shared by
every service and read without a prefix: `PATHWAYS_ENV`, `PATHWAYS_JWT_SECRET`,
`PATHWAYS_JWKS_URL`, `NATS_URL`, `PATHWAYS_SUBJECT_PREFIX`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Secrets that must never reach production (the README and examples show them).
KNOWN_DEFAULT_SECRETS = frozenset({"", "change-me", "changeme", "secret", "dev-secret", "pathways-dev-secret"})


class ServiceSettings(BaseSettings):
    """Base settings. A subclass sets `model_config` with its own `env_prefix`."""

    model_config = SettingsConfigDict(
        env_prefix="PATHWAYS_", extra="ignore", validate_by_name=True, validate_by_alias=True
    )
    # A service that calls its peers (pathways_shared.service_client) needs a token for them.
    calls_peers: ClassVar[bool] = False

    service_name: str = "pathways"
    environment: Literal["development", "test", "production"] = Field(
        default="development", validation_alias="PATHWAYS_ENV"
    )
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None
    database_url: str = "sqlite+aiosqlite:///.data/pathways.db"
    database_pool_size: int = 10
    nats_url: str = Field(
        default="nats://127.0.0.1:4223", validation_alias="NATS_URL"
    )
    # Prepended to every subject and stream name; tests use it to run in isolation.
    subject_prefix: str = Field(
        default="", validation_alias="PATHWAYS_SUBJECT_PREFIX"
    )
    stream_duplicate_window_seconds: int = 2 * 60 * 60
    # Copies of each stream: 1 on a single server, 3 on a JetStream cluster.
    stream_replicas: int = Field(default=1, ge=1, le=5, validation_alias="PATHWAYS_STREAM_REPLICAS")
    jwt_secret: str | None = Field(
        default=None, validation_alias="PATHWAYS_JWT_SECRET"
    )
    jwks_url: str | None = Field(
        default=None, validation_alias="PATHWAYS_JWKS_URL"
    )
    jwt_audience: str | None = Field(
        default=None, validation_alias="PATHWAYS_JWT_AUDIENCE"
    )
    # The identity provider's token endpoint: a service with a client id and secret of its own
    # (`<SERVICE>_CLIENT_ID`, `<SERVICE>_CLIENT_SECRET`) gets its token for peers there.
    client_credentials_url: str | None = Field(
        default=None, validation_alias="PATHWAYS_CLIENT_CREDENTIALS_URL"
    )
    client_id: str | None = None
    client_secret: str | None = None
    # A fixed bearer token for calls to peers (`<SERVICE>_SERVICE_TOKEN`), before any other.
    service_token: str | None = None
    log_level: str = Field(
        default="INFO", validation_alias="PATHWAYS_LOG_LEVEL"
    )
    log_json: bool = Field(
        default=True, validation_alias="PATHWAYS_LOG_JSON"
    )
    # Request bodies are limited before they are read (413): JSON bodies, and CSV uploads (the
    # offence import) separately.
    max_json_body_bytes: int = Field(
        default=1_048_576, ge=1024, validation_alias="PATHWAYS_MAX_JSON_BODY_BYTES"
    )
    max_csv_body_bytes: int = Field(
        default=64 * 1_048_576, ge=1024, validation_alias="PATHWAYS_MAX_CSV_BODY_BYTES"
    )
    # What one client may hold (pathways_shared.serving): a request head of at most this many
    # headers and bytes (else 431); the head within `head_timeout_seconds` of its first byte
    # (a connection that sends no request is closed then too), the body within
    # `body_timeout_seconds` of the head (else 408, the connection closed); an idle keep-alive
    # connection closed after `keep_alive_timeout_seconds`.
    max_header_count: int = Field(
        default=100, ge=10, le=10_000, validation_alias="PATHWAYS_MAX_HEADER_COUNT"
    )
    max_header_bytes: int = Field(
        default=16_384, ge=1024, le=1_048_576, validation_alias="PATHWAYS_MAX_HEADER_BYTES"
    )
    head_timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, validation_alias="PATHWAYS_HEAD_TIMEOUT_SECONDS"
    )
    body_timeout_seconds: float = Field(
        default=60.0, gt=0, le=3600, validation_alias="PATHWAYS_BODY_TIMEOUT_SECONDS"
    )
    keep_alive_timeout_seconds: int = Field(
        default=5, ge=1, le=300, validation_alias="PATHWAYS_KEEP_ALIVE_TIMEOUT_SECONDS"
    )
    # Start the outbox relay and the consumers with the app (tests may turn them off).
    run_workers: bool = True
    relay_batch_size: int = 100
    relay_poll_seconds: float = 1.0
    consumer_max_deliveries: int = 5
    consumer_batch_size: int = 20
    # How long a consumer's pull waits for a first message before asking again: it answers as
    # soon as one comes, so this is only what an idle consumer costs (a pull each time, for
    # it and for NATS: bench/README.md) and how soon after NATS comes back it asks again.
    consumer_fetch_seconds: float = Field(default=5.0, gt=0, le=30)
    # People whose events one consumer handles at once (each person's stay in order).
    consumer_concurrency: int = Field(default=4, ge=1, le=32)
    # Retention of bookkeeping (DOMAIN.md, "Keeping data no longer than necessary"): published
    # outbox rows, processed-event records and resolved dead letters are deleted this many days
    # after they were published, processed or resolved. Never shorter than the replay window:
    # the days within which `pathways outbox resend` or a consumer replay may still be needed.
    replay_window_days: int = Field(default=14, ge=1, validation_alias="PATHWAYS_REPLAY_WINDOW_DAYS")
    retention_outbox_days: int = Field(default=30, validation_alias="PATHWAYS_RETENTION_OUTBOX_DAYS")
    retention_processed_events_days: int = Field(
        default=30, validation_alias="PATHWAYS_RETENTION_PROCESSED_EVENTS_DAYS")
    retention_dead_letters_days: int = Field(
        default=30, validation_alias="PATHWAYS_RETENTION_DEAD_LETTERS_DAYS")
    retention_interval_seconds: float = 3600
    # Personal data (names, dates of birth, contacts, free text, identifiers) is erased this
    # many days after its record ends (default six years), in batches of this many records;
    # the erasure register is keyed by an HMAC of the CRN with this key (pathways_shared.erasure).
    erase_personal_data_after_days: int = Field(
        default=2192, ge=1, validation_alias="PATHWAYS_ERASE_PERSONAL_DATA_AFTER_DAYS")
    erasure_batch_size: int = Field(default=500, ge=1, le=10_000, validation_alias="PATHWAYS_ERASURE_BATCH_SIZE")
    erasure_register_key: str | None = Field(default=None, validation_alias="PATHWAYS_ERASURE_REGISTER_KEY")
    # Where this service's peers answer (for detail fetches with a service token).
    referrals_url: str = Field(
        default="http://127.0.0.1:8001",
        validation_alias="PATHWAYS_REFERRALS_URL",
    )
    providers_url: str = Field(
        default="http://127.0.0.1:8002",
        validation_alias="PATHWAYS_PROVIDERS_URL",
    )
    cohorts_url: str = Field(
        default="http://127.0.0.1:8003",
        validation_alias="PATHWAYS_COHORTS_URL",
    )

    @model_validator(mode="after")
    def _keep_bookkeeping_through_the_replay_window(self) -> ServiceSettings:
        for name in ("retention_outbox_days", "retention_processed_events_days",
                     "retention_dead_letters_days"):
            if getattr(self, name) < self.replay_window_days:
                raise ValueError(
                    f"{name} ({getattr(self, name)}) is shorter than the replay window "
                    f"(PATHWAYS_REPLAY_WINDOW_DAYS, {self.replay_window_days}): a resend or "
                    "replay within the window would find nothing or apply events twice")
        if self.erase_personal_data_after_days < self.replay_window_days:
            raise ValueError(
                f"PATHWAYS_ERASE_PERSONAL_DATA_AFTER_DAYS ({self.erase_personal_data_after_days}) "
                f"is shorter than the replay window ({self.replay_window_days}): a replayed event "
                "could bring erased details back")
        return self

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> ServiceSettings:
        if self.environment == "production":
            if self.jwks_url is None and (
                self.jwt_secret is None or self.jwt_secret in KNOWN_DEFAULT_SECRETS
            ):
                raise ValueError(
                    "production needs PATHWAYS_JWKS_URL, or a PATHWAYS_JWT_SECRET that is not a default"
                )
            if self.jwks_url is not None and not self.jwt_audience:
                # Without an audience, a token the identity provider issued for any other
                # application would be accepted here.
                raise ValueError("production with PATHWAYS_JWKS_URL needs PATHWAYS_JWT_AUDIENCE")
            if self.jwt_secret is not None and len(self.jwt_secret) < 32:
                raise ValueError("PATHWAYS_JWT_SECRET must be at least 32 characters in production")
        elif self.jwt_secret is None and self.jwks_url is None:
            raise ValueError(
                "set PATHWAYS_JWT_SECRET (local HS256 tokens) or PATHWAYS_JWKS_URL (RS256)"
            )
        if self.calls_peers and not self.can_get_service_token:
            prefix = (self.model_config.get("env_prefix") or "").upper()
            raise ValueError(
                f"{self.service_name} calls other services: set "
                f"PATHWAYS_CLIENT_CREDENTIALS_URL with {prefix}CLIENT_ID and {prefix}CLIENT_SECRET, or {prefix}SERVICE_TOKEN, "
                "or PATHWAYS_JWT_SECRET"
            )
        return self

    @property
    def uses_identity_provider(self) -> bool:
        return bool(self.client_credentials_url and self.client_id and self.client_secret)

    @property
    def can_get_service_token(self) -> bool:
        return bool(self.service_token or self.uses_identity_provider or self.jwt_secret)

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")
